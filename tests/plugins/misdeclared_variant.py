"""A variant whose rows read a field no stage writes: the pipeline must refuse its graph before anything runs."""

from __future__ import annotations

from harness.variants import VariantSpec, register_variant
from harness.variants.rows import chat_row

register_variant(VariantSpec(
    name="needs_hint", doc="prompt → a hint nothing produces", order=90, baseline=False, source="refine",
    build_rows=lambda records, style, params: [chat_row(r["id"], [], r["hint"]) for r in records],
    reads=("id", "prompt", "hint")))
