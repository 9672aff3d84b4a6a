"""What `cgd run` writes when it finishes: each run's named datasets and models with their cards (harness/cards),
its report.md and report.html, and for a matrix recipe the pivot of its members in RUNS_DIR/<base name>/
(matrix.json, report.md, report.html)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from harness.report.html import to_html
from harness.report.render import to_markdown, to_rich
from harness.report.runs import load_runs, varied_settings, write_matrix_manifest
from harness.report.table import ComparisonTable, build_table


def write_table(table: ComparisonTable, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    md, html = folder / "report.md", folder / "report.html"
    md.write_text(to_markdown(table))
    html.write_text(to_html(table))
    return md, html


def write_run_artifacts(summary: dict[str, Any], recipe: Any, runs_root: Path, console: Console) -> None:
    """The run's named dataset and model folders with their cards (harness/cards); their folders are added to the
    summary under `artifacts` (so `cgd run --json` shows them). A failure here is shown, never fatal: the stage
    outputs are complete without it."""
    from harness.cards.artifacts import write_artifacts

    try:
        found = write_artifacts(summary, recipe, runs_root)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        console.print(f"[yellow]artifacts not written[/yellow]: {escape(str(exc))}")
        return
    summary["artifacts"] = found
    if found["datasets"] or found["models"]:
        console.print(f"datasets and models with their cards: {escape(str(Path(summary['run_dir'])))}"
                      "/{datasets,models}/")


def write_run_reports(summaries: list[dict[str, Any]], recipes: list[Any], runs_root: Path,
                      console: Console) -> dict[str, Any] | None:
    """Write every run's report (printing the table of a single run), then a matrix's pivot (printed). Returns the
    matrix report's paths, or None."""
    from harness.recipe import recipe_to_dict

    single = len(summaries) == 1
    by_name = {r.name: r for r in recipes}
    for summary in summaries:
        write_run_artifacts(summary, by_name.get(summary["recipe"]), runs_root, console)
    for summary in summaries:
        if not summary["results"]:
            continue
        run_dir = Path(summary["run_dir"])
        runs, _ = load_runs([run_dir])
        table = build_table(runs, summary["recipe"])
        if single:
            console.print(to_rich(table))
        md, html = write_table(table, run_dir)
        summary["report"], summary["report_html"] = str(md), str(html)
        console.print(f"report: {escape(str(md))}  (HTML: {escape(str(html))})")
    if single or not any(s["results"] for s in summaries):
        return None
    base = recipes[0].name.split("__")[0]
    folder = runs_root / base
    settings = varied_settings([recipe_to_dict(r) for r in recipes], [r.name for r in recipes])
    write_matrix_manifest(folder, base, [(r.name, Path(s["run_dir"])) for r, s in zip(recipes, summaries, strict=True)],
                          settings)
    runs, title = load_runs([folder])
    table = build_table([r for r in runs if r.rows], title)
    console.print(to_rich(table))
    md, html = write_table(table, folder)
    console.print(f"matrix report: {escape(str(md))}  (HTML: {escape(str(html))})")
    return {"dir": str(folder), "report": str(md), "report_html": str(html), "members": len(recipes)}
