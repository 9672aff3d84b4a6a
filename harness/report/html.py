"""The self-contained HTML report: the tables, a bar chart of deltas, a heat map for ablations and the training
loss curves, all inline (SVG drawn by harness.report.svg), so the file opens anywhere with no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from harness.report import svg
from harness.report.render import (
    LEGEND,
    best_baseline_names,
    fmt_analysis_value,
    fmt_delta,
    fmt_value,
    group_legend,
    index_cells,
    index_headers,
    pairs_caption,
)
from harness.report.table import ComparisonTable, Row

TEMPLATES = Path(__file__).parent / "templates"


def _delta_class(delta: float | None) -> str:
    if delta is None:
        return ""
    d = round(delta, 1)
    return "pos" if d > 0 else "neg" if d < 0 else "zero"


def _run_columns(table: ComparisonTable) -> list:
    """Columns that some scored row has a value in (reference rows may bring columns the runs lack)."""
    return [c for c in table.columns if any(c.id in r.cells for r in table.scored_rows)]


def delta_chart(table: ComparisonTable) -> str:
    """Bars: each row's delta against base per column (in an ablation without base: against the first setting)."""
    cols = _run_columns(table)
    rows = table.delta_rows()
    if rows:
        series = [(r.title, [table.delta_base(r, c.id) for c in cols]) for r in rows]
        return svg.bar_chart([c.label for c in cols], series, title="Δ vs base (points)", y_label="Δ points")
    if table.is_ablation:
        series = []
        for variant in dict.fromkeys(r.variant for r in table.scored_rows):
            members = [r for r in table.scored_rows if r.variant == variant and r.settings]
            for m in members[1:]:
                series.append((m.title, [_sub(m, members[0], c.id) for c in cols]))
        if series:
            first = next(r for r in table.scored_rows if r.settings)
            return svg.bar_chart([c.label for c in cols], series, title=f"Δ vs {first.title} (points)",
                                 y_label="Δ points")
    return ""


def _sub(a: Row, b: Row, col: str) -> float | None:
    if col not in a.cells or col not in b.cells:
        return None
    return a.cells[col].mean - b.cells[col].mean


def ablation_heatmap(table: ComparisonTable) -> str:
    if not table.is_ablation:
        return ""
    rows = [r for r in table.rows if r.kind == "run"]
    cols = _run_columns(table)
    return svg.heatmap([r.title for r in rows], [c.label for c in cols],
                       [[r.cells[c.id].mean if c.id in r.cells else None for c in cols] for r in rows],
                       title=f"Ablation: {', '.join(table.varied)} x benchmark",
                       note="Colour: position within the column (light = lowest, dark = highest).")


def loss_chart(table: ComparisonTable) -> str:
    if not table.curves:
        return ""
    x_label = "epoch"
    return svg.line_chart([(c.label, c.points) for c in table.curves], title="Training loss", x_label=x_label,
                          y_label="loss")


def selection_chart(table: ComparisonTable) -> str:
    if not table.selection:
        return ""
    return svg.line_chart([(c.label, c.points) for c in table.selection], title="Checkpoint selection (held-out)",
                          x_label="step", y_label="score")


def analysis_html(table: ComparisonTable) -> list[dict[str, Any]]:
    """The Analysis section's tables (recipe `analysis:`), their cells as text."""
    return [{"title": a.title, "notes": a.notes,
             "tables": [{"title": t.title, "columns": t.columns,
                         "rows": [[{"text": fmt_analysis_value(v), "num": isinstance(v, int | float)} for v in row]
                                  for row in t.rows]} for t in a.tables]}
            for a in table.analysis]


def to_html(table: ComparisonTable) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    cols = table.columns
    rows: list[dict[str, Any]] = []
    seen_reference = False
    has_runs = any(r.kind == "run" for r in table.rows)  # reference rows are greyed only beside run rows
    for r in table.rows:
        cells = []
        for c in cols:
            delta = table.delta_base(r, c.id)
            cells.append({"text": fmt_value(r.cells.get(c.id)), "avg": c.is_average, "best": table.is_best(r, c.id),
                          "delta": fmt_delta(delta) if delta is not None else "", "delta_class": _delta_class(delta)})
        first_reference = r.kind == "reference" and not seen_reference
        seen_reference |= r.kind == "reference"
        rows.append({"kind": r.kind if has_runs else "run", "index": index_cells(table, r), "cells": cells,
                     "first_reference": first_reference and has_runs})
    names = best_baseline_names(table)
    sections = []
    for title, caption, section_rows, delta in table.delta_sections():
        if title == "Δ vs base":  # shown in the main table's cells
            continue
        sections.append({"title": title, "caption": caption,
                         "best_names": names if title == "Δ vs best baseline" else None,
                         "rows": [{"index": index_cells(table, r),
                                   "deltas": [{"text": fmt_delta(delta(r, c.id)), "cls": _delta_class(delta(r, c.id))}
                                              for c in cols]} for r in section_rows]})
    charts = [{"id": cid, "svg": chart} for cid, chart in (("delta-chart", delta_chart(table)),
                                                            ("heatmap", ablation_heatmap(table)),
                                                            ("loss-chart", loss_chart(table)),
                                                            ("selection-chart", selection_chart(table))) if chart]
    pairs = [{"a": p.a, "b": p.b, "column": p.column, "diff": fmt_delta(p.diff), "cls": _delta_class(p.diff),
              "interval": f"[{fmt_delta(p.low)}, {fmt_delta(p.high)}]", "n": p.n} for p in table.pairs]
    sources = ", ".join(dict.fromkeys(s for r in table.rows for s in r.source.split(", ") if s)) or "-"
    return env.get_template("report.html.jinja").render(
        title=table.title, legend=LEGEND, group_legend=group_legend(table), varied=table.varied,
        index_headers=index_headers(table), groups=table.groups, columns=cols, rows=rows, sections=sections,
        charts=charts,
        pairs=pairs, pairs_caption=pairs_caption(table) if pairs else "", notes=table.notes, sources=sources,
        analysis=analysis_html(table))
