"""The analysis layer: the registry, the recipe's `analysis:` list, the record-only analyses (format, leakage,
verdicts) against hand-computed values on planted rows, and the analysis stage cached through the pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from harness.analysis import format as fmt
from harness.analysis import get_analysis, leakage, stage_params, verdicts
from harness.errors import HarnessError
from harness.paths import PROJECT_ROOT
from harness.registry import UnknownName
from harness.stages.base import StageInput
from tests.helpers.tiny_model import build_random_tiny_model

TRAIN_DATA = PROJECT_ROOT / "data" / "tiny" / "train.jsonl"
CGD = [sys.executable, "-m", "harness.cli"]


def _numbers(result: dict) -> dict:
    return result["numbers"]


# ------------------------------------------------------------------------------------------------ registry, recipe


def test_registry_names_what_it_holds():
    assert get_analysis("format") is fmt
    with pytest.raises(UnknownName) as exc:
        get_analysis("nope")
    assert str(exc.value).startswith("unknown analysis 'nope'; available: format, leakage")
    assert "verdicts" in str(exc.value)


def test_recipe_analysis_entries_validate_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {PROJECT_ROOT / 'recipes' / 'tiny.yaml'}\nname: an\nanalysis:\n  - format\n"
                   "  - nope\n  - {name: verdicts, grader: bogus}\n")
    proc = subprocess.run([*CGD, "validate", str(bad)], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert f"{bad}:5:5: analysis.1: unknown analysis 'nope'; available: format, leakage" in out
    assert f"{bad}:6:5: analysis.2: verdicts.grader: unknown grader 'bogus'" in out
    assert "Traceback" not in out


def test_no_analysis_adds_no_stage_and_settings_reach_the_fingerprint(tmp_path):
    from harness.pipeline import build_graph
    from harness.recipe import load_recipes
    from harness.store import RunStore

    path = tmp_path / "r.yaml"
    base = f"extends: {PROJECT_ROOT / 'recipes' / 'tiny.yaml'}\nname: an\nvariants: [base, cft]\n"
    path.write_text(base)
    plain = build_graph(load_recipes(path)[0], RunStore(tmp_path / "runs"), require_data=False)
    assert not [s for s in plain.stages.values() if s.kind == "analysis"]
    path.write_text(base + "analysis: [format, {name: verdicts, grader: paper}, leakage]\n")
    g = build_graph(load_recipes(path)[0], RunStore(tmp_path / "runs"), require_data=False)
    assert {k: v for k, v in g.stages.items() if k in plain.stages} .keys() == plain.stages.keys()
    assert all(g.stages[k].fingerprint == plain.stages[k].fingerprint for k in plain.stages)
    assert set(g.stages["analysis:format"].inputs) == {"evaluate:base", "evaluate:cft:0"}
    assert set(g.stages["analysis:verdicts"].inputs) == {"critique"}  # no refine stage: optional
    assert g.stages["analysis:verdicts"].params["settings"] == {"grader": "paper"}
    path.write_text(base + "analysis: [format, verdicts, leakage]\n")
    g2 = build_graph(load_recipes(path)[0], RunStore(tmp_path / "runs"), require_data=False)
    assert g2.stages["analysis:verdicts"].fingerprint != g.stages["analysis:verdicts"].fingerprint
    assert g2.stages["analysis:format"].fingerprint == g.stages["analysis:format"].fingerprint
    assert stage_params(verdicts, verdicts.Settings())["analysis"] == "verdicts"
    # a needed kind the variants do not produce is a located recipe error, not extra (paid) work
    path.write_text(f"extends: {PROJECT_ROOT / 'recipes' / 'tiny.yaml'}\nname: an\nvariants: [base, sft]\n"
                    "analysis:\n  - verdicts\n")
    with pytest.raises(HarnessError, match=r"r\.yaml:5:5: analysis\.0: 'verdicts' reads the output of critique"):
        build_graph(load_recipes(path)[0], RunStore(tmp_path / "runs"), require_data=False)


# ------------------------------------------------------------------------------------------------ format

WORKED = "20+9=29. 29-21=8. The answer is \\boxed{8}."  # 6 words
CRITIQUE_TEXT = "Step 1 is correct: 20+9=29.\nThe final answer 8 is right.\nConclusion: right"  # 13 words


def _sample(doc_id: int, text: str, *, filt: str = "none", filtered: str | None = None) -> dict:
    """One line of lm-eval's samples_<task>_<time>.jsonl (the fields the analysis reads, in their real shape)."""
    return {"doc_id": doc_id, "doc": {}, "target": "8", "arguments": {}, "resps": [[text]],
            "filtered_resps": [text if filtered is None else filtered], "filter": filt, "metrics": ["exact_match"],
            "exact_match": 0.0}


def _write(path: Path, lines: list[dict]) -> str:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(path)


def _eval_input(name: str, variant: str, seed, rows: list[tuple[str, str, bool]]) -> StageInput:
    """An evaluate stage's records: (benchmark, samples path, graded by harness.grading)."""
    records = []
    for bench, samples, harness_graded in rows:
        records.append({"benchmark": bench, "metric": "exact_match", "value": 0.0, "primary": True,
                        "samples": samples, "variant": variant, "seed": seed,
                        **({"grader": "math_verify"} if harness_graded else {})})
        records.append({**records[-1], "metric": "other", "primary": False})  # a second metric: same log
    return StageInput(name, records, {})


def test_format_counts_on_planted_generations_and_cft_drift(tmp_path):
    base_math = _write(tmp_path / "base_math.jsonl", [_sample(i, WORKED) for i in range(4)])
    # a CFT model that answers with critique text, three times out of four
    cft_math = _write(tmp_path / "cft_math.jsonl", [_sample(0, CRITIQUE_TEXT), _sample(1, CRITIQUE_TEXT),
                                                     _sample(2, "The student's answer is wrong."),
                                                     _sample(3, WORKED)])
    # a task with lm-eval's own regex filter (not harness-graded): "[invalid]" is no answer; one line per filter
    base_gsm = _write(tmp_path / "base_gsm.jsonl", [
        _sample(0, "so #### 5", filt="strict-match", filtered="5"),
        _sample(0, "so #### 5", filt="flexible-extract", filtered="5"),
        _sample(1, "it is five", filt="strict-match", filtered="[invalid]")])
    cft_gsm = _write(tmp_path / "cft_gsm.jsonl", [
        _sample(0, "Conclusion: wrong", filt="strict-match", filtered="[invalid]"),
        _sample(1, "Conclusion: wrong", filt="strict-match", filtered="[invalid]")])
    inputs = {"evaluate:base": _eval_input("evaluate:base", "base", None, [("math", base_math, True),
                                                                           ("gsm", base_gsm, False)]),
              "evaluate:cft:0": _eval_input("evaluate:cft:0", "cft", 0, [("math", cft_math, True),
                                                                          ("gsm", cft_gsm, False)])}
    out = fmt.run(None, inputs, fmt.Settings())
    n = _numbers(out)
    assert n["base.math.n"] == 4 and n["base.math.answer_form_share"] == 1.0
    assert n["base.math.critique_share"] == 0.0  # base: ~0
    assert n["base.math.mean_words"] == 6.0
    assert n["cft.math.answer_form_share"] == 0.25 and n["cft.math.critique_share"] == 0.75
    assert n["cft.math.mean_words"] == (13 + 13 + 5 + 6) / 4
    assert n["cft.math.drift.critique"] == 0.75 > 0  # format drift
    assert n["cft.math.drift.answer_form"] == -0.75
    assert "base.math.drift.critique" not in n
    assert n["base.gsm.n"] == 2 and n["base.gsm.answer_form_share"] == 0.5  # the filter decides; deduped by doc
    assert n["cft.gsm.answer_form_share"] == 0.0 and n["cft.gsm.drift.answer_form"] == -0.5
    assert n["cft.gsm.drift.critique"] == 1.0
    t = out["tables"][0]
    row = next(r for r in t["rows"] if r[:2] == ["cft", "math"])
    assert row == ["cft", "math", 4, 1, 25.0, 75.0, round(37 / 4, 1), -75.0, 75.0]
    json.dumps(out)
    # settings: a custom answer pattern and critique list
    custom = fmt.run(None, inputs, fmt.Settings(answer_pattern=r"answer is", critique_patterns=[r"student"]))
    assert _numbers(custom)["cft.math.answer_form_share"] == 0.5  # WORKED and "The student's answer is wrong."
    assert _numbers(custom)["cft.math.critique_share"] == 0.25


def test_critique_patterns_leave_worked_solutions_alone():
    pats = [__import__("re").compile(p, 2) for p in fmt.CRITIQUE_PATTERNS]
    for text in (WORKED, "First, 3*4=12. Step 2: add 5 to get 17. So the answer is \\boxed{17}.",
                 "The correct answer is \\boxed{2}."):
        assert not fmt.is_critique(text, pats), text
    for text in ("Conclusion: wrong", "Step 2 has an arithmetic error: 3*4 is 12", "The student's solution",
                 "Step 3 is missing", "The final answer 54 is wrong; it should be 57."):
        assert fmt.is_critique(text, pats), text


# ------------------------------------------------------------------------------------------------ leakage, verdicts

CRITIQUES = [
    # (id, reference, draft, critique, verdict)
    ("r1", "20+9=29. 29-21=8. The answer is \\boxed{8}.", "20+9=29. 29-21=7. \\boxed{7}",
     "Step 2 has an arithmetic error: 29-21 is 8, not 7.\nConclusion: wrong", "wrong"),
    ("r2", "\\boxed{8}", "\\boxed{9}", "Step 2 is wrong.\nConclusion: wrong", "wrong"),
    ("r3", "\\boxed{8}", "\\boxed{8}", "The final answer 8 is right.\nConclusion: right", "right"),
    ("r4", "\\boxed{\\frac{1}{2}}", "\\boxed{0.3}", "The answer $0.5$ is right.\nConclusion: right", "right"),
    ("r5", "\\boxed{18}", "\\boxed{18}", "Looks fine, 118 in total.", None),
    ("r6", "\\boxed{12}", "\\boxed{12}", "Step one is incorrect.\nConclusion: wrong", "wrong"),
]
REFINED = {  # id -> (refined, refined_correct)
    "r1": ("29-21=8. The answer is \\boxed{8}.", True),
    "r2": ("\\boxed{8}", True),
    "r4": ("\\boxed{\\frac{1}{2}}", True),
    "r3": ("\\boxed{3}", False),
}


def _teacher_inputs(with_refine: bool = True) -> dict[str, StageInput]:
    crit = [{"id": i, "prompt": "p", "reference": ref, "draft": d, "critique": c, "verdict": v, "status": "ok"}
            for i, ref, d, c, v in CRITIQUES]
    crit.append({"id": "failed", "status": "failed"})  # failed records are left out
    inputs = {"critique": StageInput("critique", crit, {})}
    if with_refine:
        by_id = {r["id"]: r for r in crit}
        ref = [{**by_id[i], "refined": t, "refined_correct": ok} for i, (t, ok) in REFINED.items()]
        inputs["refine"] = StageInput("refine", ref, {})
    return inputs


def test_leakage_counts_on_planted_critiques():
    out = leakage.run(None, _teacher_inputs(), leakage.Settings())
    n = _numbers(out)
    # wrong: r1 (states 8), r2 (does not), r6 (does not); drafts wrong: r1, r2
    assert (n["critique.wrong.n"], n["critique.wrong.reference_share"]) == (3, 1 / 3)
    assert n["critique.wrong.reference_share_draft_wrong"] == 1 / 2
    # right: r3 (8, the draft's own answer), r4 ($0.5$ = 1/2 by equivalence; the draft was wrong)
    assert (n["critique.right.n"], n["critique.right.reference_share"]) == (2, 1.0)
    assert n["critique.right.reference_share_draft_wrong"] == 1.0
    assert (n["critique.none.n"], n["critique.none.reference_share"]) == (1, 0.0)  # 118 does not state 18
    assert (n["critique.all.n"], n["critique.all.reference_share"]) == (6, 0.5)
    assert n["critique.all.reference_share_draft_wrong"] == 2 / 3
    rows = {r[0]: r for r in out["tables"][0]["rows"]}
    assert rows["all"] == ["all", 6, 3, 50.0, 3, 2, 66.7]
    # CGD rows: the refined answer already in the critique: r1 (8) and r4 (1/2 as $0.5$); not r2, not r3 (3)
    assert (n["refine.all.n"], n["refine.all.answer_in_critique_share"]) == (4, 0.5)
    assert n["refine.all.answer_in_critique_share_correct"] == 2 / 3
    assert n["refine.wrong.answer_in_critique_share"] == 0.5 and n["refine.right.answer_in_critique_share"] == 0.5
    without = leakage.run(None, _teacher_inputs(with_refine=False), leakage.Settings())
    assert len(without["tables"]) == 1 and any("no refine records" in x for x in without["notes"])


def test_states_answer_is_not_fooled_by_longer_numbers():
    assert leakage.states_answer("it is 57.", "57")
    assert not leakage.states_answer("it is 157 or 570", "57")
    assert leakage.states_answer("so $x = \\frac{3}{4}$", "0.75")
    assert leakage.states_answer("the answer is Evelyn", "Evelyn")
    assert not leakage.states_answer("", "5")


def test_verdict_confusion_matrix_on_planted_drafts():
    out = verdicts.run(None, _teacher_inputs(), verdicts.Settings())
    n = _numbers(out)
    # TP (wrong, incorrect): r1, r2; FP (wrong, correct): r6; FN (right, incorrect): r4; TN (right, correct): r3
    assert (n["confusion.wrong.incorrect"], n["confusion.wrong.correct"]) == (2, 1)
    assert (n["confusion.right.incorrect"], n["confusion.right.correct"]) == (1, 1)
    assert (n["confusion.none.correct"], n["confusion.none.incorrect"]) == (1, 0)
    assert n["accuracy"] == 3 / 5 and n["precision_wrong"] == 2 / 3 and n["recall_wrong"] == 2 / 3
    assert n["judged"] == 5 and n["no_verdict"] == 1
    assert out["tables"][0]["rows"] == [["right", 1, 1, 2], ["wrong", 1, 2, 3], ["none", 1, 0, 1]]
    assert out["tables"][1]["rows"] == [[5, 60.0, 66.7, 66.7]]
    # refinements graded correct, by verdict: wrong r1, r2 both; right r4 yes, r3 no
    assert n["refine.wrong.correct_share"] == 1.0 and n["refine.right.correct_share"] == 0.5
    assert n["refine.all.correct_share"] == 0.75


# ------------------------------------------------------------------------------------------------ through the pipeline


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return build_random_tiny_model(tmp_path_factory.mktemp("student") / "model")


def _recipe(folder: Path, student: Path, name: str, variants: str, analysis: str, limit: int = 6) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"""\
name: {name}
data: {{source: jsonl, path: {TRAIN_DATA}, prompt_field: question, answer_field: answer, limit: {limit}}}
student: {{model: {student}, backend: hf, batch_size: 6, generation: {{temperature: 0.0, max_tokens: 16}}}}
teacher: {{provider: oracle, model: oracle, generation: {{max_tokens: 512}}}}
variants: {variants}
eval: {{suites: [tiny], limit: 3}}
analysis: {analysis}
""")
    return path


def test_teacher_analyses_run_as_cached_stages(tmp_path, student, monkeypatch):
    from harness.pipeline import Pipeline
    from harness.recipe import load_recipes
    from harness.store import RunStore

    monkeypatch.setenv("CGD_CACHE_DIR", str(tmp_path / "memo"))
    recipe = _recipe(tmp_path, student, "an", "[base, cgd]", "[leakage, verdicts]")
    targets = {"analysis:leakage", "analysis:verdicts"}

    def run() -> dict:
        store = RunStore(tmp_path / "runs")
        try:
            return Pipeline(load_recipes(recipe), store, Console(quiet=True)).run(targets=targets)[0]
        finally:
            store.close()

    first = run()
    assert {first["stages"][t]["status"] for t in targets} == {"done"}
    assert first["stages"]["train:cgd:0"]["status"] == "skipped"  # nothing trained for these two
    # the random student's drafts are wrong; the oracle says so and names the answer ("it should be N")
    crit = [json.loads(x) for x in (Path(first["stages"]["critique"]["path"]) / "records.jsonl").read_text()
            .splitlines()]
    wrong = sum(r.get("verdict") == "wrong" for r in crit)
    v = first["analysis"]["verdicts"]["numbers"]
    assert v["judged"] == len(crit) == 6 and v["confusion.wrong.incorrect"] + v["confusion.wrong.correct"] == wrong
    assert first["analysis"]["leakage"]["numbers"]["refine.all.answer_in_critique_share"] == 1.0
    run_json = json.loads((Path(first["run_dir"]) / "run.json").read_text())
    assert run_json["analysis"]["verdicts"]["numbers"] == v
    again = run()
    assert {again["stages"][t]["status"] for t in targets} == {"cached"}
    assert again["analysis"] == first["analysis"]


def test_format_through_cgd_run_with_real_lm_eval_logs_and_reports(tmp_path, student):
    recipe = _recipe(tmp_path, student, "fmt", "[base]", "[format]", limit=4)
    env = {**os.environ, "CGD_CACHE_DIR": str(tmp_path / "memo")}

    def run() -> dict:
        proc = subprocess.run([*CGD, "run", str(recipe), "--json", "--runs-dir", str(tmp_path / "runs")],
                              capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return json.loads(proc.stdout[proc.stdout.index("\n{") + 1:] if not proc.stdout.startswith("{")
                          else proc.stdout)

    first = run()
    numbers = first["analysis"]["format"]["numbers"]
    assert numbers["base.tiny_arith.n"] == 3  # eval.limit 3: one generation per item from lm-eval's samples log
    assert 0.0 <= numbers["base.tiny_arith.critique_share"] <= 1.0
    report = (Path(first["run_dir"]) / "report.md").read_text()
    assert "## Analysis" in report and "### format" in report and "| base | tiny_arith | 3 |" in report
    assert 'id="analysis"' in (Path(first["run_dir"]) / "report.html").read_text()
    from harness.report import build_table, load_runs, to_json

    runs, title = load_runs([Path(first["run_dir"])])
    as_json = json.loads(to_json(build_table(runs, title)))
    assert as_json["analysis"][0]["name"] == "format" and as_json["analysis"][0]["numbers"] == numbers
    again = run()
    assert again["stages"]["analysis:format"]["status"] == "cached"
