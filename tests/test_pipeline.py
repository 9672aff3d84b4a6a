"""The spine through `cgd run --until export`: datasets per variant, a matrix that shares its prefix, resume after
SIGKILL with nothing paid twice. Student: a random tiny model (drafts are garbage, which is fine here); teacher:
the oracle."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.paths import PROJECT_ROOT
from tests.helpers.tiny_model import build_random_tiny_model

CGD = [sys.executable, "-m", "harness.cli"]
TRAIN_DATA = PROJECT_ROOT / "data" / "tiny" / "train.jsonl"


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return build_random_tiny_model(tmp_path_factory.mktemp("student") / "model")


def write_recipe(folder: Path, student: Path, *, name: str = "t", limit: int = 24, variants: str = "[base, sft, "
                 "distilled_sft, cft, cgd]", extra: str = "", concurrency: int = 16) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"""\
name: {name}
seed: 0
data: {{source: jsonl, path: {TRAIN_DATA}, prompt_field: question, answer_field: answer, limit: {limit}}}
student: {{model: {student}, backend: hf, batch_size: 4, generation: {{temperature: 0.0, max_tokens: 24}}}}
teacher: {{provider: oracle, model: oracle, max_concurrency: {concurrency}, generation: {{max_tokens: 512}}}}
critique: {{style: paper, specificity: specific}}
variants: {variants}
train: {{method: full, learning_rate: 1.0e-3, epochs: 1, global_batch_size: 4, sequence_len: 1024}}
eval: {{suites: [tiny]}}
{extra}""")
    return path


def cgd(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CGD, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          cwd=PROJECT_ROOT, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"cgd {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_until_export_writes_every_dataset_with_the_triplet_masked(tmp_path, student):
    recipe = write_recipe(tmp_path, student)
    proc = cgd("run", str(recipe), "--until", "export", "--json", "--runs-dir", str(tmp_path / "runs"))
    summary = json.loads(proc.stdout)
    assert set(summary["datasets"]) == {"sft", "distilled_sft", "cft", "cgd"}
    assert summary["stages"]["train:cgd:0"]["status"] == "skipped"
    probe = {r["id"]: r for r in _records(summary, "probe")}
    critique = {r["id"]: r for r in _records(summary, "critique")}
    rows = [json.loads(line) for line in Path(summary["datasets"]["cgd"]).read_text().splitlines()]
    assert len(rows) == 24
    for row in rows:
        user = next(m for m in row["messages"] if m["role"] == "user")["content"]
        rec = critique[row["id"]]
        assert rec["prompt"] in user and probe[row["id"]]["draft"] in user and rec["critique"] in user
        trained = [m for m in row["messages"] if m["training"]]
        assert len(trained) == 1 and trained[0]["role"] == "assistant"
        assert "\\boxed{" in trained[0]["content"]  # the oracle's refined solution
    # inspect shows the same check through Axolotl's tokenization
    shown = cgd("inspect", summary["run_dir"], "--variant", "cgd", "-n", "1")
    assert "all trained spans are exactly the targets" in shown.stdout
    # a second run reuses every stage
    again = json.loads(cgd("run", str(recipe), "--until", "export", "--json", "--runs-dir",
                           str(tmp_path / "runs")).stdout)
    ran = {k: v["status"] for k, v in again["stages"].items() if v["status"] != "skipped"}
    assert set(ran.values()) == {"cached"}


def _records(summary: dict, stage: str) -> list[dict]:
    return [json.loads(line) for line in (Path(summary["stages"][stage]["path"]) / "records.jsonl").read_text()
            .splitlines()]


def test_matrix_over_specificity_probes_once_and_exports_three_cgd_datasets(tmp_path, student):
    recipe = write_recipe(tmp_path, student, name="abl", variants="[base, cgd]",
                          extra="matrix:\n  critique.specificity: [specific, irrelevant, generic]\n")
    runs = str(tmp_path / "runs")
    out = json.loads(cgd("run", str(recipe), "--until", "export", "--json", "--runs-dir", runs).stdout)
    assert len(out["runs"]) == 3
    stages = tmp_path / "runs" / "stages"
    kinds = sorted(p.name.rsplit("-", 1)[0] for p in stages.iterdir())
    assert kinds.count("probe") == 1 and kinds.count("critique") == 1 and kinds.count("refine") == 1
    assert kinds.count("export") == 3
    datasets = [Path(run["datasets"]["cgd"]) for run in out["runs"]]
    assert len({d.read_text() for d in datasets}) == 3
    targets = [[json.loads(line)["messages"][-1]["content"] for line in d.read_text().splitlines()] for d in datasets]
    assert targets[0] == targets[1] == targets[2]  # only the critique in the input differs


def _journal_lines(runs: Path, kind: str) -> int:
    found = list((runs / "stages").glob(f"{kind}-*/journal.jsonl"))
    return sum(1 for _ in found[0].open()) if found else 0


def _kill_when(recipe: Path, runs: Path, kind: str, at_least: int, env: dict) -> None:
    proc = subprocess.Popen([*CGD, "run", str(recipe), "--until", "refine", "--runs-dir", str(runs)], cwd=PROJECT_ROOT,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while _journal_lines(runs, kind) < at_least:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _oracle_cached(runs: Path) -> int:
    with sqlite3.connect(runs / "cache" / "requests.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM responses WHERE backend = 'oracle'").fetchone()[0]


@pytest.mark.parametrize("kill_during", ["probe", "critique"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, student, kill_during):
    n = 40
    recipe = write_recipe(tmp_path, student, limit=n, variants="[base, cgd]", concurrency=4)
    calls = tmp_path / "oracle-calls.log"
    env = {"CGD_ORACLE_LATENCY_S": "0.05", "CGD_ORACLE_CALL_LOG": str(calls)}
    runs = tmp_path / "killed"
    _kill_when(recipe, runs, kind=kill_during, at_least=8, env=env)
    assert not list((runs / "stages").glob(f"{kill_during}-*/done.json"))
    paid_before = _oracle_cached(runs)
    calls_before = calls.read_text().count("\n") if calls.exists() else 0
    cgd("run", str(recipe), "--until", "refine", "--runs-dir", str(runs), env=env)
    calls_after = calls.read_text().count("\n") - calls_before
    # Every teacher request whose response was cached before the kill is never sent again.
    assert calls_after == 2 * n - paid_before
    clean = tmp_path / "clean"
    cgd("run", str(recipe), "--until", "refine", "--runs-dir", str(clean))
    for kind in ("probe", "critique", "refine"):
        [a] = (runs / "stages").glob(f"{kind}-*/records.jsonl")
        [b] = (clean / "stages").glob(f"{kind}-*/records.jsonl")
        assert a.read_text() == b.read_text(), kind
    probe_info = json.loads(next((runs / "stages").glob("probe-*/done.json")).read_text())["info"]
    if kill_during == "probe":
        assert probe_info["from_journal"] >= 8 and probe_info["sent"] <= n - 8
