"""meta-math/MetaMathQA. Fields: `query`, `response` (ends "The answer is: X"), `type` (GSM_Rephrased, MATH_SV,
...), `original_question`. Prompt `query`, reference `response`."""

from __future__ import annotations

from typing import Any

from harness.data.processors import text

NAME = "metamathqa"
SOURCE = "meta-math/MetaMathQA"
LICENSE = "mit"  # the source dataset's licence (its Hub card), shown in dataset cards
FIELDS = ("query", "response")


def process(row: dict[str, Any]) -> dict[str, Any] | None:
    prompt = text(row.get("query"))
    return None if prompt is None else {"prompt": prompt, "reference": text(row.get("response"))}
