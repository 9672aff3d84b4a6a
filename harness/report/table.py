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
from typing import Any

from harness.report.bootstrap import paired_table
from harness.report.groups import GROUPS, OTHER, OVERALL, average_id, display_name, group_in, order_key
from harness.report.model import (  # noqa: F401  (re-exported: the table's public names)
    VARIANT_ORDER,
    AnalysisSection,
    AnalysisTable,
    Cell,
    Column,
    ComparisonTable,
    Group,
    LossCurve,
    PairedDiff,
    Row,
    RunData,
    _leaf,
    _show,
    analysis_sections,
    find_row,
    leaf_names,
    setting_text,
    variant_rank,
)
from harness.report.reference import load_reference
from harness.report.runs import loss_curves, selection_curves


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
        present = set(benchmarks)
        cols = [Column(b, display_name(b), spec.id) for b in ordered if group_in(b, present).id == spec.id]
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
    notes: list[str] = left_out_notes(runs) + spend_notes(runs) + grader_notes(runs) + decontamination_notes(runs)
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


        table.curves = loss_curves(runs, table)
        table.selection = selection_curves(runs, table)
        table.notes += [f"checkpoint selection, {c.label}: " + ", ".join(f"step {x:g} {y:.3f}" for x, y in c.points)
                        for c in table.selection]
    if bootstrap > 0:


        table.bootstrap = {"resamples": bootstrap, "seed": bootstrap_seed, "confidence": confidence}
        table.pairs, missing = paired_table(table, pairs if pairs is not None else default_pairs(table),
                                            resamples=bootstrap, seed=bootstrap_seed, confidence=confidence)
        table.notes += missing
    table.analysis = analysis_sections(runs)  # run.json `analysis` (recipe `analysis:`), shown as they are
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
            if (long := size.get("overlong") or {}).get("rows"):  # over train.sequence_len (train.overlong)
                why += f"{', ' if why else ''}{long['rows']} over {long['sequence_len']} tokens, {long['action']}"
                if long["action"] == "truncated" and long.get("prompt_over"):
                    why += f" ({long['prompt_over']} with no target token left)"
            if why or (prompts and size.get("examples", prompts) < prompts):
                parts.append(f"{variant} {size.get('examples')}" + (f" ({why})" if why else ""))
        if parts:
            of = f" of {prompts} prompts" if prompts else ""
            notes.append(f"training examples{of} in {run.name}: " + "; ".join(parts))
    return notes


def decontamination_notes(runs: list[RunData]) -> list[str]:
    """Per run, how many training prompts matched a benchmark of its suites (run.json's `decontamination`)."""
    from harness.decontam import summary_line

    notes = []
    for run in runs:
        found = run.info.get("decontamination")
        if found and found.get("benchmarks") is not None:
            done = "; dropped before training" if found.get("mode") == "drop" else ""
            notes.append(f"decontamination in {run.name}: {summary_line(found)}{done}")
    return notes


def grader_notes(runs: list[RunData]) -> list[str]:
    """Which answer grader (eval.grader) scored each benchmark column, for rows that record one."""
    by_grader: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        for r in headline_rows(run.rows):
            name = display_name(r["benchmark"])
            if r.get("grader") and name not in by_grader[r["grader"]]:
                by_grader[r["grader"]].append(name)
    if not by_grader:
        return []
    return ["graded by: " + "; ".join(f"{g} ({', '.join(b)})" for g, b in sorted(by_grader.items()))]


def spend_notes(runs: list[RunData]) -> list[str]:
    """The teacher spend of each run that paid for anything, by stage, against the recipe's budget when it set one."""
    notes = []
    for run in runs:
        stages = run.info.get("stages") or {}
        paid = {name: s.get("cost_usd") or 0.0 for name, s in stages.items() if (s.get("cost_usd") or 0) > 0}
        budget = (run.info.get("recipe_config") or {}).get("budget_usd")
        if paid or budget:
            by_stage = ", ".join(f"{name} ${usd:.4f}" for name, usd in paid.items())
            of = f" of the ${budget:g} budget" if budget else ""
            notes.append(f"teacher spend in {run.name}: ${sum(paid.values()):.4f}{of}"
                         + (f" ({by_stage})" if by_stage else ""))
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
