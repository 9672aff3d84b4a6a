"""AI-MO/NuminaMath-CoT (fields `source`, `problem`, `solution`, `messages`) and NuminaMath-1.5 (adds `answer`,
`problem_type`, `question_type`). Prompt `problem`, reference `answer` when there is one (1.5), else `solution`."""

from __future__ import annotations

from typing import Any

from harness.data.processors import text

NAME = "numinamath"
SOURCE = "AI-MO/NuminaMath-CoT"
LICENSE = "apache-2.0"  # the source dataset's licence (its Hub card), shown in dataset cards
FIELDS = ("problem", "solution", "answer")


def process(row: dict[str, Any]) -> dict[str, Any] | None:
    prompt = text(row.get("problem"))
    if prompt is None:
        return None
    answer = text(row.get("answer"))
    if answer in ("proof", "notfound"):  # NuminaMath-1.5 marks proofs and missing answers so
        answer = None
    return {"prompt": prompt, "reference": answer if answer is not None else text(row.get("solution"))}
