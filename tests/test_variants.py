"""Variants declare themselves (harness/variants/): the recipe's list is checked against the registry, a method
added from a test module runs through plan, export, train and report without an edit under harness/, and the
stage contract refuses a graph reading a field nothing writes and a stage that does not write what it declares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.paths import PROJECT_ROOT
from harness.variants import PLUGINS_ENV, baselines, get_variant, variant_names
from tests.helpers.tiny_model import build_random_tiny_model
from tests.test_pipeline import cgd, write_recipe


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return build_random_tiny_model(tmp_path_factory.mktemp("student") / "model")


def _plugin(name: str) -> dict[str, str]:
    return {PLUGINS_ENV: f"tests.plugins.{name}"}


def test_the_built_in_variants_are_registered_in_table_order():
    assert variant_names()[:7] == ["base", "sft", "distilled_sft", "cft", "sft_refined", "self_refine", "cgd"]
    assert "cgd" not in baselines() and {"base", "sft", "distilled_sft", "cft", "sft_refined"} <= set(baselines())
    assert get_variant("cgd").source == "refine" and not get_variant("base").trains


def test_readme_variant_table_is_the_registry():
    readme = (PROJECT_ROOT / "README.md").read_text()
    for name in ("sft", "distilled_sft", "cft", "sft_refined", "self_refine", "cgd"):
        assert f"| {name} | {get_variant(name).doc} |" in readme, name


def test_an_unknown_variant_is_a_located_error_listing_the_available_ones(tmp_path, student):
    recipe = write_recipe(tmp_path, student, variants="[base, cgd, selfish]")
    proc = cgd("validate", str(recipe), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = next(n for n, text in enumerate(recipe.read_text().splitlines(), 1) if text.startswith("variants:"))
    assert f"{recipe}:{line}:" in proc.stderr
    assert ("unknown variant 'selfish'; available: base, sft, distilled_sft, cft, sft_refined, self_refine, cgd"
            in proc.stderr)


def test_a_variant_reading_a_field_nothing_writes_fails_validate(tmp_path, student):
    recipe = write_recipe(tmp_path, student, variants="[base, needs_hint]")
    proc = cgd("validate", str(recipe), check=False, env=_plugin("misdeclared_variant"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    line = next(n for n, text in enumerate(recipe.read_text().splitlines(), 1) if text.startswith("variants:"))
    assert f"{recipe}:{line}:11: variants: variant 'needs_hint': stage export:needs_hint reads 'hint'" in proc.stderr
    assert "upstream: refine, student, critique, probe, data" in proc.stderr
    plan = cgd("plan", str(recipe), "--runs-dir", str(tmp_path / "runs"), check=False,
               env=_plugin("misdeclared_variant"))
    assert plan.returncode == 2 and "reads 'hint'" in plan.stderr


def test_a_stage_that_does_not_write_what_it_declares_fails(tmp_path, student):
    recipe = write_recipe(tmp_path, student, variants="[base, paraphrased]")
    proc = cgd("run", str(recipe), "--until", "export", "--runs-dir", str(tmp_path / "runs"), check=False,
               env=_plugin("broken_stage"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "stage paraphrase failed" in proc.stderr and "lacks paraphrase, which the stage declares" in proc.stderr
    assert not list((tmp_path / "runs" / "stages").glob("paraphrase-*/done.json"))


@pytest.mark.slow
def test_a_variant_from_a_test_module_runs_through_plan_export_train_and_report(tmp_path, student):
    env = _plugin("throwaway_variant")
    recipe = write_recipe(tmp_path, student, variants="[base, critique_only]", limit=12)
    runs = str(tmp_path / "runs")
    plan = json.loads(cgd("plan", str(recipe), "--runs-dir", runs, "--json", env=env).stdout)
    stages = {row["stage"]: row for row in plan["stages"]}
    assert {"probe", "critique", "export:critique_only", "train:critique_only:0"} <= set(stages)
    assert "refine" not in stages  # only what the variant declared it needs
    assert stages["probe"]["requests"] == 12 and stages["critique"]["requests"] == 12

    summary = json.loads(cgd("run", str(recipe), "--runs-dir", runs, "--json", "--set", "eval.limit=8",
                             env=env).stdout)
    assert summary["dataset_sizes"]["critique_only"]["examples"] == 12
    rows = [json.loads(line) for line in Path(summary["datasets"]["critique_only"]).read_text().splitlines()]
    assert rows[0]["messages"][-1]["training"] and "Conclusion" in rows[0]["messages"][-1]["content"]
    assert Path(summary["models"]["critique_only@seed0"], "config.json").is_file()
    report = cgd("report", summary["run_dir"], env=env).stdout
    assert "critique_only" in report and "base" in report
