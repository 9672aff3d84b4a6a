"""`teacher.reask: false` keeps teacher outputs as generated, as the official CGD code does: a critique without a
verdict is kept (verdict None, counted `no_verdict`), a refinement cut off at max_tokens is kept (counted `cut_off`),
nothing is re-sampled. The default (re-ask, then drop) is unchanged, and the key is fingerprinted only when off."""

from __future__ import annotations

from pathlib import Path

from harness.recipe import load_recipes
from harness.stages.teacher import teacher_params
from tests.fakes.provider import FakeProvider, FaultPlan
from tests.helpers.data import write_prompts
from tests.test_backends_e2e import cgd, stage_info, stage_records, write_recipe

N = 40
BAD = FaultPlan(rate=0.3, unrecoverable=1.0, kinds=("bad_output",), seed=3)  # 30% of payloads: no verdict / cut off


def _run(tmp_path: Path, name: str, *sets: str) -> tuple[Path, FakeProvider]:
    data = write_prompts(tmp_path / "prompts.jsonl", N, seed=21)
    runs = tmp_path / name
    with FakeProvider(record_log=False) as student, FakeProvider(faults=BAD) as teacher:
        recipe = write_recipe(tmp_path, data, student.url, teacher.url, "openai")
        args = [a for s in sets for a in ("--set", s)]
        cgd("run", str(recipe), "--until", "refine", "--runs-dir", str(runs), "--json", *args)
    return runs, teacher


def test_reask_off_keeps_every_output_as_generated_and_never_resamples(tmp_path):
    runs, teacher = _run(tmp_path, "off", "teacher.reask=false")
    assert len(teacher.stats.received) == 2 * N, "one critique and one refinement per prompt, nothing else"
    assert set(teacher.stats.received.values()) == {1}, "a payload was sent twice"
    critiques, refined = stage_records(runs, "critique"), stage_records(runs, "refine")
    assert len(critiques) == N and all(r["status"] == "ok" for r in critiques)
    assert len(refined) == N and all(r["status"] == "ok" for r in refined)
    no_verdict = [r for r in critiques if r["verdict"] is None]
    assert no_verdict and all("conclusion" not in r["critique"].lower() for r in no_verdict)
    assert stage_info(runs, "critique")["no_verdict"] == len(no_verdict)
    cut = [r for r in refined if r.get("refined_cut_off")]
    assert cut and stage_info(runs, "refine")["cut_off"] == len(cut)
    assert all(r["refined"].strip() for r in cut), "a cut-off refinement is kept as generated"
    assert stage_info(runs, "critique")["retries"] == 0 and stage_info(runs, "refine")["retries"] == 0


def test_reask_on_is_todays_behaviour_and_a_different_stage(tmp_path):
    runs_on, teacher = _run(tmp_path, "on")
    assert len(teacher.stats.received) > 2 * N, "unusable answers are re-asked (distinct sampled payloads)"
    critiques = stage_records(runs_on, "critique")
    assert all(r["status"] == "ok" and r["verdict"] in ("right", "wrong") for r in critiques)
    assert "no_verdict" not in stage_info(runs_on, "critique")
    assert not any(r.get("refined_cut_off") for r in stage_records(runs_on, "refine"))
    runs_off, _ = _run(tmp_path, "off", "teacher.reask=false")
    dirs = {p.parent.name for runs in (runs_on, runs_off) for p in (runs / "stages").glob("critique-*/done.json")}
    assert len(dirs) == 2, "reask off must be its own critique stage (fingerprint)"


def test_reask_is_fingerprinted_only_when_off(tmp_path):
    [tiny] = load_recipes(Path(__file__).parents[1] / "recipes" / "tiny.yaml")
    assert "reask" not in teacher_params(tiny) and "parser" not in teacher_params(tiny)
    for name in ("qwen-math-7b-claude", "llama-3.1-8b-llama-3.3-70b", "s1.1-3b-s1.1-32b", "lr-stability"):
        for recipe in load_recipes(Path(__file__).parents[1] / "recipes" / f"{name}.yaml"):
            assert recipe.teacher.reask is False and teacher_params(recipe)["reask"] is False, name


def test_reask_key_is_validated(tmp_path):
    bad = tmp_path / "bad.yaml"
    tiny = Path(__file__).parents[1] / "recipes" / "tiny.yaml"
    bad.write_text(f"extends: {tiny}\nname: bad\nteacher: {{provider: oracle, model: oracle, reask: maybe}}\n")
    proc = cgd("validate", str(bad), check=False)
    assert proc.returncode == 2 and "teacher.reask" in proc.stdout + proc.stderr
