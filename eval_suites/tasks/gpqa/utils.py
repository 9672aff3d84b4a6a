"""GPQA Diamond as the CGD paper scored it: generative 5-shot chain of thought, "The answer is (X)".

The paper's scripts (CapitalOne-Research/Critique-Guided-Distillation, eval/scripts/evaluate_chat.sh ->
eval/evaluate_gpqa/scripts/evaluate_gpqa.sh) run `run_open.py --shots 5 --dataset gpqa --form llama3` for every
student, with vLLM greedy decoding and 2048 new tokens. run_open.py and its helpers are CFT's evaluation tools
(TIGER-AI-Lab CritiqueFineTuning, tools/evaluate_gpqa/); CGD's copy of them is not in the stored snapshot of its
repository, so the behaviour below was read from that lineage as kept in liuzihe02/RDPO@75470277:

- data_loader.py `generate_question_and_answers`: the four answers in a random order, labelled "(A) ".."(D) ",
  joined by spaces after "Answer Choices: " on a new line under the question (no new line added when the question
  already ends with one); the gold is the correct answer's letter.
- prompt_utils.py `get_llama3_prompt`: a hand-written Llama-3 prompt, system "You are a helpful assistant.", the
  five demonstrations (cot_examples.json) as user/assistant turns, then the question as the last user turn.
- utils.py `answer_clean` (the `gpqa` branch) with the triggers of run_open.py `get_seperation_trigger`, and
  `compare_answer_with_groundtruth` (case-insensitive equality with the gold letter).

Choice order. The official loader calls `random.sample` without seeding it; vLLM's `LLM(seed=0)` (created before
the loader runs) seeds Python's `random` in-process, so the official order is, in effect, the stream of a
generator seeded with 0, drawn row by row in file order. That is what `process_docs` reproduces, so the order is
fixed and the same on every run.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

LETTERS = ("A", "B", "C", "D")
CHOICE_SEED = 0
TRIGGERS = ("The answer is:", "The answer is", "the answer is")
SYSTEM = "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
USER = "<|start_header_id|>user<|end_header_id|>\n\n"
ASSISTANT = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"


def shots() -> list[dict[str, str]]:
    """The five demonstrations, exactly as published."""
    return json.loads((Path(__file__).with_name("cot_examples.json")).read_text(encoding="utf-8"))["shots"]


def question_with_choices(row: dict[str, Any], rng: random.Random) -> tuple[str, str]:
    """(question text, gold letter) for one dataset row, the answers ordered by `rng`."""
    order = rng.sample([1, 2, 3, 4], 4)  # 4 is the correct answer
    answers = [row[f"Incorrect Answer {i}"] if i != 4 else row["Correct Answer"] for i in order]
    choices = " ".join(f"({LETTERS[i]}) {a}" for i, a in enumerate(answers))
    sep = "" if row["Question"].endswith("\n") else "\n"
    return f"{row['Question']}{sep}Answer Choices: {choices}", LETTERS[order.index(4)]


def prompt_prefix() -> str:
    """System turn and the five demonstration turns (everything before the question)."""
    return SYSTEM + "".join(f"{USER}{s['question']}{ASSISTANT}{s['answer']}<|eot_id|>" for s in shots())


def build_prompt(question: str) -> str:
    return f"{prompt_prefix()}{USER}{question}{ASSISTANT}"


def process_docs(dataset: Any) -> Any:
    """Every row with `question` (choices included) and `answer` (a letter), in dataset order."""
    import datasets

    rng = random.Random(CHOICE_SEED)
    rows = []
    for row in dataset:
        question, answer = question_with_choices(row, rng)
        rows.append({"question": question, "answer": answer, "record_id": row.get("Record ID")})
    return datasets.Dataset.from_list(rows)


def doc_to_text(doc: dict[str, Any]) -> str:
    return build_prompt(doc["question"])


def extract_answer(output: str) -> str:
    """The official `answer_clean` for GPQA: text after the last trigger, then its first A-D letter (the last one
    when no trigger was found); the cleaned text itself when it has no such letter."""
    pred = output.strip("\n")
    if any(pred.count(t) > 1 for t in TRIGGERS):  # the model continued with more examples: keep the first chunk
        pred = pred.split("\n\n")[0]
    parts = re.split("|".join(TRIGGERS), pred)
    found_trigger = len(parts) > 1
    pred = parts[-1].strip("\n").rstrip(".").rstrip("/").strip(" ")
    letters = re.findall(r"\b(A|B|C|D)\b", pred.upper()) or [pred.strip().strip(".")]
    pred = letters[0] if found_trigger else letters[-1]
    return pred.rstrip(".").rstrip("/")


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    return {"exact_match": float(extract_answer(results[0]).lower() == doc["answer"].lower())}
