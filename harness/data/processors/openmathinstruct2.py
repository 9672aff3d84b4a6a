"""nvidia/OpenMathInstruct-2. Fields: `problem`, `generated_solution`, `expected_answer`, `problem_source`
(augmented_math, augmented_gsm8k, math, gsm8k). Prompt `problem`, reference `expected_answer` (else the solution)."""

from __future__ import annotations

from typing import Any

from harness.data.processors import text

NAME = "openmathinstruct2"
SOURCE = "nvidia/OpenMathInstruct-2"
LICENSE = "cc-by-4.0"  # the source dataset's licence (its Hub card), shown in dataset cards
FIELDS = ("problem", "expected_answer", "generated_solution")


def process(row: dict[str, Any]) -> dict[str, Any] | None:
    prompt = text(row.get("problem"))
    if prompt is None:
        return None
    reference = text(row.get("expected_answer"))
    return {"prompt": prompt, "reference": reference if reference is not None else text(row.get("generated_solution"))}
