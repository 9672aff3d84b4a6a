"""Preflight from the outside: what a run needs from this machine (API keys, the vllm command, GPUs) is checked
before any stage sends anything: `cgd run` and `cgd validate --preflight` exit 2 naming each problem, `cgd plan`
reports the same problems (and exits 0: a plan is also made away from the machine that will run it). And
`cgd status` / `cgd run --json` on a run left partial show the partial stage, its counts and the spend so far."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.paths import PROJECT_ROOT
from harness.stages.generation import read_spend
from tests.fakes.provider import FakeProvider, FaultPlan
from tests.helpers.data import write_prompts
from tests.test_backends_e2e import CGD, KEY, KEY_ENV, write_recipe


def _cgd(*args: str, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
    """`cgd ARGS` with the teacher key set unless `env` says otherwise (None: unset); wide, so rich tables keep
    a row on one line."""
    full = {**os.environ, KEY_ENV: KEY, "COLUMNS": "250"}
    for name, value in (env or {}).items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    return subprocess.run([*CGD, *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120, env=full)


def _stopped_before_sending(proc, args, student, teacher, runs) -> None:
    """The run stops before the probe: no request reached either server, no stage folder was made; plan reports
    what would stop the run and still exits 0 (a plan is also made away from the machine)."""
    assert not student.stats.received and not teacher.stats.received, args
    _nothing_ran(runs)
    assert proc.returncode == (0 if args[0] == "plan" else 2), (args, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr


def _nothing_ran(runs: Path) -> None:
    stages = runs / "stages"
    assert not stages.exists() or not list(stages.iterdir()), f"stages ran: {list(stages.iterdir())}"


@pytest.fixture()
def servers():
    with FakeProvider(record_log=False) as student, FakeProvider(record_log=False) as teacher:
        yield student, teacher


@pytest.mark.parametrize("unset", [True, False], ids=["unset", "empty"])
def test_a_missing_teacher_key_stops_validate_plan_and_run_before_anything_is_sent(tmp_path, servers, unset):
    student, teacher = servers
    data = write_prompts(tmp_path / "prompts.jsonl", 12, seed=3)
    recipe = write_recipe(tmp_path, data, student.url, teacher.url, "anthropic")
    runs = tmp_path / "runs"
    env = {KEY_ENV: None if unset else ""}
    for args in (["run", str(recipe), "--runs-dir", str(runs)],
                 ["run", str(recipe), "--runs-dir", str(runs), "--until", "critique", "--json"],
                 ["plan", str(recipe), "--runs-dir", str(runs)],
                 ["validate", "--preflight", str(recipe), "--runs-dir", str(runs)]):
        proc = _cgd(*args, env=env)
        _stopped_before_sending(proc, args, student, teacher, runs)
        assert f"environment variable {KEY_ENV} is {'not set' if unset else 'empty'}" in proc.stderr, proc.stderr
        assert f"export {KEY_ENV}=" in proc.stderr  # says how to fix it
        assert "teacher.api_key_env" in proc.stderr and f"{recipe}:" in proc.stderr  # located in the recipe
        # The stages that would send with it (--until critique: only that one).
        assert ("stage critique will send" if "--until" in args else "stages critique, refine will send") in proc.stderr

    # With the key set the same recipe passes (a CPU-only recipe asks for no GPU), and plan shows no problem.
    proc = _cgd("validate", "--preflight", str(recipe), "--runs-dir", str(runs))
    assert proc.returncode == 0, proc.stderr
    proc = _cgd("plan", str(recipe), "--runs-dir", str(runs), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["preflight"] == []


def test_a_key_only_needed_by_cached_stages_is_not_asked_for(tmp_path, servers):
    student, teacher = servers
    data = write_prompts(tmp_path / "prompts.jsonl", 12, seed=4)
    recipe = write_recipe(tmp_path, data, student.url, teacher.url, "openai")
    runs = tmp_path / "runs"
    proc = _cgd("run", str(recipe), "--runs-dir", str(runs), "--until", "refine")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sent = sum(teacher.stats.received.values())
    # Everything that sends is done: the key is no longer needed, and nothing is sent again.
    for args in (["validate", "--preflight", str(recipe)], ["plan", str(recipe)],
                 ["run", str(recipe), "--until", "refine"]):
        proc = _cgd(*args, "--runs-dir", str(runs), env={KEY_ENV: None})
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
    assert sum(teacher.stats.received.values()) == sent


def test_vllm_missing_from_path_stops_before_anything_runs(tmp_path, servers):
    student, teacher = servers
    data = write_prompts(tmp_path / "prompts.jsonl", 12, seed=3)
    recipe = write_recipe(tmp_path, data, student.url, teacher.url, "openai")
    text = recipe.read_text()
    start = text.index("student: {")
    end = text.index("\nteacher:")
    recipe.write_text(text[:start] + "student: {model: student, backend: vllm, generation: {max_tokens: 64}}"
                      + text[end:])
    bare = tmp_path / "bin"
    bare.mkdir()
    runs = tmp_path / "runs"
    for args in (["run", str(recipe), "--runs-dir", str(runs)],
                 ["plan", str(recipe), "--runs-dir", str(runs)],
                 ["validate", "--preflight", str(recipe), "--runs-dir", str(runs)]):
        proc = _cgd(*args, env={"PATH": str(bare)})
        _nothing_ran(runs)
        # plan reports what would stop the run and still exits 0 (a plan is also made away from the machine)
        assert proc.returncode == (0 if args[0] == "plan" else 2), (args, proc.stdout[-2000:], proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
        assert "command 'vllm' not found on PATH" in proc.stderr, proc.stderr
        assert "student.backend" in proc.stderr and "vllm.command" in proc.stderr  # where, and how to fix it
        assert "probe" in proc.stderr
    assert not student.stats.received and not teacher.stats.received
    _nothing_ran(runs)


def test_a_launcher_asking_for_more_gpus_than_visible_stops_before_anything_runs(tmp_path, servers):
    student, teacher = servers
    data = write_prompts(tmp_path / "prompts.jsonl", 12, seed=3)
    recipe = write_recipe(tmp_path, data, student.url, teacher.url, "openai",
                          extra="train: {launcher: {kind: torchrun, num_processes: 8}}\n")
    runs = tmp_path / "runs"
    env = {"CUDA_VISIBLE_DEVICES": "0"}  # at most one GPU, whatever machine this runs on
    for args in (["run", str(recipe), "--runs-dir", str(runs)],
                 ["plan", str(recipe), "--runs-dir", str(runs)],
                 ["validate", "--preflight", str(recipe), "--runs-dir", str(runs)]):
        proc = _cgd(*args, env=env)
        _stopped_before_sending(proc, args, student, teacher, runs)
        assert "asks for 8 GPUs" in proc.stderr and "train.launcher.num_processes" in proc.stderr, proc.stderr
        assert "train:cgd:0" in proc.stderr
    assert not student.stats.received and not teacher.stats.received
    _nothing_ran(runs)
    # --json: the same problem in the plan's JSON, on stdout.
    proc = _cgd("plan", str(recipe), "--runs-dir", str(runs), "--json", env=env)
    assert proc.returncode == 0 and "8 GPUs" in json.loads(proc.stdout)["preflight"][0]


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory):
    """A run whose critique stage is left partial: 30% of critiques fail through every retry."""
    tmp = tmp_path_factory.mktemp("partial")
    data = write_prompts(tmp / "prompts.jsonl", 40, seed=5)
    runs = tmp / "runs"
    outage = FaultPlan(rate=0.3, unrecoverable=1.0, kinds=("500",), seed=7)
    with FakeProvider(record_log=False) as student, FakeProvider(faults=outage, record_log=False) as teacher:
        recipe = write_recipe(tmp, data, student.url, teacher.url, "openai")
        proc = _cgd("run", str(recipe), "--until", "refine", "--runs-dir", str(runs), "--json")
    return proc, runs


def test_run_json_on_a_partial_run_prints_the_summary_and_exits_1(partial_run):
    proc, runs = partial_run
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # the one JSON object, nothing else on stdout
    assert summary["status"] == "partial"
    assert summary["stages"]["critique"]["status"] == "partial"
    assert summary["stages"]["refine"]["status"] == "blocked"
    assert summary["stages"]["probe"]["status"] == "done"
    assert summary["run_dir"] == str(runs / "e2e-openai")
    assert "partial" in proc.stderr  # the message still goes to stderr


def test_status_shows_a_partial_stage_with_its_counts_and_the_spend_so_far(partial_run):
    _, runs = partial_run
    [marker] = (runs / "stages").glob("critique-*/partial.json")
    counts = json.loads(marker.read_text())
    spent = read_spend(marker.parent / "spend.jsonl")
    assert spent > 0
    proc = _cgd("status", str(runs / "e2e-openai"))
    assert proc.returncode == 0, proc.stderr
    [row] = [line for line in proc.stdout.splitlines() if line.startswith("│ critique ")]
    assert "partial" in row
    assert f"{counts['ok']}/40 ok, {counts['failed']} failed" in row
    assert f"{spent:.4f}" in row
    [refine] = [line for line in proc.stdout.splitlines() if line.startswith("│ refine ")]
    assert "blocked" in refine
    assert f"spend so far: ${spent:.4f} in total" in proc.stdout
    assert f"critique ${spent:.4f}" in proc.stdout
    assert "critique partial:" in proc.stdout and "records failed" in proc.stdout  # why, from partial.json


@pytest.mark.parametrize(("listing", "cvd", "expected"), [
    ("GPU 0: NVIDIA H200 (UUID: GPU-a)\nGPU 1: NVIDIA H200 (UUID: GPU-b)\n", None, 2),
    ("GPU 0: NVIDIA H200 (UUID: GPU-a)\nGPU 1: NVIDIA H200 (UUID: GPU-b)\n", "1", 1),
    ("GPU 0: NVIDIA H200 (UUID: GPU-a)\nGPU 1: NVIDIA H200 (UUID: GPU-b)\n", "", 0),
    ("GPU 0: NVIDIA H200 (UUID: GPU-a)\nGPU 1: NVIDIA H200 (UUID: GPU-b)\n", "0,-1,1", 1),
    ("GPU 0: NVIDIA H200 (UUID: GPU-a)\n  MIG 1g.18gb Device 0: (UUID: MIG-a)\n"
     "  MIG 1g.18gb Device 1: (UUID: MIG-b)\n", None, 2),
    ("", "0,1,2,3", 0),
])
def test_visible_gpus_reads_nvidia_smi_and_cuda_visible_devices(tmp_path, monkeypatch, listing, cvd, expected):
    from harness.preflight import visible_gpus

    tool = tmp_path / "nvidia-smi"
    (tmp_path / "listing.txt").write_text(listing)
    tool.write_text(f"#!/bin/sh\ncat {tmp_path / 'listing.txt'}\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")  # before any real one
    if cvd is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", cvd)
    assert visible_gpus() == expected
