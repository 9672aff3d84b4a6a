"""The comparison table: rows = variants (mean over seeds), columns = benchmark metrics, deltas against base.

Reads only normalized result rows (results.jsonl); never re-scores anything, so it is always cheap to redo.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

VARIANT_ORDER = ("base", "sft", "distilled_sft", "cft", "cgd")


@dataclass
class Cell:
    mean: float
    spread: float | None  # standard deviation over seeds, when there are several
    seeds: int


@dataclass
class ComparisonTable:
    title: str
    columns: list[str]  # "benchmark/metric"
    rows: dict[str, dict[str, Cell]]  # variant -> column -> cell

    def delta(self, variant: str, column: str) -> float | None:
        base = self.rows.get("base", {}).get(column)
        cell = self.rows.get(variant, {}).get(column)
        if variant == "base" or base is None or cell is None:
            return None
        return cell.mean - base.mean


def load_results(run_dirs: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for run_dir in run_dirs:
        path = run_dir / "results.jsonl"
        if path.exists():
            rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def build_table(rows: list[dict[str, Any]], title: str) -> ComparisonTable:
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    columns: list[str] = []
    for row in rows:
        column = f"{row['benchmark']}/{row['metric']}"
        if column not in columns:
            columns.append(column)
        values[row["variant"]][column].append(100.0 * row["value"])
    table_rows = {}
    for variant in sorted(values, key=lambda v: (VARIANT_ORDER.index(v) if v in VARIANT_ORDER else 99, v)):
        table_rows[variant] = {
            col: Cell(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals))
            for col, vals in values[variant].items()
        }
    return ComparisonTable(title, columns, table_rows)


def _fmt(cell: Cell | None, delta: float | None) -> str:
    if cell is None:
        return "-"
    text = f"{cell.mean:.1f}"
    if cell.spread is not None:
        text += f" ±{cell.spread:.1f}"
    if delta is not None:
        text += f" ({delta:+.1f})"
    return text


def to_rich(table: ComparisonTable) -> Table:
    out = Table(title=table.title, caption="scores x100; (delta vs base); ± = std over seeds")
    out.add_column("variant", style="bold")
    for col in table.columns:
        out.add_column(col, justify="right")
    for variant, cells in table.rows.items():
        out.add_row(variant, *[_fmt(cells.get(c), table.delta(variant, c)) for c in table.columns])
    return out


def to_markdown(table: ComparisonTable) -> str:
    lines = [f"# {table.title}", "", "Scores x100; (delta vs base); ± is the standard deviation over seeds.", "",
             "| variant | " + " | ".join(table.columns) + " |", "|---|" + "---:|" * len(table.columns)]
    for variant, cells in table.rows.items():
        lines.append(f"| {variant} | " + " | ".join(_fmt(cells.get(c), table.delta(variant, c)) for c in table.columns)
                     + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: ComparisonTable) -> str:
    lines = ["variant,column,mean,spread,seeds,delta_vs_base"]
    for variant, cells in table.rows.items():
        for col, cell in cells.items():
            delta = table.delta(variant, col)
            lines.append(f"{variant},{col},{cell.mean:.4f},{'' if cell.spread is None else f'{cell.spread:.4f}'},"
                         f"{cell.seeds},{'' if delta is None else f'{delta:.4f}'}")
    return "\n".join(lines) + "\n"


def to_json(table: ComparisonTable) -> str:
    return json.dumps({"title": table.title, "columns": table.columns,
                       "rows": {v: {c: {"mean": cell.mean, "spread": cell.spread, "seeds": cell.seeds,
                                        "delta_vs_base": table.delta(v, c)} for c, cell in cells.items()}
                                for v, cells in table.rows.items()}}, indent=2)


RENDERERS = {"md": to_markdown, "csv": to_csv, "json": to_json}
