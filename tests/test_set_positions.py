"""The loader keeps every value's origin (file line, `extends:` layer, `--set N`) on the loaded recipe, and problems
found later (Axolotl's validation, the train stage's checks) are located through it: a value from a `--set` at
`--set:N:COL`, one from a file at its own line."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from harness.axolotl.check import axolotl_problems, locate
from harness.paths import PROJECT_ROOT
from harness.recipe import Locator, load_recipes, locator_of
from harness.recipe import locate as locate_in_recipe
from harness.recipe.schema import Recipe

BASE = """\
name: base
data: {path: data/tiny/train.jsonl, limit: 10}
student: {model: tiny}
teacher: {provider: oracle, model: oracle}
train:
  learning_rate: 1.0e-3
  global_batch_size: 16
  axolotl:
    weight_decay: 0.0
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def where(problem) -> tuple[str, int, int]:
    return problem.file, problem.line, problem.col


def test_a_loaded_recipe_knows_where_each_value_came_from(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", BASE)
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nname: child\ntrain: {epochs: 2}\n")
    overrides = ["train.axolotl.optimizer=adamw_torch", "seed=3", "train.axolotl={weight_decay: 0.1}"]
    [recipe] = load_recipes(child, overrides)
    locator = locator_of(recipe)
    assert isinstance(locator, Locator)
    base_name = str(base.resolve())
    assert locator.origin("train.learning_rate") == (base_name, 6, 18)  # in the file it extends
    assert locator.origin("train.epochs") == (str(child), 3, 17)  # in the recipe itself
    assert locator.origin("seed") == ("--set", 2, 6)  # the second --set, at its value
    # The third --set replaced train.axolotl as a whole: the first one's key and the file's are gone below it.
    assert locator.origin("train.axolotl.optimizer") == ("--set", 3, 15)
    assert locator.origin("train.axolotl.weight_decay") == ("--set", 3, 15)
    assert locator.origin(("train", "axolotl")) == ("--set", 3, 15)
    assert locator.origin("eval.suites") == (str(child), 1, 1)  # a default: the recipe file
    problem = locate_in_recipe(recipe, "seed", "seed: no good")
    assert str(problem) == "--set:2:6: seed: no good"
    assert where(locate_in_recipe(recipe, "train.epochs", "x", at_key=True)) == (str(child), 3, 9)


def test_later_sets_win_and_a_set_below_an_earlier_one_keeps_both(tmp_path: Path) -> None:
    recipe_file = write(tmp_path / "r.yaml", BASE)
    [recipe] = load_recipes(recipe_file, ["train.axolotl={optimizer: sgd}", "train.axolotl.lr_groups=[]",
                                          "train.learning_rate=2e-5", "train.learning_rate=3e-5"])
    locator = locator_of(recipe)
    assert locator is not None
    assert locator.origin("train.axolotl.optimizer") == ("--set", 1, 15)
    assert locator.origin("train.axolotl.lr_groups") == ("--set", 2, 25)
    assert locator.origin("train.learning_rate") == ("--set", 4, 21)
    assert locator.origin("train.global_batch_size") == (str(recipe_file), 7, 22)


def test_positions_survive_copies_pickling_and_matrix_members(tmp_path: Path) -> None:
    recipe_file = write(tmp_path / "m.yaml", BASE + "matrix:\n  train.learning_rate: [1.0e-6, 5.0e-6]\n")
    members = load_recipes(recipe_file, ["seed=7"])
    assert len(members) == 2
    for member in members:
        for same in (member, member.model_copy(update={"name": "x"}), copy.deepcopy(member),
                     pickle.loads(pickle.dumps(member))):
            assert locator_of(same) is not None
            assert where(locate_in_recipe(same, "train.learning_rate", "m")) == (str(recipe_file), 11, 24)  # matrix
            assert where(locate_in_recipe(same, "seed", "m")) == ("--set", 1, 6)
    # Two loads of one file compare equal (the positions are compared by value, not identity).
    assert load_recipes(recipe_file, ["seed=7"]) == members
    assert load_recipes(recipe_file, ["seed=8"]) != members


def test_a_recipe_the_loader_did_not_build_is_located_by_its_file_or_not_at_all(tmp_path: Path) -> None:
    [loaded] = load_recipes(write(tmp_path / "r.yaml", BASE))
    bare = Recipe.model_validate(loaded.model_dump())
    assert locator_of(bare) is None
    assert str(locate_in_recipe(bare, "train.learning_rate", "m")) == "<recipe>:1:1: m"
    bare._source_path = loaded.source_path  # read from the file: its own positions, no --set
    assert locate_in_recipe(bare, "train.learning_rate", "m").line == 6


def test_axolotl_check_locates_through_the_kept_positions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`axolotl/check.locate` reads no file: the recipe file may be gone, and a --set is still named."""
    recipe_file = write(tmp_path / "r.yaml", BASE)
    [recipe] = load_recipes(recipe_file, ["train.learning_rate=2e-5", "train.axolotl.optimizer=adamw_nonsense"])
    recipe_file.unlink()
    found = ["learning_rate: Input should be less than 1", "optimizer: unknown optimizer 'adamw_nonsense'",
             "weight_decay: bad"]
    cfg = {"learning_rate": 2e-5, "optimizer": "adamw_nonsense", "weight_decay": 0.0}
    lr, opt, wd = axolotl_problems(recipe, cfg, found)
    assert str(lr) == "--set:1:21: train.learning_rate: Axolotl rejects it: learning_rate: Input should be less than 1"
    assert str(opt) == "--set:2:25: train.axolotl.optimizer: Axolotl rejects it: unknown optimizer 'adamw_nonsense'"
    assert where(wd) == (str(recipe_file), 9, 19)
    [train] = locate(recipe, [(("train",), "cannot render")])
    assert where(train) == (str(recipe_file), 6, 3)  # the train block


def test_cgd_validate_training_check_names_the_set(tmp_path: Path) -> None:
    """What `cgd validate` runs for training (Axolotl's own schema): a rejected key from a --set is at that --set,
    one from the file at its line."""
    from harness.axolotl.cli import training_problems

    recipe_file = write(tmp_path / "r.yaml", BASE)
    [found] = training_problems(load_recipes(recipe_file, ["train.axolotl.lora_r=abc"]))
    assert where(found) == ("--set", 1, 22) and found.message.startswith("train.axolotl.lora_r: Axolotl rejects it")
    in_file = write(tmp_path / "f.yaml", BASE + "    lora_r: abc\n")
    [found] = training_problems(load_recipes(in_file))
    assert where(found) == (str(in_file), line_of(in_file, "lora_r"), 13)


# --- from the outside: `cgd train` reaches the train stage's Axolotl validation and stops there ----------------


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers.tiny_model import build_random_tiny_model

    return build_random_tiny_model(tmp_path_factory.mktemp("set-positions") / "student")


def cgd(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})


def test_cgd_train_reports_an_axolotl_problem_at_the_set_or_the_file_line(tmp_path: Path, student: Path) -> None:
    recipe = write(tmp_path / "t.yaml", f"""\
name: t
data: {{path: {PROJECT_ROOT / "data" / "tiny" / "train.jsonl"}, limit: 8}}
student: {{model: {student}}}
teacher: {{provider: oracle, model: oracle}}
variants: [base, sft]
train:
  global_batch_size: 4
  axolotl:
    weight_decay: 0.0
""")
    runs = tmp_path / "runs"
    proc = cgd("train", "t.yaml", "--runs-dir", str(runs), "--set", "train.axolotl.optimizer=adamw_nonsense",
               cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--set:1:25: train.axolotl.optimizer: Axolotl rejects it: unknown optimizer 'adamw_nonsense'" \
        in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(runs.glob("stages/train-*/model"))  # stopped before launching
    # The same key written in the file is reported at its own line (data, student and export are cached now).
    write(recipe, recipe.read_text() + "    optimizer: adamw_nonsense\n")
    proc = cgd("train", "t.yaml", "--runs-dir", str(runs), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = line_of(recipe, "adamw_nonsense")
    assert f"t.yaml:{line}:16: train.axolotl.optimizer: Axolotl rejects it" in proc.stderr, proc.stderr


def test_a_bad_set_value_is_refused_at_load_at_that_set(tmp_path: Path) -> None:
    from harness.errors import RecipeError

    recipe_file = write(tmp_path / "r.yaml", BASE)
    with pytest.raises(RecipeError) as err:
        load_recipes(recipe_file, ["seed=1", "train.learning_rate=abc"])
    [problem] = err.value.problems
    assert where(problem) == ("--set", 2, 21) and problem.message.startswith("train.learning_rate:")
