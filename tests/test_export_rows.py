"""Dataset rows per variant, and the critique-specificity conditions of the CGD input."""

from __future__ import annotations

from harness.prompts import load_style
from harness.stages.export import build_rows, derangement

RECORDS = [
    {"id": f"r{i}", "prompt": f"P{i}", "reference": f"R{i}", "draft": f"D{i}", "critique": f"C{i}",
     "verdict": "wrong", "refined": f"Y{i}", "refined_correct": i != 2, "teacher_answer": f"T{i}",
     "teacher_answer_correct": True, "status": "ok"}
    for i in range(6)
] + [{"id": "bad", "prompt": "Pb", "reference": "Rb", "status": "failed", "error": "500"}]
PARAMS = {"keep_unverified": "keep", "specificity": "specific", "seed": 0}
STYLE = load_style("paper")


def _user(row):
    return next(m for m in row["messages"] if m["role"] == "user")["content"]


def _trained(row):
    return [m["content"] for m in row["messages"] if m["training"]]


def test_derangement_has_no_fixed_points_and_is_seeded():
    for n in (2, 3, 10, 101):
        perm = derangement(n, seed=7)
        assert sorted(perm) == list(range(n))
        assert all(perm[i] != i for i in range(n))
    assert derangement(50, 1) == derangement(50, 1) != derangement(50, 2)


def test_each_variant_trains_only_its_target_and_skips_failed_records():
    sft = build_rows("sft", RECORDS, STYLE, PARAMS)
    assert len(sft) == 6  # the failed record is skipped
    distilled = build_rows("distilled_sft", RECORDS, STYLE, PARAMS)
    cft = build_rows("cft", RECORDS, STYLE, PARAMS)
    cgd = build_rows("cgd", RECORDS, STYLE, PARAMS)
    assert [_trained(r) for r in distilled] == [[f"T{i}"] for i in range(6)]
    assert [_trained(r) for r in cft] == [[f"C{i}"] for i in range(6)]
    assert [_trained(r) for r in cgd] == [[f"Y{i}"] for i in range(6)]
    assert _user(cgd[0]) == "Question: P0\n\nStudent's Initial Answer: D0\n\nCritique: C0"
    assert _user(distilled[0]) == "P0"
    assert all(row["messages"][-1]["role"] == "assistant" for row in cgd)


def test_specificity_conditions_change_only_the_critique_in_the_input():
    irrelevant = build_rows("cgd", RECORDS, STYLE, {**PARAMS, "specificity": "irrelevant"})
    for i, row in enumerate(irrelevant):
        assert f"Critique: C{i}" not in _user(row) and "Critique: C" in _user(row)
        assert _trained(row) == [f"Y{i}"]
    generic = build_rows("cgd", RECORDS, STYLE, {**PARAMS, "specificity": "generic"})
    boiler = load_style("generic").fixed_critiques
    assert all(any(b in _user(row) for b in boiler) for row in generic)
    none = build_rows("cgd", RECORDS, STYLE, {**PARAMS, "specificity": "none"})
    assert all("Critique" not in _user(row) for row in none)
    assert [_trained(r) for r in none] == [_trained(r) for r in irrelevant]


def test_drop_policy_removes_unverified_refinements():
    kept = build_rows("cgd", RECORDS, STYLE, {**PARAMS, "keep_unverified": "drop"})
    assert [r["id"] for r in kept] == ["r0", "r1", "r3", "r4", "r5"]
