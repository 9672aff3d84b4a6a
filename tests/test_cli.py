"""`cgd validate` / `cgd plan` contracts: exit codes, FILE:LINE:COL messages, no traceback, nothing written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from harness.paths import PROJECT_ROOT, RECIPES_DIR

GOOD = """\
name: t
data: {path: data/tiny/train.jsonl, limit: 10}
student: {model: tiny}
teacher: {provider: oracle, model: oracle}
"""


def cgd(*args: str, cwd=PROJECT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "CGD_RUNS_DIR": "runs-should-not-exist"})


@pytest.mark.parametrize(("text", "line", "col", "pattern"), [
    (GOOD.replace("limit: 10", "limt: 10"), 2, 37, r"unknown key 'limt'.*limit"),
    (GOOD + "seed: zero\n", 5, 7, r"seed"),
    (GOOD.replace("student: {model: tiny}\n", ""), 1, 1, r"missing required field 'student'"),
    (GOOD.replace("provider: oracle", "provider: opneai"), 4, 21,
     r"unknown teacher provider 'opneai'; available: .*openai"),
])
def test_validate_reports_file_line_col_and_exits_2(tmp_path, text, line, col, pattern):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    proc = cgd("validate", str(recipe), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith(f"{recipe}:{line}:{col}: "), first
    assert re.search(pattern, first)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs-should-not-exist").exists() and not (tmp_path / "runs").exists()


def test_every_shipped_recipe_validates_and_plans():
    recipes = sorted(RECIPES_DIR.glob("*.yaml"))
    assert recipes
    proc = cgd("validate", *map(str, recipes))
    assert proc.returncode == 0, proc.stderr
    for recipe in recipes:
        plan = cgd("plan", str(recipe), "--json", "--runs-dir", "/nonexistent-runs-dir-for-plan")
        assert plan.returncode == 0, plan.stderr
        data = json.loads(plan.stdout)
        assert data["stages"] and data["estimated_cost_usd"] is not None


def test_unknown_until_stage_is_bad_input():
    proc = cgd("run", str(RECIPES_DIR / "tiny.yaml"), "--until", "exprt")
    assert proc.returncode == 2 and "unknown stage 'exprt'" in proc.stderr
