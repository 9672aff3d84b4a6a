"""Ablation reports on hand-made matrix runs: the pivot on the varied key, seeds, paired bootstrap intervals on
hand-made per-sample logs, loss curves from train.log, the matrix folder, and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.report import build_table, load_runs, to_html, to_markdown
from harness.report.bootstrap import item_scores, paired_bootstrap
from harness.report.runs import varied_settings, write_matrix_manifest

N_ITEMS = 80
CONDITIONS = {"specific": (0.60, 0.65), "irrelevant": (0.40, 0.45), "generic": (0.50, 0.50)}  # accuracy per seed
BASE_ACC = 0.30


def _scores(acc: float, shift: int) -> list[int]:
    """A fixed 0/1 pattern with the given accuracy (shifted so seeds differ on which items they get right)."""
    k = round(acc * N_ITEMS)
    return [1 if (i + shift) % N_ITEMS < k else 0 for i in range(N_ITEMS)]


def _samples(path: Path, scores: list[int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, s in enumerate(scores):
        lines.append({"doc_id": i, "filter": "none", "metrics": ["exact_match"], "exact_match": float(s),
                      "resps": [["..."]], "target": "1"})
        lines.append({"doc_id": i, "filter": "strict", "metrics": ["exact_match"], "exact_match": 0.0})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(path)


def _row(variant, seed, scores, samples, model):
    return {"benchmark": "tiny_arith", "metric": "exact_match", "value": sum(scores) / len(scores), "stderr": 0.05,
            "n": len(scores), "suite": "tiny", "suite_hash": "h", "samples": samples, "variant": variant,
            "seed": seed, "model": model, "model_hash": f"hash-{model}", "primary": True}


def _config(specificity: str) -> dict:
    return {"name": f"abl__specificity={specificity}", "seed": 0, "seeds": [0, 1],
            "student": {"model": "tiny"}, "teacher": {"provider": "oracle", "model": "oracle"},
            "critique": {"style": "paper", "specificity": specificity, "keep_unverified": "keep", "mix": None},
            "train": {"learning_rate": 0.001}}


@pytest.fixture
def matrix(tmp_path):
    """RUNS/abl__specificity=X for three conditions: base shared (same model), cgd trained twice per condition."""
    runs = tmp_path / "runs"
    evals = runs / "evals"
    base_scores = _scores(BASE_ACC, 0)
    base_samples = _samples(evals / "base" / "samples_tiny_arith_2025-01-01T00-00-00.000.jsonl", base_scores)
    dirs = []
    for c, (acc0, acc1) in CONDITIONS.items():
        name = f"abl__specificity={c}"
        run_dir = runs / name
        run_dir.mkdir(parents=True)
        rows = [_row("base", None, base_scores, base_samples, "/m/base")]
        stages = {}
        for seed, acc in ((0, acc0), (1, acc1)):
            scores = _scores(acc, seed * 3)
            samples = _samples(evals / f"{c}-{seed}" / "samples_tiny_arith_2025-01-01T00-00-00.000.jsonl", scores)
            rows.append(_row("cgd", seed, scores, samples, f"/m/{c}-{seed}"))
            train_dir = runs / "stages" / f"train-{c}-{seed}"
            train_dir.mkdir(parents=True)
            (train_dir / "train.log").write_text("".join(
                f"{i}/10 [00:01<00:01]\r{{'loss': {2.0 - 0.1 * i - (0.2 if c == 'specific' else 0):.3f}, "
                f"'grad_norm': 1.5, 'learning_rate': 0.001, 'epoch': {i / 10:.2f}}}\n" for i in range(1, 11)))
            stages[f"train:cgd:{seed}"] = {"status": "done", "path": str(train_dir), "records": 0, "cost_usd": 0.0}
        (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (run_dir / "run.json").write_text(json.dumps({
            "recipe": name, "run_dir": str(run_dir), "stages": stages, "results": str(run_dir / "results.jsonl"),
            "cost_usd": 0.0, "recipe_config": _config(c), "updated": "2026-01-01T10:00:00"}))
        dirs.append(run_dir)
    return runs, dirs


def test_varied_settings_are_the_keys_that_differ():
    a, b = _config("specific"), _config("generic")
    assert varied_settings([a, b], ["x", "y"]) == [{"critique.specificity": "specific"},
                                                   {"critique.specificity": "generic"}]
    # Without run.json, matrix member names say what varied.
    assert varied_settings([None, None], ["t__specificity=a", "t__specificity=b"]) == [
        {"specificity": "a"}, {"specificity": "b"}]


def test_pivot_on_the_varied_key_with_seeds_and_a_shared_base(matrix):
    _, dirs = matrix
    runs, title = load_runs(dirs)
    table = build_table(runs, title, bootstrap=500)
    assert title == "abl" and table.varied == ["critique.specificity"] and table.is_ablation
    assert [r.key for r in table.rows] == ["base", "cgd[specificity=specific]", "cgd[specificity=irrelevant]",
                                           "cgd[specificity=generic]"]
    specific = table.row("cgd[specificity=specific]")
    assert specific.cells["tiny_arith"].seeds == 2 and specific.cells["tiny_arith"].mean == pytest.approx(62.5)
    md = to_markdown(table)
    assert "| variant | specificity | tiny_arith |" in md
    assert "| base | — | 30.0 |" in md
    assert "| cgd | specific | **62.5 ±3.5** |" in md
    assert "| cgd | irrelevant | +12.5 |" in md  # Δ vs the shared base


def test_paired_bootstrap_pairs_items_by_doc_id_and_is_seeded(matrix):
    _, dirs = matrix
    runs, title = load_runs(dirs)
    table = build_table(runs, title, bootstrap=1000, bootstrap_seed=7)
    pairs = {(p.a, p.b): p for p in table.pairs}
    assert set(pairs) == {("cgd[specificity=specific]", "cgd[specificity=irrelevant]"),
                          ("cgd[specificity=specific]", "cgd[specificity=generic]")}
    p = pairs[("cgd[specificity=specific]", "cgd[specificity=irrelevant]")]
    assert p.n == N_ITEMS and p.diff == pytest.approx(-20.0)  # per-item means over two seeds, then b - a
    assert p.low < p.diff < p.high < 0
    again = build_table(runs, title, bootstrap=1000, bootstrap_seed=7).pairs
    assert [(q.low, q.high) for q in again] == [(q.low, q.high) for q in table.pairs]
    other = build_table(runs, title, bootstrap=1000, bootstrap_seed=8).pairs
    assert [(q.low, q.high) for q in other] != [(q.low, q.high) for q in table.pairs]
    explicit = build_table(runs, title, bootstrap=200, pairs=[("base", "cgd[specificity=generic]")]).pairs
    assert [(q.a, q.b, round(q.diff, 6)) for q in explicit] == [("base", "cgd[specificity=generic]", 20.0)]
    assert "## Paired bootstrap (1000 resamples, seed 7, 95% interval)" in to_markdown(table)


def test_paired_bootstrap_on_known_items():
    a = {i: float(i < 50) for i in range(100)}
    b = {i: float(i < 60) for i in range(100)}
    b[200] = 1.0  # an item only one row has is not paired
    diff, low, high, n = paired_bootstrap(a, b, resamples=2000, seed=0)
    assert n == 100 and diff == pytest.approx(10.0)
    assert 3.0 < low < 10.0 < high < 17.0  # sd of the paired differences 0.3 -> se 3 points
    assert paired_bootstrap(a, {"x": 1.0}) is None


def test_item_scores_read_the_metric_filter_and_globs(tmp_path):
    path = _samples(tmp_path / "samples_t_2025-01-01T00-00-00.000.jsonl", [1, 0, 1])
    assert item_scores(path, "exact_match") == {0: 1.0, 1: 0.0, 2: 1.0}
    assert item_scores(path, "exact_match,strict") == {0: 0.0, 1: 0.0, 2: 0.0}
    _samples(tmp_path / "samples_u_2025-01-01T00-00-00.000.jsonl", [0])
    both = item_scores(str(tmp_path / "samples_*_2025-01-01T00-00-00.000.jsonl"), "exact_match")
    assert both == {("t", 0): 1.0, ("t", 1): 0.0, ("t", 2): 1.0, ("u", 0): 0.0}
    evalplus = tmp_path / "samples_eval_results.json"
    evalplus.write_text(json.dumps({"eval": {"HumanEval/0": [{"base_status": "pass", "plus_status": "fail"}]}}))
    assert item_scores(str(evalplus), "pass@1", "humaneval") == {"HumanEval/0": 1.0}
    assert item_scores(str(evalplus), "pass@1", "humaneval_plus") == {"HumanEval/0": 0.0}


def test_loss_curves_come_from_each_train_log(matrix):
    _, dirs = matrix
    runs, title = load_runs(dirs)
    table = build_table(runs, title, bootstrap=0)
    assert len(table.curves) == 6
    curve = next(c for c in table.curves if c.label == "cgd specificity=specific (seed 0)")
    assert curve.points[0] == (0.1, pytest.approx(1.7)) and len(curve.points) == 10


def test_matrix_folder_report_and_html(matrix, tmp_path):
    runs_root, dirs = matrix
    settings = [{"critique.specificity": c} for c in CONDITIONS]
    write_matrix_manifest(runs_root / "abl", "abl", [(d.name, d) for d in dirs], settings)
    runs, title = load_runs([runs_root / "abl"])
    assert [r.name for r in runs] == [d.name for d in dirs] and title == "abl"
    html = to_html(build_table(runs, title, bootstrap=200, references=["paper-specificity"]))
    for chart in ('id="delta-chart"', 'id="heatmap"', 'id="loss-chart"'):
        assert chart in html
    assert html.count("<svg") == 3 and "Pivot on: critique.specificity." in html
    out = CliRunner().invoke(app, ["report", str(runs_root / "abl"), "--format", "md", "--bootstrap", "100",
                                   "--pair", "base,cgd[specificity=generic]"])
    assert out.exit_code == 0, out.output
    assert "| base | cgd[specificity=generic] | tiny_arith | +20.0 |" in out.output


def test_cgd_run_writes_member_reports_and_the_matrix_pivot(matrix):
    """What `cgd run` does after a matrix's members finish (write_run_reports), on hand-made member folders."""
    from rich.console import Console

    from harness.paths import RECIPES_DIR
    from harness.recipe import load_recipes
    from harness.report.write import write_run_reports

    runs_root, dirs = matrix
    recipes = [r for r in load_recipes(RECIPES_DIR / "tiny-ablation.yaml")
               if r.critique.specificity in CONDITIONS]
    by_cond = {d.name.split("=")[-1]: d for d in dirs}
    summaries = []
    for r in recipes:
        member = runs_root / r.name
        if not member.exists():
            by_cond[r.critique.specificity].rename(member)
        summaries.append({"recipe": r.name, "run_dir": str(member), "results": str(member / "results.jsonl")})
    console = Console(record=True, width=160)
    matrix_info = write_run_reports(summaries, recipes, runs_root, console)
    folder = runs_root / "tiny-ablation"
    assert matrix_info["report_html"] == str(folder / "report.html") and (folder / "matrix.json").is_file()
    for s in summaries:
        assert Path(s["report"]).is_file() and Path(s["report_html"]).is_file()
    printed = console.export_text()
    assert "specificity" in printed and "matrix report:" in printed
    md = (folder / "report.md").read_text()
    assert md.startswith("# tiny-ablation\n") and "| variant | specificity | tiny_arith |" in md
    assert "| cgd | specific | **62.5 ±3.5** |" in md
