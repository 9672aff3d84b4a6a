"""eval.grader: the paper's `math_equal` beside math-verify, the shipped disagreement table, and the plumbing that
takes the choice from the recipe to the suite hash, the lm-eval tasks, the result rows and the report."""

from __future__ import annotations

import json
import time
from functools import partial

import pytest

from harness import grading, grading_paper
from harness.evaluation.lmeval import normalize_lm_eval, suite_graders, task_specs
from harness.evaluation.suites import load_suite
from harness.graders import GRADERS, get_grader, grade_answer, using
from harness.paths import PROJECT_ROOT
from harness.registry import UnknownName

pytest_plugins = ["tests.helpers.eval_env"]  # fixtures: eval_env, tiny

TABLE = PROJECT_ROOT / "data" / "grader_disagreements.jsonl"
ROWS = [json.loads(line) for line in TABLE.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['prediction']} vs {r['reference']}" for r in ROWS])
def test_each_grader_gives_the_tabled_verdict(row):
    response = f"So the result is \\boxed{{{row['prediction']}}}."
    assert grade_answer(response, row["reference"], "math_verify") is row["math_verify"], row["why"]
    assert grade_answer(response, row["reference"], "paper") is row["paper"], row["why"]


def test_table_holds_the_six_lenient_cases_of_issue_12():
    six = [r for r in ROWS if r["issue12_point7"]]
    assert len(six) == 6
    assert all(r["paper"] for r in six)
    assert sum(not r["math_verify"] for r in six) == 5
    assert all(r["why"] and set(r) == {"prediction", "reference", "math_verify", "paper", "why", "issue12_point7"}
               for r in ROWS)
    assert all(r["math_verify"] != r["paper"] for r in ROWS if not r["issue12_point7"])  # the rest: disagreements


@pytest.mark.parametrize(("prediction", "reference", "equal"), [
    # the examples in the official grader.py's _test_math_equal
    ("0.0833333333333333", "\\frac{1}{12}", True),
    ("(1,4.5)", "(1,\\frac{9}{2})", True),
    ("\\frac{x}{7}+\\frac{2}{7}", "\\frac{x+2}{7}", True),
    ("\\sec^2(y)", "\\tan^2(y)+1", True),
    ("-34x-45y+20z-100=0", "34x+45y-20z+100=0", True),
    ("5.89e-7", "5.89\\times10^{-7}", True),
    ("\\frac{1+\\sqrt{5}}{2}", "2", False),
    ("(+5)(b+2)", "(a+5)(b+2)", False),
    # its branches
    ("C", "C", True), ("The answer is (C)", "C", True), ("x=5", "5", True), ("99", "100", False),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4.00001\\end{pmatrix}", True),
])
def test_math_equal_reproduces_the_official_branches(prediction, reference, equal):
    assert grading_paper.math_equal(prediction, reference) is equal


def test_strip_string_cleans_as_the_official_pipeline():
    strip = grading_paper.strip_string
    assert strip("\\dfrac12") == "\\frac{1}{2}"
    assert strip("3/4") == "\\frac{3}{4}"
    assert strip("x = 5") == "5"
    assert strip("50\\%") == "50"
    assert strip("2.000") == "2"
    assert strip("12 \\text{ cm}") == "12"


def test_model_text_is_never_run_as_python(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for text in ("open(chr(120),chr(119))", "__import__('os').system('touch y')", "x.__class__"):
        assert not grading_paper._safe_for_eval(text)
        assert grading_paper.math_equal(text, "1") is False
    assert list(tmp_path.iterdir()) == []
    assert grading_paper._safe_for_eval("sqrt(2)*x**2 + pi")


def test_a_slow_comparison_times_out_as_not_equal(monkeypatch):
    monkeypatch.setattr(grading_paper, "TIMEOUT_S", 1)
    monkeypatch.setattr(grading_paper, "math_equal", lambda p, r: time.sleep(5) or True)
    start = time.monotonic()
    assert grading_paper.equivalent("1", "1") is False
    assert time.monotonic() - start < 3


def test_registry_names_and_errors():
    assert sorted(GRADERS) == ["math_verify", "paper"]
    from typing import get_args

    from harness.recipe.schema import EvalSpec

    assert sorted(get_args(EvalSpec.model_fields["grader"].annotation)) == sorted(GRADERS)
    assert EvalSpec().grader == "math_verify"
    with pytest.raises(UnknownName, match=r"unknown grader 'exact'; available: math_verify, paper"):
        get_grader("exact")
    with pytest.raises(UnknownName, match="unknown grader"):
        load_suite("code", grader="exact")


def test_using_swaps_the_equivalence_and_restores_it():
    original = grading.equivalent
    assert not grading.grade_answer("\\boxed{25}", "0.25")
    with pytest.raises(RuntimeError), using("paper"):
        assert grading.grade_answer("\\boxed{25}", "0.25")
        assert grading.grade("The answer is 25.", "#### 0.25")
        raise RuntimeError
    assert grading.equivalent is original


def test_the_default_grader_leaves_every_suite_hash_alone():
    for name in ("math", "math_passk", "tiny", "code"):
        assert load_suite(name, grader="math_verify")["hash"] == load_suite(name)["hash"]
        assert "grader" not in (load_suite(name).get("lm_eval") or {})
    paper = load_suite("math", grader="paper")
    assert paper["hash"] != load_suite("math")["hash"]
    assert paper["lm_eval"]["grader"] == "paper"
    assert set(paper["pins"]["grader_code"]) == {"grading.py", "grading_paper.py", "graders.py"}
    assert load_suite("code", grader="paper")["hash"] == load_suite("code")["hash"]  # grades no answers


def test_the_recipe_key_reaches_only_the_evaluate_fingerprints(tmp_path):
    from harness.paths import RECIPES_DIR
    from harness.pipeline import build_graph
    from harness.recipe import load_recipes
    from harness.store import RunStore

    recipe = load_recipes(RECIPES_DIR / "tiny.yaml")[0]
    paper = recipe.model_copy(update={"eval": recipe.eval.model_copy(update={"grader": "paper"})})
    fps = {r: {n: s.fingerprint for n, s in build_graph(x, RunStore(tmp_path), require_data=False).stages.items()}
           for r, x in (("default", recipe), ("paper", paper))}
    changed = {n for n in fps["default"] if fps["default"][n] != fps["paper"][n]}
    assert changed and all(n.startswith("evaluate:") for n in changed)
    assert changed == {n for n in fps["default"] if n.startswith("evaluate:")}


def test_lm_eval_tasks_grade_with_the_suite_grader():
    from lm_eval.tasks import TaskManager

    paper = load_suite("tiny", grader="paper")["lm_eval"]
    default = load_suite("tiny")["lm_eval"]
    tm = TaskManager(include_path=paper["include_path"])
    assert task_specs(default, tm) == ["tiny_arith"]
    (spec,) = task_specs(paper, tm)
    process = spec["process_results"]
    assert isinstance(process, partial) and process.keywords["grader"] == "paper"
    doc, results = {"final": "Step 2: 9 - 5.9 = 3.1. The answer is \\boxed{3.1}."}, ["So \\boxed{3.14}"]
    assert process(doc, results) == {"exact_match": 1.0}
    assert tm._get_config("tiny_arith")["process_results"](doc, results) == {"exact_match": 0.0}
    assert suite_graders(paper, tm) == {"tiny_arith": "paper"}
    assert suite_graders(default, tm) == {"tiny_arith": "math_verify"}


def test_pass_at_k_tasks_grade_each_sample_with_the_suite_grader():
    from lm_eval.tasks import TaskManager

    lm = load_suite("math_passk", grader="paper")["lm_eval"]
    tm = TaskManager(include_path=lm["include_path"])
    spec = task_specs(lm, tm)[0]
    process = spec["process_results"]
    assert process.keywords["grader"] == "paper" and process.keywords["base"].keywords["ks"] == (1, 8, 16)
    scores = process({"Answer": 250}, ["\\boxed{25000}"] * 15 + ["\\boxed{7}"])  # x100: a percent form
    assert scores["pass@1"] == pytest.approx(15 / 16)


def test_result_rows_and_the_report_name_the_grader(tmp_path):
    suite = load_suite("tiny", grader="paper")
    res = {"results": {"tiny_arith": {"exact_match,none": 0.5, "exact_match_stderr,none": 0.1}},
           "n-samples": {"tiny_arith": {"effective": 4}}}
    (row,) = normalize_lm_eval(res, suite, tmp_path / "results_x.json", graders={"tiny_arith": "paper"})
    assert row["grader"] == "paper" and row["primary"]
    (plain,) = normalize_lm_eval(res, suite, tmp_path / "results_x.json")
    assert "grader" not in plain

    from harness.report.table import build_table

    rows = [{**row, "variant": v, "seed": 0, "value": value} for v, value in (("base", 0.5), ("cgd", 0.75))]
    rows += [{"benchmark": "gsm8k", "metric": "exact_match", "value": 0.4, "variant": v, "seed": 0,
              "grader": "math_verify", "primary": True} for v in ("base", "cgd")]
    notes = build_table(rows, "t", bootstrap=0, curves=False).notes
    assert any(n.startswith("graded by: ") and "paper (tiny_arith)" in n and "math_verify (GSM8K" in n
               for n in notes), notes
    assert not any("graded by" in n for n in build_table([{k: v for k, v in r.items() if k != "grader"}
                                                          for r in rows], "t", bootstrap=0, curves=False).notes)


def test_lm_eval_scores_with_the_paper_grader(eval_env, tiny, tmp_path, monkeypatch):
    """Through the real lm-eval: the wrapped process_results runs, and the rows name their grader."""
    from rich.console import Console

    from harness import graders
    from harness.evaluation import run_suite

    calls = []
    monkeypatch.setitem(graders.GRADERS, "paper", lambda p, g: calls.append((p, g)) or True)
    suite = load_suite("tiny", max_gen_toks=8, grader="paper")
    rows = run_suite(suite, model_path=str(tiny), out_dir=tmp_path, limit=2, batch_size=8, console=Console())
    assert [(r["benchmark"], r["value"], r["grader"], r["suite_hash"]) for r in rows] == [
        ("tiny_arith", 1.0, "paper", suite["hash"])]
    assert len(calls) == 2
