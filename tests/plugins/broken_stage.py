"""A work stage that declares a field it does not write, and a variant that trains on it."""

from __future__ import annotations

import sys
from typing import Any

from harness.stages import STAGES
from harness.stages.base import StageOutput
from harness.variants import VariantSpec, register_variant
from harness.variants.rows import chat_row
from harness.variants.work import WorkStage, register_work

KIND = "paraphrase"
VERSION = 1
READS = ("id", "prompt")
WRITES = ("paraphrase",)


def run(ctx: Any, inputs: dict[str, Any]) -> StageOutput:
    return StageOutput(records=[{**r, "status": "ok"} for r in inputs["data"].records])  # forgets `paraphrase`


STAGES[KIND] = sys.modules[__name__]
register_work(WorkStage("paraphrase", KIND, {"data": "data"}, lambda recipe: {}))
register_variant(VariantSpec(
    name="paraphrased", doc="paraphrase → answer", order=91, baseline=False, source="paraphrase",
    build_rows=lambda records, style, params: [chat_row(r["id"], [], r["paraphrase"]) for r in records],
    reads=("id", "paraphrase")))
