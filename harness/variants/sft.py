"""sft: plain prompt -> the dataset's own reference answer."""

from __future__ import annotations

from typing import Any

from harness.prompts import PromptStyle
from harness.variants.rows import Record, chat_row, usable
from harness.variants.spec import VariantSpec, register_variant


def build_rows(records: list[Record], style: PromptStyle, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [chat_row(r["id"], style.train_messages("plain", prompt=r["prompt"]), r["reference"])
            for r in usable(records) if r.get("reference")]


SPEC = register_variant(VariantSpec(name="sft", doc="prompt → the dataset's answer", order=10, baseline=True,
                                    source="data", build_rows=build_rows, reads=("id", "prompt", "reference")))
