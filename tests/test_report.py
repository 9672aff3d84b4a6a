"""The comparison table: the paper's layout (groups, averages, deltas, best cells), seeds, published references,
renderers, and `cgd report` on hand-made result rows."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser

from typer.testing import CliRunner

from harness.cli import app
from harness.report import build_table, to_csv, to_html, to_json, to_markdown
from harness.report.reference import available_references, load_reference

# The CGD README's LLaMA-3.1-8B-Instruct table (teacher LLaMA-3.3-70B-Instruct), as published, without CFT* (a model
# trained on TIGER-Lab's data, not a variant this harness trains; it is in the paper-llama reference).
COLUMNS = ["math500", "minerva_math", "gsm8k", "olympiadbench", "amc23", "theoremqa", "gpqa_diamond_cot", "mmlu_pro"]
PAPER_LLAMA = {
    "base": [50.6, 33.5, 85.3, 14.5, 22.5, 27.6, 30.8, 31.2],
    "sft": [41.2, 24.6, 80.7, 10.8, 20.0, 22.1, 33.3, 39.3],
    "distilled_sft": [53.4, 32.7, 85.3, 19.6, 27.5, 28.9, 31.8, 35.1],
    "cft": [51.8, 32.7, 84.8, 15.7, 22.5, 28.2, 34.3, 34.2],
    "cgd": [54.2, 33.6, 85.7, 23.7, 37.5, 34.0, 35.9, 40.3],
}

# The same layout as the paper: the five maths benchmarks then their average ("Avg. (G1)"), the three general ones
# then theirs ("Avg. (G2)"). Every number equals the README's except CFT's General average: the README prints 32.4,
# but its own columns (28.2, 34.3, 34.2) average 32.2, which the harness computes.
EXPECTED = """\
# llama-3.1-8b-llama-3.3-70b

Scores x100, mean over seeds (± standard deviation over seeds when there are several). **Bold**: best in its column.
Math avg: MATH500, Minerva, GSM8K, OlympB, AMC23. General avg: TheoremQA, GPQA (CoT), MMLU-Pro.

| variant | MATH500 | Minerva | GSM8K | OlympB | AMC23 | Math avg | TheoremQA | GPQA (CoT) | MMLU-Pro | General avg |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| base | 50.6 | 33.5 | 85.3 | 14.5 | 22.5 | 41.3 | 27.6 | 30.8 | 31.2 | 29.9 |
| sft | 41.2 | 24.6 | 80.7 | 10.8 | 20.0 | 35.5 | 22.1 | 33.3 | 39.3 | 31.6 |
| distilled_sft | 53.4 | 32.7 | 85.3 | 19.6 | 27.5 | 43.7 | 28.9 | 31.8 | 35.1 | 31.9 |
| cft | 51.8 | 32.7 | 84.8 | 15.7 | 22.5 | 41.5 | 28.2 | 34.3 | 34.2 | 32.2 |
| cgd | **54.2** | **33.6** | **85.7** | **23.7** | **37.5** | **46.9** | **34.0** | **35.9** | **40.3** | **36.7** |

## Δ vs base

| variant | MATH500 | Minerva | GSM8K | OlympB | AMC23 | Math avg | TheoremQA | GPQA (CoT) | MMLU-Pro | General avg |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| sft | -9.4 | -8.9 | -4.6 | -3.7 | -2.5 | -5.8 | -5.5 | +2.5 | +8.1 | +1.7 |
| distilled_sft | +2.8 | -0.8 | +0.0 | +5.1 | +5.0 | +2.4 | +1.3 | +1.0 | +3.9 | +2.1 |
| cft | +1.2 | -0.8 | -0.5 | +1.2 | +0.0 | +0.2 | +0.6 | +3.5 | +3.0 | +2.4 |
| cgd | +3.6 | +0.1 | +0.4 | +9.2 | +15.0 | +5.7 | +6.4 | +5.1 | +9.1 | +6.9 |

## Δ vs best baseline

Against the best of base, sft, distilled_sft, cft in each column.

| variant | MATH500 | Minerva | GSM8K | OlympB | AMC23 | Math avg | TheoremQA | GPQA (CoT) | MMLU-Pro | General avg |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| cgd | +0.8 | +0.1 | +0.4 | +4.1 | +10.0 | +3.2 | +5.1 | +1.6 | +1.0 | +4.5 |
{best_baseline_row}

## Δ vs cft

| variant | MATH500 | Minerva | GSM8K | OlympB | AMC23 | Math avg | TheoremQA | GPQA (CoT) | MMLU-Pro | General avg |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| cgd | +2.4 | +0.9 | +0.9 | +8.0 | +15.0 | +5.4 | +5.8 | +1.6 | +6.1 | +4.5 |
""".format(best_baseline_row="| *best baseline* | distilled_sft | base | base | distilled_sft | distilled_sft | "
                             "distilled_sft | distilled_sft | cft | sft | cft |")


def result_rows(table: dict[str, list[float]], columns: list[str] = COLUMNS, seed: int | None = 0,
                shuffle: bool = True) -> list[dict]:
    rows = [{"benchmark": b, "metric": "exact_match", "value": v / 100.0, "stderr": None, "n": 100,
             "suite": "math", "suite_hash": "h", "samples": None, "variant": variant,
             "seed": None if variant == "base" else seed, "model": f"/models/{variant}", "primary": True}
            for variant, values in table.items() for b, v in zip(columns, values, strict=True)]
    # Arrival order must not matter: rows come variant by variant and benchmark by benchmark in any order.
    return list(reversed(rows)) if shuffle else rows


def test_markdown_reproduces_the_paper_llama_table_layout():
    table = build_table(result_rows(PAPER_LLAMA), "llama-3.1-8b-llama-3.3-70b", bootstrap=0, curves=False,
                        versus=["cft"])
    assert to_markdown(table) == EXPECTED
    # The "CGD - CFT" deltas the README prints (its Delta row), except G2, which it computed from its 32.4.
    readme_delta = ["+2.4", "+0.9", "+0.9", "+8.0", "+15.0", "+5.4", "+5.8", "+1.6", "+6.1"]
    assert EXPECTED.splitlines()[-1].split(" | ")[1:10] == readme_delta


def test_seeds_are_averaged_with_their_spread_and_averages_are_per_seed():
    rows = result_rows({"base": [50.0, 30.0]}, ["math500", "amc23"])
    rows += result_rows({"cgd": [54.0, 40.0]}, ["math500", "amc23"], seed=0)
    rows += result_rows({"cgd": [56.0, 30.0]}, ["math500", "amc23"], seed=1)
    table = build_table(rows, "t", bootstrap=0, curves=False)
    cgd = table.row("cgd")
    assert cgd.cells["math500"].mean == 55.0 and round(cgd.cells["math500"].spread, 3) == 1.414
    assert cgd.cells["math500"].seeds == 2
    assert cgd.cells["avg:math"].values == [47.0, 43.0]  # (54+40)/2 and (56+30)/2, then mean and std over seeds
    md = to_markdown(table)
    assert "| cgd | **55.0 ±1.4** | **35.0 ±7.1** | **45.0 ±2.8** |" in md
    assert "| cgd | +5.0 | +5.0 | +5.0 |" in md


def test_only_headline_metrics_become_columns():
    rows = result_rows({"base": [50.0]}, ["math500"])
    rows.append({**rows[0], "metric": "other", "value": 0.9, "primary": False})
    rows.append({**rows[0], "benchmark": "bbh/leaderboard_bbh_navigate", "value": 0.3, "primary": False})
    table = build_table(rows, "t", bootstrap=0, curves=False)
    assert [c.id for c in table.columns] == ["math500"]


def test_paper_reference_marks_the_readme_bold_cells_and_flags_its_inconsistent_averages():
    table = build_table([], "paper-llama", references=["paper-llama"], bootstrap=0, curves=False)
    best = {c.id: [r.meta["method"] for r in table.rows if table.is_best(r, c.id)] for c in table.columns}
    assert best["math500"] == ["+CFT* (GPT-4o data)"] and best["gsm8k"] == ["+CFT* (GPT-4o data)"]
    assert best["theoremqa"] == ["+CFT* (GPT-4o data)"] and best["mmlu_pro"] == ["+CFT* (GPT-4o data)"]
    for col in ("minerva_math", "olympiadbench", "amc23", "avg:math", "gpqa_diamond_cot", "avg:general"):
        assert best[col] == ["+CGD"], col
    assert any("published General average is 32.4" in n for n in table.notes)


def test_reference_rows_sit_under_the_run_rows_and_do_not_take_the_best_mark():
    rows = result_rows({"base": [10.0] * 8, "cgd": [20.0] * 8})
    table = build_table(rows, "mine", references=["paper-llama"], bootstrap=0, curves=False)
    kinds = [r.kind for r in table.rows]
    assert kinds == ["run", "run"] + ["reference"] * 6
    assert all(table.is_best(table.row("cgd"), c.id) for c in table.columns)
    assert not any(table.is_best(r, c.id) for r in table.rows if r.kind == "reference" for c in table.columns)
    assert "| *paper-llama: +CGD* | 54.2 |" in to_markdown(table)


def test_every_reference_file_loads():
    names = available_references()
    assert {"paper-llama", "paper-s1", "paper-qwen", "paper-specificity", "paper-lr", "cft-qwen"} <= set(names)
    for name in names:
        rows = load_reference(name)
        assert rows and all(r.kind == "reference" for r in rows)
    lr = build_table([], "lr", references=["paper-lr"], bootstrap=0, curves=False)
    md = to_markdown(lr)
    assert "| *paper-lr: CGD, LR 1e-6* | 1e-06 | **44.8†** |" in md
    assert "| *paper-lr: CGD, LR 5e-6* | 5e-06 | +12.1 |" in md  # against CFT at the same learning rate
    assert "*best baseline*" not in md  # it differs between the rows


def test_csv_json_and_html_renderings():
    table = build_table(result_rows(PAPER_LLAMA), "llama", bootstrap=0, curves=False)
    records = list(csv.DictReader(io.StringIO(to_csv(table))))
    cgd_amc = next(r for r in records if r["row"] == "cgd" and r["column"] == "amc23")
    assert cgd_amc["mean"] == "37.5000" and cgd_amc["delta_vs_base"] == "15.0000" and cgd_amc["best_in_column"] == "1"
    assert cgd_amc["delta_vs_best_baseline"] == "10.0000"
    data = json.loads(to_json(table))
    assert data["groups"][0]["columns"][-1] == "avg:math"
    assert round(data["rows"][-1]["cells"]["avg:general"]["mean"], 2) == 36.73
    html = to_html(table)
    _check_html(html)
    assert '<th class="group" colspan="6">Math</th>' in html  # five benchmarks and their average
    assert '<th class="group" colspan="4">General</th>' in html
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in html and "Δ vs base" in html


def _check_html(html: str) -> None:
    """Well nested, self-contained: no external script, stylesheet, image or font."""

    class Checker(HTMLParser):
        VOID = {"meta", "br", "img", "input", "link", "hr", "rect", "line", "polyline", "circle", "path"}

        def __init__(self):
            super().__init__()
            self.stack = []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            assert not any(attrs.get(a, "").startswith(("http", "//")) for a in ("src", "href")), (tag, attrs)
            if tag not in self.VOID:
                self.stack.append(tag)

        def handle_startendtag(self, tag, attrs):
            pass

        def handle_endtag(self, tag):
            if tag in self.VOID:
                return
            assert self.stack and self.stack[-1] == tag, (self.stack[-3:], tag)
            self.stack.pop()

    checker = Checker()
    checker.feed(html)
    assert checker.stack == []
    assert "<link" not in html and "@import" not in html and "url(" not in html


def test_cli_report_formats_and_errors(tmp_path):
    run = tmp_path / "llama"
    run.mkdir()
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in result_rows(PAPER_LLAMA)))
    runner = CliRunner()
    out = runner.invoke(app, ["report", str(run), "--format", "md", "--versus", "cft"])
    assert out.exit_code == 0, out.output
    assert out.output == EXPECTED.replace("# llama-3.1-8b-llama-3.3-70b", "# llama")
    out = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "r.html")])
    assert out.exit_code == 0 and (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    out = runner.invoke(app, ["report", str(run), "--reference", "paper-llama", "--format", "csv"])
    assert out.exit_code == 0 and "paper-llama:cgd" in out.output
    out = runner.invoke(app, ["report", str(run)])  # the terminal table
    assert out.exit_code == 0 and "MATH500" in out.output and "Math avg" in out.output
    assert runner.invoke(app, ["report", str(run), "--format", "pdf"]).exit_code == 2
    assert runner.invoke(app, ["report", str(run), "--reference", "paper-nope"]).exit_code == 2
    assert runner.invoke(app, ["report", str(tmp_path / "nothing")]).exit_code == 2
    assert runner.invoke(app, ["report"]).exit_code == 2
    out = runner.invoke(app, ["report", "--reference", "paper-qwen", "--format", "md"])
    assert out.exit_code == 0
    assert "| *paper-qwen: CGD (Claude Sonnet 3.7)* | 79.4 | 44.1 | 41.2 | **67.5** |" in out.output


def test_a_second_gpqa_protocol_is_shown_apart_from_the_paper_average():
    """With the paper's generative GPQA in the table, lm-eval's log-likelihood GPQA is not averaged into General."""
    rows = [{"benchmark": b, "metric": "acc", "value": v, "variant": "base", "seed": None, "primary": True}
            for b, v in (("theoremqa", 0.3), ("gpqa_diamond_cot", 0.3), ("mmlu_pro", 0.3), ("gpqa_diamond", 0.9))]
    table = build_table(rows, "t", bootstrap=0, curves=False)
    general = next(g for g in table.groups if g.id == "general")
    assert [c.id for c in general.benchmarks] == ["theoremqa", "gpqa_diamond_cot", "mmlu_pro"]
    assert round(table.rows[0].cells["avg:general"].mean, 6) == 30.0
    assert any(c.id == "gpqa_diamond" for g in table.groups if g.id == "other" for c in g.columns)
