"""The run store from the outside: a runs folder read from another working folder, moved, or fed a data file that
was moved keeps every finished stage (nothing is sent again); a recipe-wide budget_usd caps all teacher stages
together; a read-only or full runs folder is one clear line, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.stages.generation import read_spend
from tests.fakes.provider import FakeProvider
from tests.helpers.data import write_prompts
from tests.test_backends_e2e import CGD, KEY, KEY_ENV, write_recipe


def _cgd(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CGD, *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, KEY_ENV: KEY})


def _statuses(proc: subprocess.CompletedProcess) -> dict[str, str]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    stages = json.loads(proc.stdout)["stages"]
    return {name: s["status"] for name, s in stages.items() if s["status"] != "skipped"}  # skipped: past --until


def test_a_runs_folder_works_from_any_folder_after_a_move_and_with_moved_data(tmp_path):
    a, b, c, d = (tmp_path / n for n in "abcd")
    for folder in (a, b, c, d):
        folder.mkdir()
    data = write_prompts(a / "prompts.jsonl", 30, seed=3)
    with FakeProvider(record_log=False) as student, FakeProvider() as teacher:
        recipe = write_recipe(a, Path("prompts.jsonl"), student.url, teacher.url, "openai")
        first = _statuses(_cgd(a, "run", recipe.name, "--until", "refine", "--runs-dir", "runs", "--json"))
        assert set(first.values()) == {"done"}
        sent = sum(teacher.stats.received.values())

        # Another working folder, the same (relative) runs folder: every stage cached, nothing sent.
        again = _statuses(_cgd(b, "run", "../a/" + recipe.name, "--until", "refine", "--runs-dir", "../a/runs",
                               "--json"))
        assert set(again.values()) == {"cached"}, again

        # The runs folder moved, and the data file copied elsewhere (same content): still all cached.
        shutil.move(str(a / "runs"), str(c / "moved-runs"))
        shutil.copy(data, d / "prompts.jsonl")
        recipe_d = write_recipe(d, Path("prompts.jsonl"), student.url, teacher.url, "openai")
        moved = _statuses(_cgd(d, "run", recipe_d.name, "--until", "refine", "--runs-dir", "../c/moved-runs",
                               "--json"))
        assert set(moved.values()) == {"cached"}, moved
        assert sum(teacher.stats.received.values()) == sent  # not one request more
    for manifest in (c / "moved-runs" / "stages").glob("*/done.json"):
        assert str(tmp_path) not in manifest.read_text(), f"{manifest} holds an absolute path"


def test_recipe_wide_budget_caps_every_teacher_stage_together(tmp_path):
    data = write_prompts(tmp_path / "prompts.jsonl", 40, seed=4)
    runs = tmp_path / "runs"
    with FakeProvider(record_log=False) as student, FakeProvider() as teacher:
        recipe = write_recipe(tmp_path, data, student.url, teacher.url, "openai")
        _statuses(_cgd(tmp_path, "run", str(recipe), "--until", "critique", "--runs-dir", str(runs), "--json"))
        [critique] = (runs / "stages").glob("critique-*")
        spent_on_critiques = read_spend(critique / "spend.jsonl")
        assert spent_on_critiques > 0
        budget = round(spent_on_critiques * 1.3, 8)  # room for about a third of the refinements
        capped = _cgd(tmp_path, "run", str(recipe), "--until", "refine", "--runs-dir", str(runs), "--json",
                      "--set", f"budget_usd={budget}")
    assert capped.returncode == 1, capped.stderr[-3000:]
    assert "budget_usd" in capped.stderr
    [refine] = (runs / "stages").glob("refine-*")
    marker = json.loads((refine / "partial.json").read_text())
    assert marker["unsent"] > 0 and marker["ok"] > 0
    total = spent_on_critiques + read_spend(refine / "spend.jsonl")
    assert total <= budget + 1e-9, (total, budget)


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill or make read-only here: {proc.stderr.decode().strip()}")


@pytest.mark.parametrize("trouble", ["read-only", "full"])
def test_a_read_only_or_full_runs_folder_is_one_clear_line(tmp_path, trouble):
    data = write_prompts(tmp_path / "prompts.jsonl", 200, seed=5)
    runs = tmp_path / "runs"
    _mount_tmpfs(runs, "1m" if trouble == "read-only" else "96k")
    try:
        if trouble == "read-only":
            subprocess.run(["mount", "-o", "remount,ro", str(runs)], check=True)
        with FakeProvider(record_log=False) as student, FakeProvider() as teacher:
            recipe = write_recipe(tmp_path, data, student.url, teacher.url, "openai")
            proc = _cgd(tmp_path, "run", str(recipe), "--until", "refine", "--runs-dir", str(runs))
    finally:
        subprocess.run(["umount", "-l", str(runs)], check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    reason = "Read-only file system" if trouble == "read-only" else "No space left on device"
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert reason in line and str(runs) in line, proc.stderr[-3000:]
