"""Run one analysis (harness/analysis/) on its upstream stages' records and keep its result.

The stage's params are the analysis name, its VERSION and its settings; its inputs are every stage of the kinds the
analysis NEEDS (all variants' evaluate stages, the critique and refine stages, ...), so the fingerprint moves
when any of them does and a re-run with the same inputs is cached. The result ({tables, numbers, notes}) is the
stage's one record (and `result.json` beside it); the stage info holds the numbers.
"""

from __future__ import annotations

import json
from typing import Any

from harness.stages.base import StageContext, StageInput, StageOutput
from harness.store import atomic_write_json

KIND = "analysis"
VERSION = 1
READS = ()
WRITES = ("analysis", "tables", "numbers", "notes")


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    from harness.analysis import get_analysis

    module = get_analysis(ctx.params["analysis"])
    settings = module.Settings(**ctx.params.get("settings", {}))
    out: dict[str, Any] = module.run(ctx, inputs, settings)
    out = json.loads(json.dumps(out, default=_plain))  # JSON-serializable, as the interface says
    record = {"analysis": module.NAME, "tables": out.get("tables", []), "numbers": out.get("numbers", {}),
              "notes": out.get("notes", [])}
    atomic_write_json(ctx.path / "result.json", record)
    info = {"analysis": module.NAME, "tables": len(record["tables"]), "numbers": record["numbers"]}
    ctx.log(f"{module.NAME}: {len(record['tables'])} table(s), {len(record['numbers'])} number(s)")
    return StageOutput(records=[record], info=info)


def _plain(value: Any) -> Any:
    """numpy scalars and the like, as plain numbers; anything else as its text."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def result_of(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The analysis result ({tables, numbers, notes}) in a finished analysis stage's records."""
    if not records:
        return None
    rec = records[0]
    return {"tables": rec.get("tables", []), "numbers": rec.get("numbers", {}), "notes": rec.get("notes", [])}
