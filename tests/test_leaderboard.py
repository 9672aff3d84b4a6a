"""`cgd leaderboard`: every finished run of a runs folder in one table, sortable, Markdown and HTML."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from harness.cli import app
from harness.report import leaderboard as lb


def _run(root, name, student, teacher, variants, cost, date, model_prefix=None):
    d = root / name
    d.mkdir(parents=True)
    rows = []
    for variant, seeds in variants.items():
        for seed, values in seeds.items():
            for bench, v in values.items():
                model = f"/m/{model_prefix or name}/{variant}/{seed}" if variant != "base" else f"/m/{student}"
                rows.append({"benchmark": bench, "metric": "exact_match", "value": v / 100, "variant": variant,
                             "seed": seed, "model": model, "model_hash": f"h{model}", "primary": True})
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "run.json").write_text(json.dumps({
        "recipe": name, "cost_usd": cost, "updated": date,
        "recipe_config": {"student": {"model": student}, "teacher": {"provider": "anthropic", "model": teacher}}}))
    return d


def _runs(tmp_path):
    root = tmp_path / "runs"
    _run(root, "qwen-a", "Qwen/Qwen2.5-Math-7B", "claude-3-7-sonnet",
         {"base": {None: {"math500": 55.4, "amc23": 40.0}},
          "cgd": {0: {"math500": 79.0, "amc23": 65.0}, 1: {"math500": 80.0, "amc23": 70.0}}},
         12.5, "2026-01-02T09:00:00")
    _run(root, "qwen-b", "Qwen/Qwen2.5-Math-7B", "claude-3-7-sonnet",
         {"base": {None: {"math500": 55.4, "amc23": 40.0}}, "cft": {0: {"math500": 79.2, "amc23": 62.5}}},
         3.0, "2026-01-03T09:00:00")
    _run(root, "tiny", "tiny", "oracle", {"cgd": {0: {"tiny_arith": 50.0}}}, 0.0, "2026-01-01T09:00:00")
    (root / "unfinished").mkdir()
    (root / "unfinished" / "run.json").write_text("{}")  # no results yet: not on the board
    (root / "stages").mkdir()
    return root


def test_collect_one_row_per_run_and_variant_with_shared_base_once(tmp_path):
    board = lb.collect(_runs(tmp_path))
    assert board.runs == 3
    keys = [(e.recipe, e.variant) for e in board.entries]
    assert keys == [("qwen-a", "base"), ("qwen-a", "cgd"), ("qwen-b", "cft"), ("tiny", "cgd")]
    base, cgd = board.entries[0], board.entries[1]
    assert base.shared_by == 2 and cgd.seeds == [0, 1]
    assert cgd.cells["math500"] == 79.5 and cgd.cells["avg:math"] == 73.5  # mean over seeds, then the average
    assert [c.id for c in board.columns] == ["math500", "amc23", "avg:math", "tiny_arith"]


def test_sorting_by_any_column(tmp_path):
    root = _runs(tmp_path)
    order = [(e.recipe, e.variant) for e in lb.sort_board(lb.collect(root), None).entries]
    assert order[:3] == [("qwen-a", "cgd"), ("qwen-b", "cft"), ("qwen-a", "base")]  # Math avg, highest first
    assert order[-1] == ("tiny", "cgd")  # no Math avg: last
    by_amc = lb.sort_board(lb.collect(root), "AMC23").entries
    assert [e.cells.get("amc23") for e in by_amc][:3] == [67.5, 62.5, 40.0]
    assert lb.sort_board(lb.collect(root), "date").entries[0].recipe == "qwen-b"
    assert lb.sort_board(lb.collect(root), "cost").entries[0].recipe == "qwen-a"
    assert lb.sort_board(lb.collect(root), "math").sort == "avg:math"


def test_cli_markdown_html_and_errors(tmp_path):
    root = _runs(tmp_path)
    runner = CliRunner()
    out = runner.invoke(app, ["leaderboard", "--runs-dir", str(root)])
    assert out.exit_code == 0, out.output
    lines = [line for line in out.output.splitlines() if line.startswith("| ")]
    assert lines[0] == ("| # | recipe | student | teacher | variant | seeds | MATH500 | AMC23 | Math avg | tiny_arith "
                        "| cost $ | date |")
    assert lines[1].startswith("| 1 | qwen-a | Qwen/Qwen2.5-Math-7B | anthropic:claude-3-7-sonnet | cgd | 0,1 | "
                               "**79.5** | **67.5** | **73.5** | - | 12.50 | 2026-01-02 09:00 |")
    assert "| qwen-a (+1 runs) |" in out.output
    html_path = tmp_path / "board.html"
    out = runner.invoke(app, ["leaderboard", "--runs-dir", str(root), "--sort", "tiny_arith", "--format", "html",
                              "-o", str(html_path)])
    assert out.exit_code == 0, out.output
    html = html_path.read_text()
    assert html.startswith("<!doctype html>") and "<script>" in html and "addEventListener('click'" in html
    assert "Sorted by\ntiny_arith (highest first)" in html
    bad = runner.invoke(app, ["leaderboard", "--runs-dir", str(root), "--sort", "nope"])
    assert bad.exit_code == 2
    assert runner.invoke(app, ["leaderboard", "--runs-dir", str(tmp_path / "none")]).exit_code == 2
    assert runner.invoke(app, ["leaderboard", "--runs-dir", str(root), "--format", "pdf"]).exit_code == 2


def test_empty_runs_dir(tmp_path):
    out = CliRunner().invoke(app, ["leaderboard", "--runs-dir", str(tmp_path)])
    assert out.exit_code == 0 and "No finished runs" in out.output
