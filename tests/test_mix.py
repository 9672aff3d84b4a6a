"""critique.mix: right/wrong verdict shares of the CGD dataset, of equal size across a matrix, seeded."""

from __future__ import annotations

import pytest

from harness.errors import RecipeError
from harness.pipeline import build_graph
from harness.prompts import load_style
from harness.recipe import load_recipes
from harness.stages.export import build_rows, mix_counts, mix_records
from harness.store import RunStore

RECORDS = [
    {"id": f"r{i}", "prompt": f"P{i}", "reference": "1", "draft": f"D{i}", "critique": f"C{i}",
     "verdict": "right" if i % 3 == 0 else "wrong", "refined": f"Y{i}", "refined_correct": True, "status": "ok"}
    for i in range(30)
] + [{"id": "nv", "prompt": "P", "draft": "D", "critique": "C", "verdict": None, "refined": "Y", "status": "ok"}]
# 10 right (i % 3 == 0), 20 wrong, one without a verdict
MIXES = [1.0, 0.75, 0.5, 0.25, 0.0]

RECIPE = """\
name: mix
data: {path: data/tiny/train.jsonl, limit: 10}
student: {model: tiny}
teacher: {provider: oracle, model: oracle}
variants: [base, cgd]
"""


def test_every_mix_has_min_right_wrong_examples_with_its_shares():
    for right in MIXES:
        chosen = mix_records(RECORDS, {"right": right, "wrong": 1 - right}, seed=0)
        assert len(chosen) == 10  # min(|right| = 10, |wrong| = 20), whatever the shares
        n_right = sum(r["verdict"] == "right" for r in chosen)
        assert n_right == round(10 * right)
        assert all(r["verdict"] in ("right", "wrong") for r in chosen)  # no verdict: left out
        assert [r["id"] for r in chosen] == [r["id"] for r in RECORDS if r in chosen]  # original order kept
    assert mix_counts(10, 20, 0.25) == (2, 8) and mix_counts(7, 3, 0.5) == (2, 1)


def test_mix_is_seeded():
    mix = {"right": 0.5, "wrong": 0.5}
    first = [r["id"] for r in mix_records(RECORDS, mix, seed=0)]
    assert first == [r["id"] for r in mix_records(RECORDS, mix, seed=0)]
    assert first != [r["id"] for r in mix_records(RECORDS, mix, seed=1)]


def test_cgd_rows_follow_the_mix_and_other_variants_do_not():
    params = {"keep_unverified": "keep", "specificity": "specific", "seed": 0, "mix": {"right": 0.25, "wrong": 0.75}}
    style = load_style("paper")
    cgd = build_rows("cgd", RECORDS, style, params)
    assert len(cgd) == 10
    by_id = {r["id"]: r for r in RECORDS}
    assert sum(by_id[row["id"]]["verdict"] == "right" for row in cgd) == 2
    assert len(build_rows("cft", RECORDS, style, params)) == len(RECORDS)
    assert len(build_rows("cgd", RECORDS, style, {**params, "mix": None})) == len(RECORDS)


def test_recipe_mix_validation(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE + "critique: {mix: {right: 0.25, wrong: 0.75}}\n")
    [recipe] = load_recipes(path)
    assert recipe.critique.mix.shares == (0.25, 0.75)
    path.write_text(RECIPE + "critique: {mix: {right: 0.25}}\n")
    assert load_recipes(path)[0].critique.mix.shares == (0.25, 0.75)
    for bad, message in (("{right: 0.5, wrong: 0.6}", "right + wrong must be 1"),
                         ("{}", "give the share of right critiques"),
                         ("{right: 1.5}", "less than or equal to 1"),
                         ("{rigth: 0.5}", "unknown key 'rigth'")):
        path.write_text(RECIPE + f"critique:\n  mix: {bad}\n")
        with pytest.raises(RecipeError) as err:
            load_recipes(path)
        assert message in str(err.value), str(err.value)
        assert f"{path}:6:" in str(err.value) or f"{path}:7:" in str(err.value)
    path.write_text(RECIPE.replace("[base, cgd]", "[base, cft]") + "critique: {mix: {right: 0.5}}\n")
    with pytest.raises(RecipeError, match="variants has no cgd"):
        load_recipes(path)


def test_matrix_over_the_mix_shares_everything_but_the_cgd_export(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE + "matrix:\n  critique.mix.right: [1.0, 0.25]\n")
    members = load_recipes(path)
    assert [m.name for m in members] == ["mix__right=1.0", "mix__right=0.25"]
    store = RunStore(tmp_path / "runs")
    graphs = [build_graph(m, store, require_data=False) for m in members]
    fps = [{name: s.fingerprint for name, s in g.stages.items()} for g in graphs]
    assert fps[0]["critique"] == fps[1]["critique"] and fps[0]["refine"] == fps[1]["refine"]
    assert fps[0]["export:cgd"] != fps[1]["export:cgd"]
    assert graphs[1].stages["export:cgd"].params["mix"] == {"right": 0.25, "wrong": 0.75}
    # A recipe without a mix keeps the export fingerprint it had before critique.mix existed.
    plain = tmp_path / "p.yaml"
    plain.write_text(RECIPE)
    g = build_graph(load_recipes(plain)[0], store, require_data=False)
    assert "mix" not in g.stages["export:cgd"].params
