"""The comparison table: rows = variants (or, for an ablation, variant x the settings the runs differ in), columns
= benchmarks grouped as the CGD paper does, each group with its average; seeds averaged with their spread.

Reads only normalized result rows (RUN_DIR/results.jsonl), never re-scores anything, so it is cheap to redo. Only a
benchmark's headline metric is shown (`primary` rows; hand-made rows without the flag count as headline rows).

Deltas: against `base`, and for non-baseline rows (cgd) against the best baseline in each column, where the
baselines are base, sft, distilled_sft and cft. The best cell of each column is marked. When a table holds rows of
this harness's runs, best cells and deltas are computed over those rows only (published reference rows are shown
for comparison); a table of reference rows alone is marked over its own rows.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.report.groups import GROUPS, OTHER, OVERALL, average_id, display_name, group_of, order_key

VARIANT_ORDER = ("base", "sft", "distilled_sft", "cft", "cgd")
BASELINES = ("base", "sft", "distilled_sft", "cft")


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
    bootstrap: dict[str, Any] = field(default_factory=dict)  # resamples, seed, confidence
    versus: list[str] = field(default_factory=list)  # extra delta sections: non-baseline rows against a variant

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
        pool = [r for r in self._peers(row) if r.variant in BASELINES and column in r.cells]
        # In a matrix whose baselines vary too (a learning-rate sweep), compare within the same settings.
        pool = [r for r in pool if not r.settings or r.settings == row.settings] or pool
        return max(pool, key=lambda r: r.cells[column].mean, default=None)

    def delta_best(self, row: Row, column: str) -> float | None:
        if row.variant in BASELINES or not self.is_scored(row):
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
        return [r for r in self.scored_rows if r.variant not in BASELINES and self.versus_row(r, variant) is not None]

    def delta_sections(self) -> list[tuple[str, str, list[Row], Any]]:
        """(title, caption, rows, delta(row, column)) for each block of deltas a report shows."""
        out: list[tuple[str, str, list[Row], Any]] = [
            ("Δ vs base", "", self.delta_rows(), self.delta_base),
            ("Δ vs best baseline", f"Against the best of {', '.join(BASELINES)} in each column.",
             self.best_baseline_rows(), self.delta_best)]
        for variant in self.versus:
            out.append((f"Δ vs {variant}", "", self.versus_rows(variant),
                        lambda r, c, v=variant: self.delta_versus(r, c, v)))
        return [s for s in out if s[2]]

    def delta_rows(self) -> list[Row]:
        """Rows with a delta against base."""
        return [r for r in self.scored_rows if r.variant != "base" and self.base_row(r) is not None]

    def best_baseline_rows(self) -> list[Row]:
        """Rows compared with the best baseline (non-baseline rows, when the table has baselines besides base)."""
        # With base the only baseline, this would repeat the deltas against base.
        return [r for r in self.scored_rows
                if r.variant not in BASELINES and any(p.variant in BASELINES[1:] for p in self._peers(r))]


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
    return (VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER), variant)


def headline_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("primary", True) and isinstance(r.get("value"), int | float)]


def column_ids(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(benchmark, metric) -> column id: the benchmark, or benchmark/metric when it has several metrics."""
    metrics: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r["metric"] not in metrics[r["benchmark"]]:
            metrics[r["benchmark"]].append(r["metric"])
    return {(b, m): (b if len(ms) == 1 else f"{b}/{m}") for b, ms in metrics.items() for m in ms}


def make_groups(benchmarks: list[str], published_groups: set[str] = frozenset()) -> list[Group]:
    """Benchmark columns in paper order, grouped, with an average column per group of two or more (or one that a
    reference row publishes an average for)."""
    first_seen = {b: i for i, b in enumerate(benchmarks)}
    ordered = sorted(benchmarks, key=lambda b: (order_key(b), first_seen[b]))
    groups: list[Group] = []
    for spec in (*GROUPS, OTHER, OVERALL):
        cols = [Column(b, display_name(b), spec.id) for b in ordered if group_of(b).id == spec.id]
        if len(cols) >= 2 or (spec.id in published_groups and spec.id != OTHER.id):
            cols.append(Column(average_id(spec.id), f"{spec.label} avg" if cols else "Avg", spec.id, True))
        if cols:
            groups.append(Group(spec.id, spec.label, cols))
    return groups


def _cell(by_seed: dict[Any, float]) -> Cell:
    values = [by_seed[s] for s in sorted(by_seed, key=lambda s: (s is not None, s if s is not None else 0))]
    return Cell(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values), values)


def _signature(rows: list[dict[str, Any]]) -> tuple:
    """What makes two runs' rows of one variant the same model's scores (a matrix shares base, for example)."""
    return tuple(sorted((str(r.get("seed")), str(r.get("model_hash") or r.get("model") or ""), r["benchmark"],
                         r["metric"], round(float(r["value"]), 9)) for r in rows))


def build_table(data: list[dict[str, Any]] | list[RunData], title: str, *, references: list[str] | None = None,
                bootstrap: int = 2000, bootstrap_seed: int = 0, confidence: float = 0.95,
                pairs: list[tuple[str, str]] | None = None, curves: bool = True,
                versus: list[str] | None = None) -> ComparisonTable:
    """The table of one run's result rows, or of several runs (RunData; their differing settings pivot the rows).

    `references`: names of published result sets (data/paper_results) shown as extra rows. `bootstrap`: resamples
    for the paired intervals (0: none); `pairs`: (row key, row key) to compare, default: every row against base, or
    in an ablation every setting against the first one. `versus`: variants to add a delta section against (the
    paper's tables show "CGD - CFT")."""
    from harness.report.reference import load_reference

    runs = [RunData("run", list(data))] if not data or isinstance(data[0], dict) else list(data)  # type: ignore[arg-type]
    headline = {id(run): headline_rows(run.rows) for run in runs}
    ids = column_ids([r for rows in headline.values() for r in rows])
    varied = list(dict.fromkeys(k for run in runs for k in run.settings))

    # variant -> run index -> rows
    by_variant: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for i, run in enumerate(runs):
        for r in headline[id(run)]:
            by_variant[str(r.get("variant") or "base")][i].append(r)

    rows: list[Row] = []
    for variant in sorted(by_variant, key=variant_rank):
        per_run = by_variant[variant]
        shared = len(runs) > 1 and len(per_run) == len(runs) and len({_signature(v) for v in per_run.values()}) == 1
        for i, result_rows in per_run.items():
            settings = {} if shared else runs[i].settings
            key = variant if not settings else f"{variant}[" + ",".join(
                f"{_leaf(k)}={_show(v)}" for k, v in settings.items()) + "]"
            source = ", ".join(run.name for run in runs) if shared else runs[i].name
            rows.append(_run_row(key, variant, settings, source, result_rows, ids))
            rows[-1].meta["dataset"] = (runs[i].info.get("dataset_sizes") or {}).get(variant)
            if shared:
                break
    keys = [r.key for r in rows]
    for r in rows:  # two runs with the same settings (a re-run, or runs without run.json): number them
        if keys.count(r.key) > 1:
            r.key = f"{r.key}@{r.source}"

    ref_rows: list[Row] = []
    notes: list[str] = left_out_notes(runs)
    for name in references or []:
        ref_rows += load_reference(name)
    benchmarks = list(dict.fromkeys([c for r in rows for c in r.cells]
                                    + [c for r in ref_rows for c in r.cells]))
    published = {g for r in ref_rows for g in r.meta.get("published_averages", {})}
    groups = make_groups(benchmarks, published)
    for r in rows:
        _add_averages(r, groups)
    for r in ref_rows:
        notes += _add_reference_averages(r, groups)
    varied = list(dict.fromkeys(varied + [k for r in ref_rows for k in r.settings]))
    table = ComparisonTable(title, groups, rows + ref_rows, varied, notes, versus=list(versus or []))
    if curves:
        from harness.report.runs import loss_curves

        table.curves = loss_curves(runs, table)
    if bootstrap > 0:
        from harness.report.bootstrap import paired_table

        table.bootstrap = {"resamples": bootstrap, "seed": bootstrap_seed, "confidence": confidence}
        table.pairs, missing = paired_table(table, pairs if pairs is not None else default_pairs(table),
                                            resamples=bootstrap, seed=bootstrap_seed, confidence=confidence)
        table.notes += missing
    return table


def left_out_notes(runs: list[RunData]) -> list[str]:
    """One note per run whose training sets left records out (failures max_failed allowed, unverified answers,
    a critique mix), so a reader sees every variant's real dataset size next to its score."""
    notes = []
    for run in runs:
        prompts = ((run.info.get("stages") or {}).get("data") or {}).get("records")
        parts = []
        for variant, size in (run.info.get("dataset_sizes") or {}).items():
            why = ", ".join(f"{n} {reason}" for reason, n in (size.get("left_out") or {}).items())
            if why or (prompts and size.get("examples", prompts) < prompts):
                parts.append(f"{variant} {size.get('examples')}" + (f" ({why})" if why else ""))
        if parts:
            of = f" of {prompts} prompts" if prompts else ""
            notes.append(f"training examples{of} in {run.name}: " + "; ".join(parts))
    return notes


def _run_row(key: str, variant: str, settings: dict[str, Any], source: str, result_rows: list[dict[str, Any]],
             ids: dict[tuple[str, str], str]) -> Row:
    by_col: dict[str, dict[Any, float]] = defaultdict(dict)
    samples: dict[str, dict[Any, tuple[str, str]]] = defaultdict(dict)
    for r in result_rows:
        col = ids[(r["benchmark"], r["metric"])]
        seed = r.get("seed")
        by_col[col][seed] = 100.0 * float(r["value"])
        if r.get("samples"):
            samples[col][seed] = (str(r["samples"]), r["metric"])
    row = Row(key, variant, variant, dict(settings), "run", source, samples=dict(samples))
    row.cells = {col: _cell(vals) for col, vals in by_col.items()}
    row.meta["by_seed"] = {col: dict(vals) for col, vals in by_col.items()}
    return row


def _add_averages(row: Row, groups: list[Group]) -> None:
    by_seed = row.meta.get("by_seed", {})
    for g in groups:
        avg = next((c for c in g.columns if c.is_average), None)
        bench = [c.id for c in g.benchmarks]
        if avg is None or not bench or not all(c in by_seed for c in bench):
            continue
        seeds = set.intersection(*(set(by_seed[c]) for c in bench))
        if seeds:
            row.cells[avg.id] = _cell({s: statistics.fmean(by_seed[c][s] for c in bench) for s in seeds})


def _add_reference_averages(row: Row, groups: list[Group]) -> list[str]:
    notes = []
    published = row.meta.get("published_averages", {})
    for g in groups:
        avg = next((c for c in g.columns if c.is_average), None)
        if avg is None:
            continue
        bench = [c.id for c in g.benchmarks]
        computed = statistics.fmean(row.cells[c].mean for c in bench) if bench and all(
            c in row.cells for c in bench) else None
        if computed is not None:
            row.cells[avg.id] = Cell(computed, None, 1, [computed])
            if g.id in published and round(computed, 1) != round(published[g.id], 1):
                notes.append(f"{row.label}: the published {g.label} average is {published[g.id]:.1f}; "
                             f"the average of its columns is {computed:.1f} (shown)")
        elif g.id in published:
            row.cells[avg.id] = Cell(published[g.id], None, 1, [published[g.id]], published=True)
    return notes


def default_pairs(table: ComparisonTable) -> list[tuple[str, str]]:
    """Ablation: every setting of a variant against its first setting. Otherwise: every variant against base."""
    runs = [r for r in table.rows if r.kind == "run"]
    if table.is_ablation:
        pairs = []
        for variant in dict.fromkeys(r.variant for r in runs):
            members = [r for r in runs if r.variant == variant and r.settings]
            pairs += [(members[0].key, m.key) for m in members[1:]]
        return pairs
    base = next((r for r in runs if r.variant == "base"), None)
    return [(base.key, r.key) for r in runs if base is not None and r is not base]


def find_row(table: ComparisonTable, name: str) -> Row | None:
    """A row by key, label or title (for --pair)."""
    for attr in ("key", "title", "label"):
        found = [r for r in table.rows if getattr(r, attr) == name]
        if len(found) == 1:
            return found[0]
    return None
