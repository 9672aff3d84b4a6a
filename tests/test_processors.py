"""Processors: each maps rows in its source's real schema to {prompt, reference, id?}; unknown names are refused."""

from __future__ import annotations

import pytest

from harness.data.processors import available, get_processor, processor_fn
from harness.errors import HarnessError

# A row per source, with the field names of its dataset card (values shortened).
ROWS = {
    "webinstruct_sub": (
        {"orig_question": "How fast?", "orig_answer": "...", "question": "Question: A car goes 60 km in 2 h. "
         "What is its speed? Answer: ", "answer": "30 km/h", "source": "socratic", "index": 17},
        {"prompt": "A car goes 60 km in 2 h. What is its speed?", "reference": "30 km/h", "id": "17"}),
    "webinstruct_filter": (  # the official code's chat export of WebInstructSub
        {"conversations": [{"role": "user", "content": "Question: Solve x+1=3. Answer: "},
                           {"role": "assistant", "content": "x = 2"}]},
        {"prompt": "Solve x+1=3.", "reference": "x = 2"}),
    "webinstruct_cft": (
        {"instruction": "Please critique whether the following solution to the question is correct.\n\n",
         "input": "Question:\nWhat is 2+3?\n\nSolution:\n2+3 = 5. The answer is 5.",
         "output": "The solution adds correctly.\n\nConclusion: right [END]"},
        {"prompt": "What is 2+3?", "reference": "2+3 = 5. The answer is 5."}),
    "openmathreasoning": (
        {"expected_answer": "12", "problem_type": "has_answer_extracted", "problem_source": "aops_c4_high_school_math",
         "generation_model": "DeepSeek-R1", "pass_rate_72b_tir": "0.5", "problem": "Find 3*4.",
         "generated_solution": "<think>...</think> 12", "inference_mode": "cot", "used_in_kaggle": True},
        {"prompt": "Find 3*4.", "reference": "12"}),
    "nemotron_sft_math": (
        {"input": [{"role": "user", "content": "Compute 7-2."}], "output": "<think>...</think>The answer is 5.",
         "category": "math", "license": "cc-by-4.0", "reasoning": "on", "generator": "DeepSeek-R1",
         "used_in_training": "yes", "version": "v1.1", "system_prompt": "detailed thinking on"},
        {"prompt": "Compute 7-2.", "reference": "<think>...</think>The answer is 5."}),
    "metamathqa": (
        {"query": "What is 10/2?", "response": "10/2 = 5.\nThe answer is: 5", "type": "GSM_Rephrased",
         "original_question": "What is ten halved?"},
        {"prompt": "What is 10/2?", "reference": "10/2 = 5.\nThe answer is: 5"}),
    "openmathinstruct2": (
        {"problem": "What is 6*7?", "generated_solution": "6*7 = \\boxed{42}", "expected_answer": "42",
         "problem_source": "augmented_math"},
        {"prompt": "What is 6*7?", "reference": "42"}),
    "numinamath": (
        {"source": "olympiads", "problem": "Prove 1+1=2.", "solution": "By definition ... $\\boxed{2}$",
         "messages": [{"role": "user", "content": "Prove 1+1=2."}, {"role": "assistant", "content": "..."}]},
        {"prompt": "Prove 1+1=2.", "reference": "By definition ... $\\boxed{2}$"}),
}


def test_every_processor_has_a_real_schema_row_here():
    assert sorted(ROWS) == available()


@pytest.mark.parametrize("name", sorted(ROWS))
def test_processor_maps_a_row_in_the_source_schema(name):
    row, want = ROWS[name]
    module = get_processor(name)
    assert name == module.NAME and module.SOURCE and set(module.FIELDS) & set(row)
    assert module.process(row) == want


@pytest.mark.parametrize("name", sorted(ROWS))
def test_processor_skips_a_row_without_a_prompt(name):
    assert processor_fn(name)({"unrelated": "x"}) is None


def test_webinstruct_cut_and_strip_follow_the_official_code():
    process = processor_fn("webinstruct_sub")
    out = process({"question": "Question: Is 0.5 Answer: a fraction? Answer: yes", "answer": "yes"})
    assert out["prompt"] == "Is 0.5"  # cut at the first " Answer:", as the official split does
    assert process({"question": "Plain question?", "answer": "a"})["prompt"] == "Plain question?"
    assert process({"conversations": [{"content": "Question: only one turn"}]}) is None  # malformed: skipped


def test_cft_keeps_a_wrong_solution_out_of_the_reference():
    out = processor_fn("webinstruct_cft")({"input": "Question:\nWhat is 2+2?\n\nSolution:\n5",
                                           "output": "Wrong sum.\n\nConclusion: wrong [END]"})
    assert out == {"prompt": "What is 2+2?", "reference": None}


def test_nemotron_prefers_an_assistant_turn_and_numina_15_its_answer():
    nemo = processor_fn("nemotron_sft_math")({"messages": [{"role": "system", "content": "s"},
                                                          {"role": "user", "content": "q"},
                                                          {"role": "assistant", "content": "a"}]})
    assert nemo == {"prompt": "q", "reference": "a"}
    numina = processor_fn("numinamath")
    assert numina({"problem": "p", "solution": "long", "answer": "3"})["reference"] == "3"
    assert numina({"problem": "p", "solution": "long", "answer": "proof"})["reference"] == "long"


def test_unknown_processor_names_the_available_ones():
    with pytest.raises(HarnessError, match=r"unknown processor 'nope'; available: metamathqa, "):
        get_processor("nope")
