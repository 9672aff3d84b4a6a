"""Published reference numbers (the CGD and CFT papers' tables), kept as data in data/paper_results/NAME.json.

A file: {name, title, source, notes, student?, teacher?, recipe?, rows: [{key, method, variant, settings?, teacher?,
values: {benchmark: percent}, spread?: {benchmark: percent}, published_averages?: {group: percent}}]}. Numbers are
as published (percent); benchmark names are the harness's (harness.report.groups). `cgd report --reference NAME`
shows a file's rows under the run's rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.paths import PROJECT_ROOT

REFERENCE_DIR = PROJECT_ROOT / "data" / "paper_results"


def available_references() -> list[str]:
    return sorted(p.stem for p in REFERENCE_DIR.glob("*.json"))


def read_reference(name: str) -> dict[str, Any]:
    path = Path(name) if name.endswith(".json") else REFERENCE_DIR / f"{name}.json"
    if not path.is_file():
        raise HarnessError(f"unknown reference '{name}'; available: {', '.join(available_references())}")
    return json.loads(path.read_text())


def load_reference(name: str) -> list[Any]:
    """The reference's rows as table rows (kind "reference")."""
    from harness.report.model import Cell, Row, setting_text

    data = read_reference(name)
    ref = data.get("name", name)
    rows = []
    for item in data["rows"]:
        settings = item.get("settings") or {}
        key = f"{ref}:{item['key']}"
        row = Row(key, item["variant"], f"{ref}: {item['method']}", dict(settings), "reference", ref)
        spread = item.get("spread") or {}
        row.cells = {b: Cell(float(v), spread.get(b), 1, [float(v)]) for b, v in item["values"].items()}
        row.meta = {"published_averages": item.get("published_averages") or {}, "teacher": item.get("teacher"),
                    "method": item["method"], "settings_text": {k: setting_text(v) for k, v in settings.items()}}
        rows.append(row)
    return rows


def reference_result_rows(name: str) -> list[dict[str, Any]]:
    """The reference as normalized result rows (value 0..1), as if a run had produced them (tests, demos)."""
    data = read_reference(name)
    return [{"benchmark": b, "metric": "exact_match", "value": v / 100.0, "stderr": None, "n": None,
             "variant": item["variant"], "seed": None, "model": item["key"], "primary": True}
            for item in data["rows"] for b, v in item["values"].items()]
