"""A method added from outside harness/: one registration (imported through $CGD_PLUGINS by the tests)."""

from __future__ import annotations

from typing import Any

from harness.prompts import PromptStyle
from harness.variants import VariantSpec, register_variant
from harness.variants.rows import chat_row, usable


def build_rows(records: list[dict[str, Any]], style: PromptStyle, params: dict[str, Any]) -> list[dict[str, Any]]:
    """prompt -> the teacher's critique of the student's draft, without the draft (a deliberately odd method)."""
    return [chat_row(r["id"], style.train_messages("plain", prompt=r["prompt"]), r["critique"])
            for r in usable(records)]


register_variant(VariantSpec(name="critique_only", doc="prompt → the teacher's critique (no draft shown)", order=35,
                             baseline=True, source="critique", build_rows=build_rows,
                             reads=("id", "prompt", "critique")))
