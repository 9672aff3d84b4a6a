"""The report's data: cells, columns, groups, rows and the comparison table with its deltas and best cells.

Every other module of harness/report imports these from here and none of them is imported back, so the package
has no import circle (tests/test_report_imports.py walks the imports).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.variants import baselines, variant_names

VARIANT_ORDER = tuple(variant_names())  # the built-ins at import; variant_rank reads the registry (plugins too)


@dataclass
class Cell:
    mean: float  # x100
    spread: float | None  # standard deviation over seeds when there are several (or as published)
    seeds: int
    values: list[float] = field(default_factory=list)  # per seed, x100
    published: bool = False  # a published average shown because the row lacks the benchmarks to compute it


@dataclass
class Column:
    id: str  # benchmark (or benchmark/metric when a benchmark has several), or avg:<group>
    label: str
    group: str
    is_average: bool = False


@dataclass
class Group:
    id: str
    label: str
    columns: list[Column]

    @property
    def benchmarks(self) -> list[Column]:
        return [c for c in self.columns if not c.is_average]


@dataclass
class Row:
    key: str  # unique: "cgd", "cgd[specificity=generic]", "paper-llama:cgd"
    variant: str
    label: str  # the first column's text
    settings: dict[str, Any] = field(default_factory=dict)  # varied key -> value (ablations)
    kind: str = "run"  # run | reference
    source: str = ""  # run folder(s) or reference name
    cells: dict[str, Cell] = field(default_factory=dict)
    # column -> seed -> (per-sample log, metric); for paired bootstrap intervals
    samples: dict[str, dict[Any, tuple[str, str]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """One-line name for legends: the label plus the settings."""
        if not self.settings:
            return self.label
        return f"{self.label} " + ", ".join(f"{_leaf(k)}={_show(v)}" for k, v in self.settings.items())


@dataclass
class PairedDiff:
    a: str  # row keys; the difference is b - a, x100
    b: str
    column: str
    diff: float
    low: float
    high: float
    n: int  # items both rows were scored on


@dataclass
class LossCurve:
    label: str
    path: str
    points: list[tuple[float, float]]  # (epoch or step, loss)


@dataclass
class AnalysisTable:
    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class AnalysisSection:
    """One analysis's result in one run (run.json `analysis`: name -> {tables, numbers, notes})."""

    name: str
    run: str  # the run it came from ("" in a one-run report)
    tables: list[AnalysisTable] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.name} ({self.run})" if self.run else self.name


def analysis_sections(runs: list[RunData]) -> list[AnalysisSection]:
    """The analyses the runs' run.json files hold, run by run, in the order the recipe listed them."""
    sections = []
    for run in runs:
        for name, res in (run.info.get("analysis") or {}).items():
            if not isinstance(res, dict):
                continue
            tables = [AnalysisTable(str(t.get("title", "")), list(t.get("columns", [])), list(t.get("rows", [])))
                      for t in res.get("tables") or [] if isinstance(t, dict)]
            sections.append(AnalysisSection(name, run.name if len(runs) > 1 else "", tables,
                                            dict(res.get("numbers") or {}), list(res.get("notes") or [])))
    return sections


@dataclass
class RunData:
    """One run's result rows and what identifies it among the runs of a report."""

    name: str
    rows: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)  # run.json


@dataclass
class ComparisonTable:
    title: str
    groups: list[Group]
    rows: list[Row]
    varied: list[str] = field(default_factory=list)  # dotted keys the runs differ in: the pivot's index
    notes: list[str] = field(default_factory=list)
    pairs: list[PairedDiff] = field(default_factory=list)
    curves: list[LossCurve] = field(default_factory=list)
    selection: list[LossCurve] = field(default_factory=list)  # held-out score by checkpoint step, per train stage
    bootstrap: dict[str, Any] = field(default_factory=dict)  # resamples, seed, confidence
    versus: list[str] = field(default_factory=list)  # extra delta sections: non-baseline rows against a variant
    analysis: list[AnalysisSection] = field(default_factory=list)  # the runs' analyses (recipe `analysis:`)

    @property
    def columns(self) -> list[Column]:
        return [c for g in self.groups for c in g.columns]

    @property
    def scored_rows(self) -> list[Row]:
        """Rows that best cells and deltas are computed over."""
        runs = [r for r in self.rows if r.kind == "run"]
        return runs or self.rows

    @property
    def is_ablation(self) -> bool:
        """Several runs that differ in recipe settings (not only reference rows with settings)."""
        return any(r.settings for r in self.rows if r.kind == "run")

    def row(self, key: str) -> Row | None:
        return next((r for r in self.rows if r.key == key), None)

    def is_scored(self, row: Row) -> bool:
        return any(r is row for r in self.scored_rows)

    def _peers(self, row: Row) -> list[Row]:
        """Scored rows comparable with `row`: all run rows, or the rows of the same published source."""
        return [r for r in self.scored_rows if r.kind == "run" or r.source == row.source]

    def base_row(self, row: Row) -> Row | None:
        if not self.is_scored(row):
            return None
        pool = [r for r in self._peers(row) if r.variant == "base"]
        if len(pool) > 1:
            pool = [r for r in pool if r.settings == row.settings] or pool[:1]
        return pool[0] if pool else None

    def delta_base(self, row: Row, column: str) -> float | None:
        base = self.base_row(row)
        if base is None or base is row or row.variant == "base":
            return None
        return _diff(row.cells.get(column), base.cells.get(column))

    def best_baseline(self, row: Row, column: str) -> Row | None:
        pool = [r for r in self._peers(row) if r.variant in baselines() and column in r.cells]
        # In a matrix whose baselines vary too (a learning-rate sweep), compare within the same settings.
        pool = [r for r in pool if not r.settings or r.settings == row.settings] or pool
        return max(pool, key=lambda r: r.cells[column].mean, default=None)

    def delta_best(self, row: Row, column: str) -> float | None:
        if row.variant in baselines() or not self.is_scored(row):
            return None
        best = self.best_baseline(row, column)
        return None if best is None else _diff(row.cells.get(column), best.cells.get(column))

    def is_best(self, row: Row, column: str) -> bool:
        if not self.is_scored(row) or column not in row.cells:
            return False
        present = [r for r in self._peers(row) if column in r.cells]
        top = max(round(r.cells[column].mean, 1) for r in present)
        return len(present) > 1 and round(row.cells[column].mean, 1) == top

    def versus_row(self, row: Row, variant: str) -> Row | None:
        pool = [r for r in self._peers(row) if r.variant == variant and r is not row]
        if len(pool) > 1:
            pool = [r for r in pool if r.settings == row.settings] or pool[:1]
        return pool[0] if pool else None

    def delta_versus(self, row: Row, column: str, variant: str) -> float | None:
        other = self.versus_row(row, variant) if self.is_scored(row) else None
        return None if other is None else _diff(row.cells.get(column), other.cells.get(column))

    def versus_rows(self, variant: str) -> list[Row]:
        return [r for r in self.scored_rows if r.variant not in baselines() and self.versus_row(r, variant) is not None]

    def delta_sections(self) -> list[tuple[str, str, list[Row], Any]]:
        """(title, caption, rows, delta(row, column)) for each block of deltas a report shows."""
        out: list[tuple[str, str, list[Row], Any]] = [
            ("Δ vs base", "", self.delta_rows(), self.delta_base),
            ("Δ vs best baseline", f"Against the best of {', '.join(self.baselines_present())} in each column.",
             self.best_baseline_rows(), self.delta_best)]
        for variant in self.versus:
            out.append((f"Δ vs {variant}", "", self.versus_rows(variant),
                        lambda r, c, v=variant: self.delta_versus(r, c, v)))
        return [s for s in out if s[2]]

    def baselines_present(self) -> list[str]:
        """The registered baselines that have rows in this table, in table order."""
        present = {r.variant for r in self.scored_rows}
        return [b for b in baselines() if b in present]

    def delta_rows(self) -> list[Row]:
        """Rows with a delta against base."""
        return [r for r in self.scored_rows if r.variant != "base" and self.base_row(r) is not None]

    def best_baseline_rows(self) -> list[Row]:
        """Rows compared with the best baseline (non-baseline rows, when the table has baselines besides base)."""
        # With base the only baseline, this would repeat the deltas against base.
        return [r for r in self.scored_rows
                if r.variant not in baselines() and any(p.variant in baselines() and p.variant != "base"
                                                        for p in self._peers(r))]


def _diff(a: Cell | None, b: Cell | None) -> float | None:
    return None if a is None or b is None else a.mean - b.mean


def _leaf(key: str) -> str:
    return key.split(".")[-1]


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ",".join(f"{k}:{_show(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(map(_show, value))
    return str(value)


def setting_text(value: Any) -> str:
    return _show(value)


def leaf_names(keys: list[str]) -> dict[str, str]:
    """Short names for varied keys: the last part unless two keys share it."""
    leaves = [_leaf(k) for k in keys]
    return {k: (_leaf(k) if leaves.count(_leaf(k)) == 1 else k) for k in keys}


def variant_rank(variant: str) -> tuple[int, str]:
    order = variant_names()
    return (order.index(variant) if variant in order else len(order), variant)


def find_row(table: ComparisonTable, name: str) -> Row | None:
    """A row by key, label or title (for --pair)."""
    for attr in ("key", "title", "label"):
        found = [r for r in table.rows if getattr(r, attr) == name]
        if len(found) == 1:
            return found[0]
    return None
