"""Recipe loading: inheritance, overrides, matrix expansion, and errors located in the file that set the value."""

from __future__ import annotations

import pytest

from harness.errors import RecipeError
from harness.recipe import load_recipes, recipe_to_dict
from harness.recipe.schema import Recipe

BASE = """\
name: base
data: {path: data/tiny/train.jsonl, limit: 10}
student: {model: tiny}
teacher: {provider: oracle, model: oracle}
train: {learning_rate: 1.0e-3, global_batch_size: 16}
"""


def write(folder, name, text):
    path = folder / name
    path.write_text(text)
    return path


def test_extends_deep_merges_and_set_overrides(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nname: child\ntrain: {epochs: 2}\n")
    [recipe] = load_recipes(child, ["train.learning_rate=5e-6", "critique.specificity=generic"])
    assert recipe.name == "child"
    assert recipe.train.epochs == 2 and recipe.train.global_batch_size == 16  # merged, not replaced
    assert recipe.train.learning_rate == 5e-6
    assert recipe.critique.specificity == "generic"
    assert recipe.source_path == str(child.resolve())
    assert Recipe.model_validate(recipe_to_dict(recipe)).model_dump() == recipe.model_dump()


def test_error_in_an_extended_file_points_into_that_file(tmp_path):
    base = write(tmp_path, "base.yaml", BASE.replace("learning_rate: 1.0e-3", "learning_rate: -1"))
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nname: child\n")
    with pytest.raises(RecipeError) as err:
        load_recipes(child)
    [problem] = err.value.problems
    assert (problem.file, problem.line, problem.col) == (str(base.resolve()), 5, 24)
    assert "train.learning_rate" in problem.message


def test_bad_override_is_located_at_the_set_flag(tmp_path):
    recipe = write(tmp_path, "r.yaml", BASE)
    with pytest.raises(RecipeError) as err:
        load_recipes(recipe, ["train.lerning_rate=1"])
    [problem] = err.value.problems
    assert problem.file == "--set" and "unknown key 'lerning_rate'" in problem.message
    assert "did you mean 'learning_rate'" in problem.message
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        load_recipes(recipe, ["train.learning_rate"])


def test_matrix_is_a_cartesian_product_with_member_names(tmp_path):
    recipe = write(tmp_path, "m.yaml", BASE + "matrix:\n  critique.specificity: [specific, generic]\n"
                                             "  train.learning_rate: [1.0e-6, 5.0e-6]\n")
    members = load_recipes(recipe)
    assert len(members) == 4
    assert {(m.critique.specificity, m.train.learning_rate) for m in members} == {
        ("specific", 1e-6), ("specific", 5e-6), ("generic", 1e-6), ("generic", 5e-6)}
    assert all(m.name.startswith("base__specificity=") and m.matrix is None for m in members)
    assert len({m.name for m in members}) == 4


def test_bad_matrix_values_are_reported_once_with_their_line(tmp_path):
    recipe = write(tmp_path, "m.yaml", BASE + "matrix:\n  critique.specificity: [specific, vague]\n")
    with pytest.raises(RecipeError) as err:
        load_recipes(recipe)
    [problem] = err.value.problems
    assert problem.line == 7 and "critique.specificity" in problem.message and "vague" in problem.message
    empty = write(tmp_path, "e.yaml", BASE + "matrix:\n  critique.specificity: []\n")
    with pytest.raises(RecipeError, match="non-empty list"):
        load_recipes(empty)


def test_yaml_syntax_errors_and_cycles_are_recipe_errors(tmp_path):
    broken = write(tmp_path, "b.yaml", "name: x\ndata: {path: [\n")
    with pytest.raises(RecipeError, match="invalid YAML"):
        load_recipes(broken)
    write(tmp_path, "a.yaml", "extends: c.yaml\n")
    cyc = write(tmp_path, "c.yaml", "extends: a.yaml\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipes(cyc)


def test_cross_field_problems_each_have_a_location(tmp_path):
    recipe = write(tmp_path, "x.yaml", BASE.replace("{model: tiny}", "{model: m, tiny: {}}")
                   + "variants: [base, cgd, cgd]\n")
    with pytest.raises(RecipeError) as err:
        load_recipes(recipe)
    messages = [p.message for p in err.value.problems]
    assert any("variants: lists a variant twice" in m for m in messages)
    assert any("student.tiny" in m for m in messages)
    assert all(p.line > 1 for p in err.value.problems)


def test_every_recipe_key_is_documented():
    from harness.recipe.reference import walk

    rows = list(walk())
    assert len(rows) > 40
    undocumented = [key for key, _, _, doc in rows if not doc]
    assert not undocumented, f"fields without a docstring: {undocumented}"
