"""distilled_sft: plain prompt -> the teacher's own answer to it."""

from __future__ import annotations

from typing import Any

from harness.prompts import PromptStyle
from harness.variants.rows import Record, chat_row, usable, verified
from harness.variants.spec import VariantSpec, register_variant


def build_rows(records: list[Record], style: PromptStyle, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [chat_row(r["id"], style.train_messages("plain", prompt=r["prompt"]), r["teacher_answer"])
            for r in usable(records) if verified(r, "teacher_answer", params["keep_unverified"])]


SPEC = register_variant(VariantSpec(name="distilled_sft", doc="prompt → the teacher's answer to the prompt alone",
                                    order=20, baseline=True, source="answer", build_rows=build_rows,
                                    reads=("id", "prompt", "teacher_answer"), verified_field="teacher_answer"))
