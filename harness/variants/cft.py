"""cft: prompt + the student's draft -> the teacher's critique (critique fine-tuning)."""

from __future__ import annotations

from typing import Any

from harness.prompts import PromptStyle
from harness.variants.rows import Record, chat_row, usable
from harness.variants.spec import VariantSpec, register_variant


def build_rows(records: list[Record], style: PromptStyle, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [chat_row(r["id"], style.train_messages("cft", prompt=r["prompt"], draft=r["draft"]), r["critique"])
            for r in usable(records)]


SPEC = register_variant(VariantSpec(name="cft", doc="prompt + draft → the teacher's critique", order=30,
                                    baseline=True, source="critique", build_rows=build_rows,
                                    reads=("id", "prompt", "draft", "critique")))
