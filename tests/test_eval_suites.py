"""Suites load with their pins; built-in and custom lm-eval tasks run offline on seeded fixture rows (tiny model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from harness.errors import HarnessError
from harness.evaluation import available_suites, load_suite, run_suite
from harness.paths import PROJECT_ROOT
from harness.registry import UnknownName

pytest_plugins = ["tests.helpers.eval_env"]  # fixtures: eval_env, tiny

MATH_BENCHMARKS = {"math500", "minerva_math", "gsm8k", "olympiadbench", "amc23", "aime24", "aime25", "theoremqa"}
GENERAL_BENCHMARKS = {"ifeval", "mmlu_pro", "gpqa_diamond", "bbh", "musr", "truthfulqa"}


def test_suites_load_and_pin_their_settings():
    assert {"math", "math_passk", "general", "code", "tiny"} <= set(available_suites())
    math = load_suite("math")
    lm = math["lm_eval"]
    assert lm["system_instruction"] == "Please reason step by step, and put your final answer within \\boxed{}."
    assert lm["apply_chat_template"] is True and lm["max_gen_toks"] == 8192
    assert {t["benchmark"] for t in lm["tasks"]} == MATH_BENCHMARKS
    assert "grader" in math["pins"] and math["pins"]["task_files"] and math["pins"]["versions"]["lm_eval"]
    general = load_suite("general")
    shots = {t["benchmark"]: t.get("num_fewshot") for t in general["lm_eval"]["tasks"]}
    assert shots["mmlu_pro"] == 5 and shots["gpqa_diamond"] == 5
    code = load_suite("code")
    assert [(d["dataset"], d["version"]) for d in code["evalplus"]["datasets"]] == [("humaneval", "v0.1.10"),
                                                                                    ("mbpp", "v0.2.0")]
    passk = load_suite("math_passk")
    assert passk["lm_eval"]["tasks"][0]["samples"] == {"n": 16, "k": [1, 8, 16], "temperature": 0.6, "top_p": 0.95}
    # the hash pins the settings: same settings same hash, a different cap or an added task another
    assert load_suite("math")["hash"] == math["hash"]
    assert load_suite("math", max_gen_toks=16384)["hash"] != math["hash"]
    assert load_suite("math", add_tasks=["aime24"])["hash"] != math["hash"]


def test_suite_errors_are_bad_input(tmp_path):
    with pytest.raises(UnknownName, match="unknown eval suite 'nope'; available: .*math"):
        load_suite("nope")
    (tmp_path / "bad.yaml").write_text("name: bad\nlm_eval: {tasks: [x], shots: 5}\n")
    with pytest.raises(HarnessError, match="unknown key.*shots"):
        load_suite("bad", tmp_path)
    (tmp_path / "pk.yaml").write_text("name: pk\nlm_eval: {tasks: [{task: x, samples: {n: 4, k: [8]}}]}\n")
    with pytest.raises(HarnessError, match="1 <= k <= n"):
        load_suite("pk", tmp_path)


def test_seeded_cache_reads_offline(eval_env):
    import datasets

    math500 = datasets.load_dataset("HuggingFaceH4/MATH-500", "default", split="test")
    assert math500[0]["answer"] == "\\frac{5}{6}" and set(math500.column_names) >= {"problem", "solution", "level"}
    bbh = datasets.load_dataset("SaylorTwift/bbh", "navigate", split="test")
    assert bbh[0]["target"] == "Yes"
    musr = datasets.load_dataset("TAUR-Lab/MuSR", split="team_allocation")
    assert len(musr) == 1
    assert (eval_env.xdg / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl").exists()


def _check_rows(rows, benchmarks, suite):
    primary = {r["benchmark"]: r for r in rows if r["primary"]}
    assert set(primary) == benchmarks
    for r in rows:
        assert r["suite"] == suite["name"] and r["suite_hash"] == suite["hash"]
        assert 0.0 <= r["value"] <= 1.0 and r["n"] >= 1
    for r in primary.values():
        assert r["samples"] and Path(r["results_file"]).exists()
        if "*" not in r["samples"]:
            lines = Path(r["samples"]).read_text().splitlines()
            assert lines and "resps" in json.loads(lines[0])
    return primary


def test_math_suite_custom_tasks_run_on_seeded_rows(eval_env, tiny, tmp_path):
    suite = load_suite("math", max_gen_toks=8)
    rows = run_suite(suite, model_path=str(tiny), out_dir=tmp_path, limit=2, batch_size=8, console=Console())
    primary = _check_rows(rows, MATH_BENCHMARKS, suite)
    assert all(r["metric"] == "exact_match" and r["n"] == 2 for r in primary.values())
    sample = json.loads(Path(primary["math500"]["samples"]).read_text().splitlines()[0])
    prompt = sample["arguments"]["gen_args_0"]["arg_0"]
    assert prompt == ("<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}."
                      "<|im_end|>\n<|im_start|>user\nWhat is the value of $\\frac{1}{2} + \\frac{1}{3}$?<|im_end|>\n"
                      "<|im_start|>assistant\n")
    assert sample["arguments"]["gen_args_0"]["arg_1"]["max_gen_toks"] == 8
    assert sample["target"] == "\\frac{5}{6}"


def test_general_suite_builtin_tasks_run_unchanged(eval_env, tiny, tmp_path):
    suite = load_suite("general", max_gen_toks=8)
    rows = run_suite(suite, model_path=str(tiny), out_dir=tmp_path, limit=1, batch_size=8, console=Console())
    primary = _check_rows(rows, GENERAL_BENCHMARKS, suite)
    assert primary["mmlu_pro"]["metric"] == "exact_match,custom-extract" and primary["mmlu_pro"]["n"] == 14
    assert primary["bbh"]["n"] == 24 and primary["musr"]["n"] == 3
    assert primary["gpqa_diamond"]["metric"] == "acc_norm" and primary["ifeval"]["metric"] == "prompt_level_strict_acc"
    subtasks = [r for r in rows if r["benchmark"].startswith("bbh/")]
    assert len({r["benchmark"] for r in subtasks}) == 24 and not any(r["primary"] for r in subtasks)
    results = json.loads(Path(primary["gpqa_diamond"]["results_file"]).read_text())
    assert results["n-shot"]["gpqa_diamond_n_shot"] == 5 and results["n-shot"]["mmlu_pro_math"] == 5


def test_tiny_suite_still_runs(eval_env, tiny, tmp_path):
    suite = load_suite("tiny", max_gen_toks=8)
    rows = run_suite(suite, model_path=str(tiny), out_dir=tmp_path, limit=2, batch_size=8, console=Console())
    assert [(r["benchmark"], r["metric"], r["n"], r["primary"]) for r in rows] == [("tiny_arith", "exact_match", 2,
                                                                                   True)]


def test_cli_data_seed_writes_a_cache(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    env.pop("HF_DATASETS_CACHE", None)
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "data", "seed", "--fixtures", "--suite", "code",
                           "--suite", "math"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "math-ai/amc23 [default] test=2" in proc.stdout and "evalplus/MbppPlus-v0.2.0" in proc.stdout
    assert "google/IFEval" not in proc.stdout  # only the asked suites' datasets
    assert list((tmp_path / "hf" / "datasets" / "math-ai___amc23" / "default" / "0.0.0").glob("*/amc23-test.arrow"))
    assert (tmp_path / "xdg" / "evalplus" / "MbppPlus-v0.2.0.jsonl").exists()
    bare = subprocess.run([sys.executable, "-m", "harness.cli", "data", "seed"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env=env, timeout=300)
    assert bare.returncode == 2 and "--fixtures" in bare.stderr  # never seeds the made-up rows by accident


def test_seeding_replaces_only_its_own_folders(tmp_path):
    from harness.datasets_seed import cache_folder, seed_dataset

    real = cache_folder("math-ai/amc23", tmp_path) / "default" / "0.0.0" / "0123abcd"
    real.mkdir(parents=True)
    first = seed_dataset("math-ai/amc23", None, {"test": [{"question": "q", "answer": 1.0}]}, tmp_path)
    second = seed_dataset("math-ai/amc23", None, {"test": [{"question": "q2", "answer": 2.0}]}, tmp_path)
    assert real.is_dir() and second.path.is_dir() and not first.path.exists()
    assert second.splits == {"test": 1} and (second.path / "amc23-test.arrow").is_file()
