"""Output parsers per model family (harness/parsers/): the official S1.1 split and Harmony final channel, `<think>`
blocks, applied to drafts, critiques, refinements and answers with the raw text kept beside the parsed one; chosen
by the recipe and fingerprinted only when not `none`. Also the base-model probe fallback of the hf back-end."""

from __future__ import annotations

import asyncio
import json

import pytest

from harness.errors import HarnessError
from harness.llm.base import ChatRequest
from harness.parsers import get_parser, parsed_fields, parsed_list, parser_names
from harness.paths import RECIPES_DIR
from harness.pipeline import build_graph
from harness.recipe import load_recipes
from harness.stages.probe import draft_fields
from harness.stages.student_gen import probe_params
from harness.stages.teacher import teacher_params
from harness.store import RunStore
from tests.fakes.provider import FakeProvider, oracle_text
from tests.helpers.data import write_prompts
from tests.test_backends_e2e import cgd, stage_info, stage_records, write_recipe


def test_the_registry_lists_every_parser_and_refuses_unknown_names():
    assert parser_names() == ["harmony", "none", "s1", "think"]
    with pytest.raises(HarnessError, match=r"unknown parser 'x'; available: harmony, none, s1, think"):
        get_parser("x")


def test_s1_splits_at_the_official_marker():
    s1 = get_parser("s1").parse
    assert s1("think\nLet me add 2 and 2.\nanswer\nAnswer: 4") == "4"
    assert s1("think ... ANSWER \n answer: The answer is \\boxed{4}.  ") == "The answer is \\boxed{4}."  # case-blind
    assert s1("think\nfirst answer\nAnswer: 1\nanswer\nAnswer: 2") == "1\nanswer\nAnswer: 2"  # the first marker
    cut = "think\nStill thinking when max_tokens"
    assert s1(cut) == cut  # no marker: kept unchanged


def test_harmony_reads_the_final_channel():
    h = get_parser("harmony").parse
    assert h("<|start|>assistant<|analysis|>hmm<|end|><|start|>assistant<|final|> 4 <|return|>") == "4"
    assert h("<|start|>assistant<|final|>4<|end|>more") == "4"
    assert h("<|channel|>analysis<|message|>hmm<|end|><|start|>assistant<|channel|>final<|message|>4<|return|>") == "4"
    assert h("analysisLet me think.assistantfinal: The answer is 4") == "The answer is 4"
    assert h("  The answer is 4  ") == "The answer is 4"
    assert h("") == ""


def test_think_drops_reasoning_blocks():
    t = get_parser("think").parse
    assert t("<think>\n2+2...\n</think>\n\nThe answer is 4.") == "The answer is 4."
    assert t("2+2 is...\n</think>\nThe answer is 4.") == "The answer is 4."  # the template opened the block
    assert t("<think>a</think>one<think>b</think> two") == "one two"
    assert t("<think>cut off while thinking") == "<think>cut off while thinking"
    assert t("no blocks") == "no blocks"


def test_raw_text_is_kept_only_when_the_parser_changed_it():
    assert parsed_fields("critique", "fine. Conclusion: right", "think") == {"critique": "fine. Conclusion: right"}
    assert parsed_fields("refined", "<think>x</think>y", "think") == {"refined": "y",
                                                                      "refined_raw": "<think>x</think>y"}
    assert parsed_list("drafts", ["a", "b"], "none") == {"drafts": ["a", "b"]}
    assert draft_fields(["think\nhm\nanswer\nAnswer: 3", "plain"], "s1") == {
        "draft": "3", "draft_raw": "think\nhm\nanswer\nAnswer: 3",
        "drafts": ["3", "plain"], "drafts_raw": ["think\nhm\nanswer\nAnswer: 3", "plain"]}
    assert draft_fields(["plain"]) == {"draft": "plain", "drafts": ["plain"]}


def test_parsers_are_fingerprinted_only_when_not_none(tmp_path):
    [tiny] = load_recipes(RECIPES_DIR / "tiny.yaml")
    assert "parser" not in teacher_params(tiny) and "parser" not in probe_params(tiny)
    [s1] = load_recipes(RECIPES_DIR / "s1.1-3b-s1.1-32b.yaml")
    assert s1.student.parser == "s1" and s1.teacher.parser == "s1"
    assert teacher_params(s1)["parser"] == "s1" and probe_params(s1)["parser"] == "s1"
    plain = s1.model_copy(deep=True)
    plain.teacher.parser = "none"
    a = build_graph(s1, RunStore(tmp_path), require_data=False).stages
    b = build_graph(plain, RunStore(tmp_path), require_data=False).stages
    for name in ("critique", "refine", "answer"):
        assert a[name].fingerprint != b[name].fingerprint, name


def test_an_unknown_parser_is_a_located_validation_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {RECIPES_DIR / 'tiny.yaml'}\nname: bad\n"
                   "teacher: {provider: oracle, model: oracle, parser: qwen}\n")
    proc = cgd("validate", str(bad), check=False)
    assert proc.returncode == 2
    assert f"{bad}:3:" in proc.stdout + proc.stderr
    assert "teacher.parser: unknown parser 'qwen'; available: harmony, none, s1, think" in proc.stdout + proc.stderr


def _thinking_teacher(model: str, messages: list[dict[str, str]]) -> str:
    text = oracle_text(model, messages)
    return text if model == "student" else f"<think>\nLet me check every step. Conclusion: maybe\n</think>\n\n{text}"


def test_teacher_parser_applies_to_critiques_refinements_and_answers(tmp_path):
    data = write_prompts(tmp_path / "prompts.jsonl", 12, seed=4)
    runs = tmp_path / "runs"
    with FakeProvider(record_log=False) as student, FakeProvider(responder=_thinking_teacher) as teacher:
        recipe = write_recipe(tmp_path, data, student.url, teacher.url, "openai")
        recipe.write_text(recipe.read_text().replace("variants: [base, cgd]", "variants: [base, distilled_sft, cgd]"))
        cgd("run", str(recipe), "--until", "answer", "--runs-dir", str(runs), "--set", "teacher.parser=think")
    for kind, field in (("critique", "critique"), ("refine", "refined"), ("answer", "teacher_answer")):
        records = stage_records(runs, kind)
        assert len(records) == 12 and all(r["status"] == "ok" for r in records), kind
        for r in records:
            assert "<think>" not in r[field] and r[f"{field}_raw"].startswith("<think>"), kind
    critiques = stage_records(runs, "critique")
    assert all(r["verdict"] in ("right", "wrong") for r in critiques)  # from the parsed text, not the trace
    refined = stage_records(runs, "refine")
    assert all(r["critique"] == next(c["critique"] for c in critiques if c["id"] == r["id"]) for r in refined)
    assert sum(r["refined_correct"] for r in refined) == 12  # graded on the parsed answer
    assert stage_info(runs, "refine")["verified"] == 12


def test_student_parser_applies_to_drafts(tmp_path):
    def thinking_student(model: str, messages: list[dict[str, str]]) -> str:
        text = oracle_text(model, messages)
        return f"<think>scratch</think>\n{text}" if model == "student" else text

    data = write_prompts(tmp_path / "prompts.jsonl", 8, seed=4)
    runs = tmp_path / "runs"
    with FakeProvider(record_log=False, responder=thinking_student) as student, FakeProvider() as teacher:
        recipe = write_recipe(tmp_path, data, student.url, teacher.url, "openai")
        cgd("run", str(recipe), "--until", "probe", "--runs-dir", str(runs), "--set", "student.parser=think")
    drafts = stage_records(runs, "probe")
    assert all("<think>" not in r["draft"] and r["draft_raw"].startswith("<think>") for r in drafts)
    assert stage_info(runs, "probe")["parser"] == "think"


def test_hf_base_model_without_chat_template_gets_the_official_completion_prompt(tmp_path):
    from harness.llm.hf import HFBackend, completion_prompt
    from tests.helpers.tiny_model import build_random_tiny_model

    assert completion_prompt([{"role": "system", "content": "s"}, {"role": "user", "content": "What is 2+2?"},
                              {"role": "user", "content": "later"}]) == "Question: What is 2+2?\n\nAnswer:"
    model = build_random_tiny_model(tmp_path / "base", hidden_size=32, num_layers=1)
    for path in model.glob("chat_template.j*"):
        path.unlink()
    config = model / "tokenizer_config.json"
    cfg = json.loads(config.read_text())
    cfg.pop("chat_template", None)
    config.write_text(json.dumps(cfg))
    backend = HFBackend(str(model), batch_size=2)
    backend._load()
    assert backend._tok.chat_template is None
    seen: list[str] = []
    tok = backend._tok

    class Spy:  # records what is tokenized, delegates everything else
        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, texts, **kw):
            seen.extend(texts)
            return tok(texts, **kw)

    backend._tok = Spy()
    request = ChatRequest.build([{"role": "user", "content": "Start with 2, add 2. What is the result?"}],
                                temperature=0.0, top_p=1.0, max_tokens=4, n=1, seed=None)
    result = asyncio.run(backend.complete(request))
    assert seen == ["Question: Start with 2, add 2. What is the result?\n\nAnswer:"]
    assert result.output_tokens >= 1 and result.finish_reasons
