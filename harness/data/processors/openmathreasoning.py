"""nvidia/OpenMathReasoning (the official CGD code's `openmathreason_additional`: split `additional_problems`).

Fields: `problem`, `expected_answer`, `problem_type`, `problem_source`, `generation_model`, `pass_rate_72b_tir`,
`generated_solution`, `inference_mode`, `used_in_kaggle` (splits cot, tir, genselect, additional_problems).
Prompt `problem`, reference `expected_answer` (the official `_process_problem_answer_format`)."""

from __future__ import annotations

from typing import Any

from harness.data.processors import text

NAME = "openmathreasoning"
SOURCE = "nvidia/OpenMathReasoning"
LICENSE = "cc-by-4.0"  # the source dataset's licence (its Hub card), shown in dataset cards
FIELDS = ("problem", "expected_answer")


def process(row: dict[str, Any]) -> dict[str, Any] | None:
    prompt = text(row.get("problem"))
    return None if prompt is None else {"prompt": prompt, "reference": text(row.get("expected_answer"))}
