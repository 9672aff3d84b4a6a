"""The leaderboard: every finished run in a runs folder in one table, one row per (run, variant).

A run is finished when its folder has run.json and a non-empty results.jsonl. Columns: recipe, student, teacher,
variant, seeds, the benchmarks (grouped, with group averages as in the comparison table), the run's teacher cost
and the date of its last run. A model scored in several runs (the base model every member of a matrix shares) is
listed once, under the first run that has it.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.report.runs import read_results
from harness.report.table import Group, column_ids, headline_rows, make_groups, variant_rank

META = ("recipe", "student", "teacher", "variant", "seeds", "cost", "date")
TEXT_META = ("recipe", "student", "teacher", "variant")


@dataclass
class Entry:
    recipe: str
    run_dir: str
    student: str
    teacher: str
    variant: str
    seeds: list[Any]
    cost: float | None
    date: str
    cells: dict[str, float] = field(default_factory=dict)  # column id -> mean over seeds, x100
    shared_by: int = 1


@dataclass
class Leaderboard:
    runs_dir: Path
    groups: list[Group]
    entries: list[Entry]
    sort: str  # a column id or a META name
    runs: int

    @property
    def columns(self) -> list[Any]:
        return [c for g in self.groups for c in g.columns]


STORE_DIRS = ("stages", "assets", "cache", "evals")  # the shared stage store, never a run
MAX_NESTING = 4


def _is_finished(d: Path) -> bool:
    results = d / "results.jsonl"
    return (d / "run.json").is_file() and results.is_file() and results.stat().st_size > 0


def finished_runs(runs_dir: Path) -> list[Path]:
    """Every finished run folder: the runs folder's children, and run folders nested below a child that is not a
    run itself (older harnesses wrote a matrix member whose value held a '/' as nested folders)."""
    if not runs_dir.is_dir():
        return []
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            children = sorted(d for d in folder.iterdir() if d.is_dir() and not d.is_symlink())
        except OSError:
            return
        for d in children:
            if depth == 0 and d.name in STORE_DIRS:
                continue
            if (d / "run.json").is_file():
                if _is_finished(d):
                    found.append(d)
            elif depth < MAX_NESTING:
                walk(d, depth + 1)

    walk(runs_dir, 0)
    return sorted(found)


def _run_info(d: Path) -> dict[str, Any]:
    """run.json, or {} when it cannot be read: the run is still listed (by its folder name), never dropped."""
    try:
        info = json.loads((d / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _teacher(config: dict[str, Any]) -> str:
    t = config.get("teacher") or {}
    return f"{t.get('provider')}:{t.get('model')}" if t.get("provider") not in (None, t.get("model")) else \
        str(t.get("model") or "-")


def collect(runs_dir: Path) -> Leaderboard:
    dirs = finished_runs(runs_dir)
    entries: list[Entry] = []
    all_rows: list[dict[str, Any]] = []
    per_run = []
    for d in dirs:
        info = _run_info(d)
        rows = headline_rows(read_results(d))
        all_rows += rows
        per_run.append((d, info, rows))
    ids = column_ids(all_rows)
    seen: dict[tuple, Entry] = {}
    for d, info, rows in per_run:
        config = info.get("recipe_config") or {}
        by_variant: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_variant.setdefault(str(r.get("variant") or "base"), []).append(r)
        for variant in sorted(by_variant, key=variant_rank):
            vrows = by_variant[variant]
            identity = tuple(sorted({(str(r.get("seed")), str(r.get("model_hash") or r.get("model") or ""))
                                     for r in vrows}))
            key = (variant, identity)
            if all(m for _, m in identity) and key in seen:
                seen[key].shared_by += 1
                continue
            values: dict[str, list[float]] = {}
            for r in vrows:
                values.setdefault(ids[(r["benchmark"], r["metric"])], []).append(100.0 * float(r["value"]))
            entry = Entry(recipe=str(info.get("recipe") or d.relative_to(runs_dir)), run_dir=str(d),
                          student=str((config.get("student") or {}).get("model") or "-"), teacher=_teacher(config),
                          variant=variant, seeds=sorted({r.get("seed") for r in vrows if r.get("seed") is not None}),
                          cost=info.get("cost_usd"), date=str(info.get("updated") or ""),
                          cells={c: statistics.fmean(v) for c, v in values.items()})
            seen[key] = entry
            entries.append(entry)
    groups = make_groups(list(dict.fromkeys(ids.values())))
    for e in entries:
        for g in groups:
            avg = next((c for c in g.columns if c.is_average), None)
            bench = [c.id for c in g.benchmarks]
            if avg is not None and bench and all(b in e.cells for b in bench):
                e.cells[avg.id] = statistics.fmean(e.cells[b] for b in bench)
    return Leaderboard(runs_dir, groups, entries, "", len(dirs))


def sort_choices(board: Leaderboard) -> dict[str, str]:
    """Accepted --sort spellings (lower case) -> column id or META name."""
    out = {m: m for m in META}
    for c in board.columns:
        out[c.id.lower()] = c.id
        out[c.label.lower()] = c.id
        if c.is_average:
            out[c.id.split(":", 1)[1]] = c.id  # "math" for the Math average
    return out


def default_sort(board: Leaderboard) -> str:
    avg = next((c.id for c in board.columns if c.is_average), None)
    return avg or next((c.id for c in board.columns), "date")


def sort_board(board: Leaderboard, sort: str | None) -> Leaderboard:
    choices = sort_choices(board)
    if sort is None:
        key = default_sort(board)
    elif sort.lower() in choices:
        key = choices[sort.lower()]
    else:
        shown = [m for m in META] + [c.id for c in board.columns]
        raise HarnessError(f"--sort: unknown column '{sort}'; available: {', '.join(shown)}")
    board.sort = key
    if key in TEXT_META:
        board.entries.sort(key=lambda e: str(getattr(e, key)))
    elif key in ("cost", "date", "seeds"):
        present = [e for e in board.entries if getattr(e, key) not in (None, "", [])]
        missing = [e for e in board.entries if getattr(e, key) in (None, "", [])]
        present.sort(key=lambda e: len(e.seeds) if key == "seeds" else getattr(e, key), reverse=True)
        board.entries = present + missing
    else:
        present = sorted((e for e in board.entries if key in e.cells), key=lambda e: e.cells[key], reverse=True)
        board.entries = present + [e for e in board.entries if key not in e.cells]
    return board


def _sort_label(board: Leaderboard) -> str:
    col = next((c for c in board.columns if c.id == board.sort), None)
    if col is not None:
        return f"{col.label} (highest first)"
    return {"cost": "cost (highest first)", "date": "date (newest first)", "seeds": "seeds (most first)"}.get(
        board.sort, f"{board.sort} (A to Z)")


def _meta_cells(e: Entry) -> list[str]:
    seeds = ",".join(map(str, e.seeds)) or "-"
    recipe = e.recipe + (f" (+{e.shared_by - 1} runs)" if e.shared_by > 1 else "")
    return [recipe, e.student, e.teacher, e.variant, seeds]


def _tail_cells(e: Entry) -> list[str]:
    return ["-" if e.cost is None else f"{e.cost:.2f}", e.date.replace("T", " ")[:16] or "-"]


def _best(board: Leaderboard) -> dict[str, float]:
    out = {}
    for c in board.columns:
        vals = [round(e.cells[c.id], 1) for e in board.entries if c.id in e.cells]
        if len(vals) > 1:
            out[c.id] = max(vals)
    return out


def to_markdown(board: Leaderboard) -> str:
    cols = board.columns
    best = _best(board)
    lines = [f"# Leaderboard: {board.runs_dir}", "",
             f"{board.runs} finished runs. Scores x100, mean over seeds; **bold**: best in its column. "
             f"Sorted by {_sort_label(board)}. Cost: the run's teacher spend in USD.", "",
             "| # | recipe | student | teacher | variant | seeds | " + " | ".join(c.label for c in cols)
             + " | cost $ | date |",
             "|---:|---|---|---|---|---|" + "---:|" * len(cols) + "---:|---|"]
    for i, e in enumerate(board.entries, 1):
        cells = []
        for c in cols:
            v = e.cells.get(c.id)
            text = "-" if v is None else f"{v:.1f}"
            cells.append(f"**{text}**" if v is not None and best.get(c.id) == round(v, 1) else text)
        lines.append("| " + " | ".join([str(i), *_meta_cells(e), *cells, *_tail_cells(e)]) + " |")
    if not board.entries:
        lines.append(f"\nNo finished runs in {board.runs_dir} (a run is finished once `cgd run` has scored it).")
    return "\n".join(lines) + "\n"


def to_json(board: Leaderboard) -> str:
    return json.dumps({"runs_dir": str(board.runs_dir), "sort": board.sort,
                       "columns": [{"id": c.id, "label": c.label, "group": c.group, "is_average": c.is_average}
                                   for c in board.columns],
                       "entries": [vars(e) for e in board.entries]}, indent=2)


_SORT_JS = """
document.querySelectorAll('table.board thead tr:last-child th').forEach((th, col) => {
  th.addEventListener('click', () => {
    const body = th.closest('table').tBodies[0];
    const numeric = th.dataset.type === 'num';
    const desc = th.dataset.dir !== 'desc';
    th.parentElement.querySelectorAll('th').forEach(h => { if (h !== th) delete h.dataset.dir; });
    th.dataset.dir = desc ? 'desc' : 'asc';
    const key = tr => tr.children[col].dataset.v ?? tr.children[col].textContent;
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      let x = key(a), y = key(b);
      if (numeric) {
        x = x === '' ? NaN : parseFloat(x); y = y === '' ? NaN : parseFloat(y);
        if (isNaN(x)) return 1; if (isNaN(y)) return -1;
        return desc ? y - x : x - y;
      }
      return desc ? y.localeCompare(x) : x.localeCompare(y);
    });
    rows.forEach(r => body.appendChild(r));
  });
});
"""


def to_html(board: Leaderboard) -> str:
    cols = board.columns
    best = _best(board)
    head = ['<th data-type="num">#</th>'] + [f"<th>{m}</th>" for m in ("recipe", "student", "teacher", "variant")]
    head += ['<th data-type="num">seeds</th>']
    groups = "".join(f'<th colspan="{len(g.columns)}" class="group">{escape(g.label)}</th>' for g in board.groups)
    head += [f'<th data-type="num" class="{"avg" if c.is_average else ""}">{escape(c.label)}</th>' for c in cols]
    head += ['<th data-type="num">cost $</th>', '<th>date</th>']
    body = []
    for i, e in enumerate(board.entries, 1):
        meta = _meta_cells(e)
        tds = [f'<td class="num">{i}</td>'] + [f"<td>{escape(m)}</td>" for m in meta[:4]]
        tds.append(f'<td class="num" data-v="{len(e.seeds)}">{escape(meta[4])}</td>')
        for c in cols:
            v = e.cells.get(c.id)
            cls = "num" + (" avg" if c.is_average else "") + (
                " best" if v is not None and best.get(c.id) == round(v, 1) else "")
            tds.append(f'<td class="{cls}" data-v="{"" if v is None else f"{v:.6f}"}">'
                       f'{"-" if v is None else f"{v:.1f}"}</td>')
        cost, date = _tail_cells(e)
        tds.append(f'<td class="num" data-v="{"" if e.cost is None else e.cost}">{cost}</td>')
        tds.append(f"<td>{escape(date)}</td>")
        body.append(f'<tr title="{escape(e.run_dir)}">' + "".join(tds) + "</tr>")
    n_meta = 6
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Leaderboard: {escape(str(board.runs_dir))}</title>
<style>
 body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px 32px; color: #1a1a1a; }}
 h1 {{ font-size: 22px; }} p {{ color: #444; font-size: 13px; }}
 table {{ border-collapse: collapse; font-size: 13px; }}
 th, td {{ padding: 4px 9px; border-bottom: 1px solid #e3e3e3; }}
 th {{ background: #f6f7f9; cursor: pointer; user-select: none; }} th.group {{ cursor: default; }}
 th[data-dir=desc]::after {{ content: " ▼"; }} th[data-dir=asc]::after {{ content: " ▲"; }}
 td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
 td.avg, th.avg {{ background: #f3f7fc; }} td.best {{ font-weight: 700; background: #fff3c4; }}
</style></head><body>
<h1>Leaderboard: {escape(str(board.runs_dir))}</h1>
<p>{board.runs} finished runs. Scores x100, mean over seeds; highlighted: best in its column. Sorted by
{escape(_sort_label(board))}; click a column header to sort by it. Cost: the run's teacher spend in USD.</p>
<table class="board">
<thead><tr><th colspan="{n_meta}" class="group"></th>{groups}<th colspan="2" class="group"></th></tr>
<tr>{"".join(head)}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>
<script>{_SORT_JS}</script>
</body></html>
"""


RENDERERS = {"md": to_markdown, "html": to_html, "json": to_json}
