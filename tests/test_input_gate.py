"""One input gate (issue 10, points 4 and 5), from the outside: `cgd` as a subprocess.

Hostile or broken recipes and data files end with exit 2 and one located line (FILE:LINE:COL or FILE: reason),
never a traceback or a hang, within seconds; matrix members get run folders that are safe, distinct and directly
inside the runs folder, and the leaderboard lists every one of them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.paths import PROJECT_ROOT

TINY_DATA = PROJECT_ROOT / "data" / "tiny" / "train.jsonl"
WALL_S = 10.0  # "within a few seconds" with headroom for a loaded 2-core box (the import alone is ~0.5 s)


def good(data: Path | str = TINY_DATA) -> str:
    return (f"name: t\ndata: {{path: '{data}', limit: 10}}\nstudent: {{model: tiny}}\n"
            "teacher: {provider: oracle, model: oracle}\n")


def cgd(*args: str, cwd: Path, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                              cwd=cwd, timeout=timeout, errors="replace",
                              env={**os.environ, "CGD_RUNS_DIR": str(cwd / "runs-default"), "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail(f"cgd {' '.join(args)} hung: no answer within {timeout}s")
    return proc, time.monotonic() - start


def assert_refused(proc: subprocess.CompletedProcess, wall: float, where: str, pattern: str) -> str:
    """Exit 2, no traceback, a first stderr line starting with `where` and matching `pattern`, quickly."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith(where), first
    assert re.search(pattern, first), first
    assert len(first) < 500, first  # one line, not a dump of the offending value
    assert wall < WALL_S, f"took {wall:.1f}s"
    return first


# --- the recipe gate --------------------------------------------------------------------------------------------

def _billion_laughs() -> str:
    """10^9 leaves once expanded: nine levels of nine aliases over a list of nine strings."""
    lines = ["  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"  {cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "teacher:\n  provider: oracle\n  model: oracle\n  extra_bomb:\n" + \
        "\n".join("  " + line for line in lines) + "\n"


BASE = "name: t\ndata: {path: data/tiny/train.jsonl, limit: 10}\nstudent: {model: tiny}\n"
GOOD = BASE + "teacher: {provider: oracle, model: oracle}\n"

RECIPES: dict[str, tuple[bytes, str, str]] = {
    # case: (file bytes, expected FILE:LINE:COL suffix after the path, pattern)
    "binary bytes": (GOOD.encode() + b"\xff\xfe\x00\x13junk\n", ":5:1: ", r"not UTF-8"),
    "control characters": (GOOD.encode() + b"seed: \x00\x01\x02\n", ":5:7: ", r"control character|binary"),
    "5000-deep flow nesting": ((GOOD + "seed: " + "[" * 5000 + "]" * 5000 + "\n").encode(), ":5:", r"nested"),
    "5000-deep block nesting": ((GOOD + "seed:\n" + "- " * 5000 + "1\n").encode(), ":6:", r"nested"),
    "python tag on a scalar": ((GOOD + "seed: !!python/object/apply:os.getpid []\n").encode(), ":5:7: ",
                               r"tag '!!python/object/apply:os.getpid' is not allowed"),
    "python tag on a sequence": ((GOOD + "variants: !!python/tuple [cgd, sft]\n").encode(), ":5:11: ",
                                 r"tag '!!python/tuple' is not allowed"),
    "python tag on a mapping": (GOOD.replace("student: {model: tiny}",
                                             "student: !!python/object:argparse.Namespace {model: tiny}").encode(),
                                ":3:10: ", r"tag '!!python/object:argparse.Namespace' is not allowed"),
    "custom tag on a mapping": (GOOD.replace("student: {model: tiny}", "student: !thing {model: tiny}").encode(),
                                ":3:10: ", r"tag '!thing' is not allowed"),
    "billion laughs": ((BASE + _billion_laughs()).encode(), ":", r"aliases are expanded"),
    "alias to itself": ((GOOD + "seeds: &s [1, *s]\n").encode(), ":5:", r"alias \*s"),
    "1 MB value": ((GOOD.replace("model: oracle}", "model: " + "o" * (1 << 20) + "}")).encode(), ":4:",
                   r"value of 1,048,576 characters is larger than"),
}


@pytest.mark.parametrize("case", list(RECIPES))
def test_hostile_recipe_is_refused_with_a_located_line(tmp_path, case):
    content, where, pattern = RECIPES[case]
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(content)
    proc, wall = cgd("validate", str(recipe), cwd=tmp_path)
    assert_refused(proc, wall, f"{recipe}{where}", pattern)


def test_plan_refuses_the_same_way(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(RECIPES["python tag on a sequence"][0])
    proc, wall = cgd("plan", str(recipe), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert_refused(proc, wall, f"{recipe}:5:11: ", r"tag '!!python/tuple' is not allowed")
    assert not (tmp_path / "runs").exists()


def test_a_50_mb_recipe_is_refused_quickly(tmp_path):
    recipe = tmp_path / "r.yaml"
    with recipe.open("w") as handle:
        handle.write(GOOD.replace("model: oracle}", "model: "))
        handle.write("o" * (50 << 20))
        handle.write("}\n")
    proc, wall = cgd("validate", str(recipe), cwd=tmp_path, timeout=120)
    assert_refused(proc, wall, f"{recipe}:1:1: ", r"larger than")


def test_a_recipe_that_extends_a_hostile_one_is_refused_at_the_parent(tmp_path):
    (tmp_path / "parent.yaml").write_bytes(RECIPES["billion laughs"][0])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("extends: parent.yaml\nseed: 1\n")
    proc, wall = cgd("validate", str(recipe), cwd=tmp_path)
    assert_refused(proc, wall, f"{tmp_path / 'parent.yaml'}:", r"aliases are expanded")


def test_a_deeply_nested_set_override_is_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(GOOD)
    proc, wall = cgd("plan", str(recipe), "--set", "seed=" + "[" * 5000 + "]" * 5000,
                     "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert_refused(proc, wall, "--set seed=[[[", r"nested")


@pytest.mark.parametrize("kind", ["folder", "absent"])
def test_a_recipe_that_is_a_folder_or_absent(tmp_path, kind):
    # Already exit 2 before the gate; kept so the gate's own reading keeps them that way.
    recipe = tmp_path / "r.yaml"
    if kind == "folder":
        recipe.mkdir()
    proc, wall = cgd("validate", str(recipe), cwd=tmp_path)
    assert_refused(proc, wall, f"{recipe}:1:1: ", r"folder" if kind == "folder" else r"no such")


def test_anchors_and_merge_keys_still_work(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(GOOD + "seed: &zero !!int 0\nseeds: !!seq [*zero, 1]\n")
    proc, _ = cgd("validate", str(recipe), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


# --- the data file gate -----------------------------------------------------------------------------------------

def _bad_utf8(tmp_path: Path) -> Path:
    data = tmp_path / "d.jsonl"
    lines = TINY_DATA.read_bytes().splitlines(keepends=True)[:4]
    data.write_bytes(lines[0] + lines[1] + b'{"question": "caf\xe9 au lait?"}\n' + lines[3])
    return data


def test_run_refuses_a_data_file_that_is_not_utf8_at_its_line(tmp_path):
    data = _bad_utf8(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(good(data))
    proc, wall = cgd("run", str(recipe), "--until", "data", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert_refused(proc, wall, f"error: {data}:3: ", r"not UTF-8")


@pytest.mark.parametrize("kind", ["folder", "absent"])
def test_run_refuses_a_data_path_that_is_a_folder_or_absent(tmp_path, kind):
    data = tmp_path / "d.jsonl"
    if kind == "folder":
        data.mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(good(data))
    proc, wall = cgd("run", str(recipe), "--until", "data", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert_refused(proc, wall, "error: ", re.escape(str(recipe)) + "|" + re.escape(str(data)))


@pytest.mark.parametrize("kind", ["not utf-8", "folder"])
def test_plan_refuses_a_data_file_that_is_not_utf8_or_a_folder(tmp_path, kind):
    if kind == "folder":
        data = tmp_path / "d.jsonl"
        data.mkdir()
        where, pattern = f"error: {data}", r"folder"
    else:
        data = _bad_utf8(tmp_path)
        where, pattern = f"error: {data}:3: ", r"not UTF-8"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(good(data))
    proc, wall = cgd("plan", str(recipe), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert_refused(proc, wall, where, pattern)


def test_a_data_path_holding_rich_markup_is_printed_not_parsed(tmp_path):
    folder = tmp_path / "d[" / "b][bold"  # the path reads .../d[/b][bold/d.jsonl
    folder.mkdir(parents=True)
    assert "[/b]" in str(folder)
    data = folder / "d.jsonl"
    data.write_text('{"question": "What is 2 + 2?", "answer": "4"}\n{"answer": "no question"}\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(good(data))
    proc, _ = cgd("run", str(recipe), "--until", "data", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]
    assert f"first at {data}:2" in out.replace("\n", "")


def test_a_runs_path_holding_rich_markup_does_not_crash(tmp_path):
    recipe = tmp_path / "r[" / "b].yaml"  # the path reads .../r[/b].yaml
    recipe.parent.mkdir()
    recipe.write_text(good())
    proc, _ = cgd("validate", str(recipe), cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    proc, _ = cgd("run", str(recipe), "--until", "data", "--runs-dir", str(tmp_path / "runs[/b]"), cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]


# --- matrix member names and the leaderboard --------------------------------------------------------------------

MATRIX_VALUES = ["meta-llama/Llama-3.3-70B-Instruct", "../../escaped", "meta-llama_Llama-3.3-70B-Instruct",
                 "oracle"]


def _fake_results(run_dir: Path, model: str) -> None:
    row = {"benchmark": "tiny_arith", "metric": "exact_match", "value": 0.5, "variant": "cgd", "seed": 0,
           "model": model, "model_hash": f"h-{model}", "primary": True}
    (run_dir / "results.jsonl").write_text(json.dumps(row) + "\n")


def test_matrix_members_get_safe_distinct_run_folders_and_all_reach_the_leaderboard(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    runs = work / "runs"
    recipe = work / "mx.yaml"
    recipe.write_text(good() .replace("name: t", "name: mx")
                      + "matrix:\n  teacher.model: " + json.dumps(MATRIX_VALUES) + "\n")
    proc, _ = cgd("run", str(recipe), "--until", "data", "--runs-dir", str(runs), cwd=work)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    found = sorted(p.parent for p in tmp_path.rglob("run.json"))
    assert len(found) == len(MATRIX_VALUES), found
    names = [d.name for d in found]
    assert all(d.parent == runs for d in found), found  # directly inside the runs folder, none outside it
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"mx__model=[A-Za-z0-9._=,+-]+", n) and ".." not in n and len(n) <= 160 for n in names)
    assert "mx__model=oracle" in names  # a value that was already safe keeps its name
    assert "mx__model=meta-llama_Llama-3.3-70B-Instruct" in names  # and is not taken by a value that slugs to it
    recorded = {json.loads((d / "run.json").read_text())["recipe"] for d in found}
    assert recorded == set(names)

    for d in found:
        _fake_results(d, f"/models/{d.name}")
    proc, _ = cgd("leaderboard", "--runs-dir", str(runs), "--format", "json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    board = json.loads(proc.stdout)
    assert sorted(e["recipe"] for e in board["entries"]) == sorted(names)


def test_the_leaderboard_lists_a_member_an_older_harness_nested(tmp_path):
    """Runs written before safe names: `runs/mx__model=meta-llama/Llama-3.3-70B-Instruct/run.json`."""
    runs = tmp_path / "runs"
    for name in ("mx__model=meta-llama/Llama-3.3-70B-Instruct", "mx__model=oracle"):
        d = runs / name
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps({"recipe": name, "recipe_config": {"student": {"model": "tiny"}}}))
        _fake_results(d, f"/models/{name}")
    for store in ("stages/data-0123", "evals/abc", "cache"):
        (runs / store).mkdir(parents=True)
    proc, _ = cgd("leaderboard", "--runs-dir", str(runs), "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(e["recipe"] for e in json.loads(proc.stdout)["entries"]) == [
        "mx__model=meta-llama/Llama-3.3-70B-Instruct", "mx__model=oracle"]
