"""Load prompts and reference answers; give each row a stable id (its own id field, or a hash of the row)."""

from __future__ import annotations

import json

from harness.errors import HarnessError
from harness.stages.base import StageContext, StageInput, StageOutput
from harness.store import fingerprint

KIND = "data"
VERSION = 1
READS: tuple[str, ...] = ()
WRITES = ("id", "prompt", "reference")


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    p = ctx.params
    records, seen = [], set()
    skipped: list[int] = []  # line numbers of rows without a usable prompt
    duplicates = 0
    with open(p["path"], encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{p['path']}:{lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise HarnessError(f"{p['path']}:{lineno}:1: expected a JSON object per line, got {type(row).__name__}")
            prompt = row.get(p["prompt_field"])
            if not isinstance(prompt, str) or not prompt.strip():
                skipped.append(lineno)
                continue
            rid = str(row[p["id_field"]]) if p["id_field"] and p["id_field"] in row else fingerprint(row)[:16]
            if rid in seen:
                duplicates += 1  # exact duplicate rows would collide in every later stage
                continue
            seen.add(rid)
            reference = row.get(p["answer_field"])
            records.append({"id": rid, "prompt": prompt, "reference": None if reference is None else str(reference)})
            if p["limit"] and len(records) >= p["limit"]:
                break
    if not records:
        raise HarnessError(f"{p['path']}: no rows with a non-empty '{p['prompt_field']}' field "
                           f"(data.prompt_field); fields of the first row: {_first_fields(p['path'])}")
    if skipped:
        ctx.log(f"[yellow]skipped {len(skipped)} rows without a non-empty '{p['prompt_field']}' "
                f"(first at {p['path']}:{skipped[0]})[/yellow]")
    if duplicates:
        ctx.log(f"skipped {duplicates} duplicate rows")
    return StageOutput(records=records, info={"rows": len(records), "skipped": len(skipped), "duplicates": duplicates})


def _first_fields(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return "(not JSON)"
                return ", ".join(row) if isinstance(row, dict) else "(not an object)"
    return "(empty file)"
