"""Text renderings of a ComparisonTable: terminal (rich), Markdown, CSV, JSON. The HTML report is in html.py."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from rich.console import Group as RichGroup
from rich.markup import escape
from rich.table import Table

from harness.report.table import AnalysisSection, Cell, Column, ComparisonTable, Row, leaf_names, setting_text

LEGEND = "Scores x100, mean over seeds (± standard deviation over seeds when there are several)."


def fmt_value(cell: Cell | None, spread: bool = True) -> str:
    if cell is None:
        return "-"
    text = f"{cell.mean:.1f}"
    if spread and cell.spread is not None:
        text += f" ±{cell.spread:.1f}"
    return text + ("†" if cell.published else "")


def fmt_delta(delta: float | None) -> str:
    if delta is None:
        return "-"
    delta = round(delta, 1)
    return f"{delta + 0.0:+.1f}"  # + 0.0 turns -0.0 into 0.0


def group_legend(table: ComparisonTable) -> str:
    parts = []
    for g in table.groups:
        avg = next((c for c in g.columns if c.is_average), None)
        if avg is not None and g.benchmarks:
            parts.append(f"{avg.label}: {', '.join(c.label for c in g.benchmarks)}.")
    return " ".join(parts)


def _shows_sizes(table: ComparisonTable) -> bool:
    return any(r.meta.get("dataset") for r in table.rows)


def index_headers(table: ComparisonTable) -> list[str]:
    names = leaf_names(table.varied)
    return ["variant", *(names[k] for k in table.varied), *(["train n"] if _shows_sizes(table) else [])]


def index_cells(table: ComparisonTable, row: Row, markdown: bool = False) -> list[str]:
    """The row's label, its settings, and (when the runs recorded them) the size of the set it was trained on."""
    label = f"*{row.label}*" if markdown and row.kind == "reference" else row.label
    size = (row.meta.get("dataset") or {}).get("examples")
    return [label, *(setting_text(row.settings[k]) if k in row.settings else "—" for k in table.varied),
            *([str(size) if size is not None else "—"] if _shows_sizes(table) else [])]


def best_baseline_names(table: ComparisonTable) -> list[str] | None:
    """The best baseline of each column, when it is the same for every row compared with it."""
    rows = table.best_baseline_rows()
    names = []
    for col in table.columns:
        best = {id(b): b for b in (table.best_baseline(r, col.id) for r in rows)}
        if len(best) > 1:
            return None
        found = next(iter(best.values()), None)
        names.append("-" if found is None else found.key.split(":", 1)[-1])
    return names if rows else None


# ---------------------------------------------------------------------------------------------------- Markdown


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_header(table: ComparisonTable, columns: list[Column]) -> list[str]:
    index = index_headers(table)
    return [_md_row([*index, *(c.label for c in columns)]), "|" + "---|" * len(index) + "---:|" * len(columns)]


def to_markdown(table: ComparisonTable) -> str:
    cols = table.columns
    lines = [f"# {table.title}", "", f"{LEGEND} **Bold**: best in its column."]
    legend = group_legend(table)
    if legend:
        lines.append(legend)
    lines += ["", *_md_header(table, cols)]
    for row in table.rows:
        cells = []
        for c in cols:
            text = fmt_value(row.cells.get(c.id))
            cells.append(f"**{text}**" if table.is_best(row, c.id) else text)
        lines.append(_md_row([*index_cells(table, row, markdown=True), *cells]))
    names = best_baseline_names(table)
    for title, caption, rows, delta in table.delta_sections():
        lines += ["", f"## {title}", ""] + ([caption, ""] if caption else []) + _md_header(table, cols)
        lines += [_md_row([*index_cells(table, r, True), *(fmt_delta(delta(r, c.id)) for c in cols)]) for r in rows]
        if title == "Δ vs best baseline" and names:
            lines.append(_md_row(["*best baseline*", *([""] * len(table.varied)), *names]))
    if table.pairs:
        lines += ["", f"## Paired bootstrap ({pairs_caption(table)})", "",
                  "Difference b − a on the items both rows were scored on (an item's score is its mean over seeds).",
                  "", "| a | b | benchmark | Δ (b − a) | interval | items |", "|---|---|---|---:|---|---:|"]
        lines += [_md_row([p.a, p.b, p.column, fmt_delta(p.diff), f"[{fmt_delta(p.low)}, {fmt_delta(p.high)}]",
                           str(p.n)]) for p in table.pairs]
    if table.notes:
        lines += ["", "Notes:", *(f"- {n}" for n in table.notes)]
    if any(c.published for r in table.rows for c in r.cells.values()):
        lines += ["", "† published average (the row lacks the benchmarks to compute it)."]
    lines += analysis_markdown(table.analysis)
    return "\n".join(lines) + "\n"


def fmt_analysis_value(value: Any) -> str:
    """An analysis table cell: numbers as they are (shares are percentages already), missing as —."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def analysis_markdown(sections: list[AnalysisSection]) -> list[str]:
    """The Analysis section: one sub-section per analysis (and run), a table per analysis table, its notes."""
    if not sections:
        return []
    lines = ["", "## Analysis", ""]
    for sec in sections:
        lines += [f"### {sec.title}", ""]
        for t in sec.tables:
            lines += [f"**{t.title}**", "", _md_row(t.columns), "|" + "---|" * len(t.columns)]
            lines += [_md_row([fmt_analysis_value(v).replace("|", "\\|") for v in row]) for row in t.rows]
            lines.append("")
        lines += [f"- {n}" for n in sec.notes] + ([""] if sec.notes else [])
    return lines[:-1] if lines[-1] == "" else lines


def pairs_caption(table: ComparisonTable) -> str:
    b = table.bootstrap
    return f"{b.get('resamples')} resamples, seed {b.get('seed')}, {round(100 * b.get('confidence', 0.95))}% interval"


# ---------------------------------------------------------------------------------------------------- terminal


def to_rich(table: ComparisonTable) -> RichGroup:
    cols = table.columns
    main = Table(title=escape(table.title),
                 caption=f"{LEGEND} Bold: best in column; (Δ vs base). {escape(group_legend(table))}")
    for i, name in enumerate(index_headers(table)):
        main.add_column(escape(name), style="bold" if i == 0 else None)
    for c in cols:
        main.add_column(escape(c.label), justify="right", style="cyan" if c.is_average else None)
    for row in table.rows:
        cells = []
        for c in cols:
            text = fmt_value(row.cells.get(c.id))
            if table.is_best(row, c.id):
                text = f"[bold]{text}[/bold]"
            delta = table.delta_base(row, c.id)
            if delta is not None:
                color = "green" if round(delta, 1) > 0 else "red" if round(delta, 1) < 0 else "dim"
                text += f" [{color}]({fmt_delta(delta)})[/{color}]"
            cells.append(text)
        label = [escape(x) for x in index_cells(table, row)]
        if row.kind == "reference":
            label[0] = f"[italic dim]{label[0]}[/italic dim]"
        main.add_row(*label, *cells)
    parts: list[Any] = [main]
    for title, caption, rows, delta in table.delta_sections():
        if title == "Δ vs base":  # shown in the main table's cells
            continue
        extra = Table(title=escape(title), caption=escape(caption) or None)
        for name in index_headers(table):
            extra.add_column(escape(name))
        for c in cols:
            extra.add_column(escape(c.label), justify="right")
        for r in rows:
            extra.add_row(*map(escape, index_cells(table, r)), *(fmt_delta(delta(r, c.id)) for c in cols))
        parts.append(extra)
    if table.pairs:
        pairs = Table(title=f"Paired bootstrap, b − a ({pairs_caption(table)})")
        for name in ("a", "b", "benchmark", "Δ", "interval", "items"):
            pairs.add_column(name, justify="right" if name in ("Δ", "items") else "left",
                             overflow="fold" if name in ("a", "b") else "ellipsis")
        for p in table.pairs:
            pairs.add_row(escape(p.a), escape(p.b), escape(p.column), fmt_delta(p.diff),
                          escape(f"[{fmt_delta(p.low)}, {fmt_delta(p.high)}]"), str(p.n))
        parts.append(pairs)
    if table.notes:
        parts.append(escape("\n".join(f"note: {n}" for n in table.notes)))
    for sec in table.analysis:
        for t in sec.tables:
            extra = Table(title=escape(f"Analysis {sec.title}: {t.title}"))
            for col in t.columns:
                extra.add_column(escape(str(col)))
            for row in t.rows:
                extra.add_row(*(escape(fmt_analysis_value(v)) for v in row))
            parts.append(extra)
        if sec.notes:
            parts.append(escape("\n".join(f"note ({sec.name}): {n}" for n in sec.notes)))
    return RichGroup(*parts)


# ---------------------------------------------------------------------------------------------------- CSV / JSON


def to_csv(table: ComparisonTable) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["row", "variant", "kind", *table.varied, "column", "group", "is_average", "mean", "spread",
                     "seeds", "delta_vs_base", "delta_vs_best_baseline", "best_in_column"])
    for row in table.rows:
        for c in table.columns:
            cell = row.cells.get(c.id)
            if cell is None:
                continue
            db, dbest = table.delta_base(row, c.id), table.delta_best(row, c.id)
            writer.writerow([row.key, row.variant, row.kind,
                             *(setting_text(row.settings[k]) if k in row.settings else "" for k in table.varied),
                             c.id, c.group, int(c.is_average), f"{cell.mean:.4f}",
                             "" if cell.spread is None else f"{cell.spread:.4f}", cell.seeds,
                             "" if db is None else f"{db:.4f}", "" if dbest is None else f"{dbest:.4f}",
                             int(table.is_best(row, c.id))])
    return out.getvalue()


def table_dict(table: ComparisonTable) -> dict[str, Any]:
    return {
        "title": table.title, "varied": table.varied,
        "groups": [{"id": g.id, "label": g.label, "columns": [c.id for c in g.columns]} for g in table.groups],
        "columns": {c.id: {"label": c.label, "group": c.group, "is_average": c.is_average} for c in table.columns},
        "rows": [{"key": r.key, "variant": r.variant, "label": r.label, "kind": r.kind, "source": r.source,
                  "settings": r.settings, "dataset": r.meta.get("dataset"),
                  "cells": {c: {"mean": cell.mean, "spread": cell.spread, "seeds": cell.seeds, "values": cell.values,
                                "published": cell.published, "delta_vs_base": table.delta_base(r, c),
                                "delta_vs_best_baseline": table.delta_best(r, c), "best": table.is_best(r, c)}
                            for c, cell in r.cells.items()}} for r in table.rows],
        "paired_bootstrap": {**table.bootstrap, "pairs": [vars(p) for p in table.pairs]},
        "loss_curves": [{"label": c.label, "path": c.path, "points": c.points} for c in table.curves],
        "checkpoint_selection": [{"label": c.label, "path": c.path, "points": c.points} for c in table.selection],
        "notes": table.notes,
        "analysis": [{"name": a.name, "run": a.run, "tables": [vars(t) for t in a.tables], "numbers": a.numbers,
                      "notes": a.notes} for a in table.analysis],
    }


def to_json(table: ComparisonTable) -> str:
    return json.dumps(table_dict(table), indent=2)
