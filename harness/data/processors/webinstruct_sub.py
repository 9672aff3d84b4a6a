"""TIGER-Lab/WebInstructSub (the official CGD code's `webinstruct_sub`, file webinstructsub_chunk1.json).

Hub schema (parquet, split `train`): `orig_question`, `orig_answer`, `question`, `answer`, `source`, `index`.
The official code reads a chat export of it instead: `conversations: [{content: "Question: ... Answer: ..."},
{content: answer}]` and keeps the first turn's text before " Answer:", without a leading "Question: ", and the second
turn as the answer. Both shapes are accepted; the same strip and cut apply to the hub's `question`.
"""

from __future__ import annotations

from typing import Any

from harness.data.processors import text

NAME = "webinstruct_sub"
SOURCE = "TIGER-Lab/WebInstructSub"
LICENSE = "apache-2.0"  # the source dataset's licence (its Hub card), shown in dataset cards
FIELDS = ("question", "answer", "index", "conversations")


def clean_question(raw: str) -> str:
    question = raw.split(" Answer:")[0]
    if question.startswith("Question: "):
        question = question[len("Question: "):]
    return question


def process(row: dict[str, Any]) -> dict[str, Any] | None:
    conv = row.get("conversations")
    if isinstance(conv, list) and conv:
        try:
            prompt, answer = conv[0]["content"], conv[1]["content"]
        except (IndexError, KeyError, TypeError):
            return None
    else:
        prompt, answer = row.get("question"), row.get("answer")
    prompt = text(clean_question(prompt)) if isinstance(prompt, str) else None
    if prompt is None:
        return None
    out: dict[str, Any] = {"prompt": prompt, "reference": text(answer)}
    if text(row.get("index")):
        out["id"] = text(row["index"])
    return out
