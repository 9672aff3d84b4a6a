"""`cgd run --until refine` over 500 prompts against real local HTTP servers speaking the Anthropic and OpenAI
schemas, 30% of teacher requests failing (429 + retry-after, 500, hangs past the timeout, dropped connections,
malformed bodies, answers without a verdict or cut off), SIGKILLs in the middle of a teacher stage, and the API key
kept out of everything written. The student is served too (openai_compat on a second, fault-free server)."""

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

from harness.llm.base import ChatRequest
from harness.llm.remote import anthropic_message_params, openai_chat_params
from harness.paths import PROJECT_ROOT
from tests.fakes.provider import FakeProvider, FaultPlan, digest
from tests.helpers.data import write_prompts

CGD = [sys.executable, "-m", "harness.cli"]
KEY_ENV = "CGD_E2E_TEACHER_KEY"
KEY = "sk-e2e-DO-NOT-LEAK-5f1c9a77d2"
MODELS = {"anthropic": "claude-haiku-4-5", "openai": "gpt-4.1-mini"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("data") / "prompts.jsonl", 500, seed=11)


@pytest.fixture(scope="module")
def student_server():
    with FakeProvider(record_log=False) as server:
        yield server


def write_recipe(folder: Path, data: Path, student_url: str, teacher_url: str, provider: str, *, concurrency: int = 32,
                 timeout_s: float = 1.0, extra: str = "", max_failed: float = 0) -> Path:
    base = teacher_url if provider == "anthropic" else f"{teacher_url}/v1"
    path = folder / f"{provider}.yaml"
    path.write_text(f"""\
name: e2e-{provider}
data: {{path: {data}, prompt_field: question, answer_field: answer, id_field: id}}
student: {{model: student, backend: openai_compat, base_url: "{student_url}/v1", max_concurrency: 32,
          generation: {{max_tokens: 64}}}}
teacher:
  provider: {provider}
  model: {MODELS[provider]}
  api_key_env: {KEY_ENV}
  base_url: "{base}"
  max_concurrency: {concurrency}
  timeout_s: {timeout_s}
  max_retries: 3
  max_failed: {max_failed}
  retry_backoff_s: 0.02
  retry_max_backoff_s: 0.05
  generation: {{max_tokens: 256}}
{extra}critique: {{style: paper}}
variants: [base, cgd]
eval: {{suites: [tiny]}}
""")
    return path


def cgd(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CGD, *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
                          env={**os.environ, KEY_ENV: KEY, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"cgd {' '.join(args)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def stage_records(runs: Path, kind: str) -> list[dict]:
    [path] = (runs / "stages").glob(f"{kind}-*/records.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def stage_info(runs: Path, kind: str) -> dict:
    [path] = (runs / "stages").glob(f"{kind}-*/done.json")
    return json.loads(path.read_text())["info"]


def assert_no_key_anywhere(runs: Path, *texts: str) -> None:
    for path in runs.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    for text in texts:
        assert KEY not in text


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_critique_and_refine_over_500_prompts_with_30_percent_failures(tmp_path, data, student_server, provider):
    faults = FaultPlan(rate=0.3, unrecoverable=0.1, hang_s=2.0, seed=3)
    with FakeProvider(faults=faults) as teacher:
        # The unrecoverable 10% of the faulty 30% stay failed: allowed here (max_failed), so the stages end done.
        recipe = write_recipe(tmp_path, data, student_server.url, teacher.url, provider, max_failed=0.2)
        runs = tmp_path / "runs"
        proc = cgd("run", str(recipe), "--until", "refine", "--runs-dir", str(runs), "--json")
        received = dict(teacher.stats.received)
        assert KEY in teacher.stats.auth  # the key was really sent ...
    assert_no_key_anywhere(runs, proc.stdout, proc.stderr)  # ... and never written
    summary = json.loads(proc.stdout)
    assert summary["stages"]["refine"]["status"] == "done"
    critique, refine = stage_records(runs, "critique"), stage_records(runs, "refine")
    assert sorted(r["id"] for r in critique) == [f"q{i:03d}" for i in range(500)]  # every record, once
    ok = [r for r in critique if r["status"] == "ok"]
    failed = [r for r in critique if r["status"] == "failed"]
    assert len(ok) + len(failed) == 500 and all(r["verdict"] in ("right", "wrong") for r in ok)
    assert sorted(r["id"] for r in refine) == sorted(r["id"] for r in ok)
    info = stage_info(runs, "critique")
    assert info["retries"] > 50
    # The unrecoverable ones are listed with their reasons, in the records and in the stage's info.
    assert {f["id"]: f["reason"] for f in info["failures"]} == {r["id"]: r["error"] for r in failed}
    for rec in failed:
        assert "gave up after 4 tries" in rec["error"] or rec["error"].startswith("malformed after 3 tries"), rec
    always = [d for d in received if (f := faults.fault_for(d)) and f.times == -1 and f.kind != "bad_output"]
    assert 0 < len([r for r in failed + [r for r in refine if r["status"] == "failed"]
                    if "gave up" in r["error"]]) == len(always)
    assert sum(r["status"] == "ok" for r in refine) >= len(ok) - 30
    assert all(r["refined_correct"] for r in refine if r["status"] == "ok")  # verified with the shared grader


def _journal_lines(runs: Path, kind: str) -> int:
    found = list((runs / "stages").glob(f"{kind}-*/journal.jsonl"))
    return sum(1 for _ in found[0].open()) if found else 0


def _cached_digests(runs: Path, provider: str) -> set[str]:
    """The HTTP bodies of every request whose answer is in the request cache (rebuilt exactly as sent)."""
    build = anthropic_message_params if provider == "anthropic" else openai_chat_params
    with sqlite3.connect(runs / "cache" / "requests.sqlite") as db:
        rows = db.execute("SELECT model, request FROM responses WHERE backend = ?", (provider,)).fetchall()
    return {digest(build(model, ChatRequest.from_payload(json.loads(req)))) for model, req in rows}


def test_sigkill_at_several_points_then_resume_equals_a_clean_run(tmp_path, data, student_server):
    provider = "openai"
    faults = FaultPlan(rate=0.3, unrecoverable=0.1, hang_s=1.5, seed=5)
    runs = tmp_path / "killed"
    with FakeProvider(faults=faults, latency_s=0.03) as teacher:
        recipe = write_recipe(tmp_path, data, student_server.url, teacher.url, provider, concurrency=8,
                              timeout_s=0.75, max_failed=0.2)
        cgd("run", str(recipe), "--until", "probe", "--runs-dir", str(runs))
        before: tuple[int, set[str]] | None = None
        for kill_at in (100, 250, 400, None):
            if kill_at is None:
                cgd("run", str(recipe), "--until", "critique", "--runs-dir", str(runs))
            else:
                proc = subprocess.Popen([*CGD, "run", str(recipe), "--until", "critique", "--runs-dir", str(runs)],
                                        cwd=PROJECT_ROOT, env={**os.environ, KEY_ENV: KEY},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                deadline = time.monotonic() + 120
                while _journal_lines(runs, "critique") < kill_at:
                    assert proc.poll() is None, "the stage ended before it could be killed"
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                assert not list((runs / "stages").glob("critique-*/done.json"))
            if before is not None:
                # Nothing whose answer was paid for (in the cache at the kill) was asked for again since.
                mark, paid = before
                resent = {d for _, _, d, what in teacher.stats.log[mark:] if what == "recv"} & paid
                assert not resent, f"{len(resent)} paid requests were sent again after a restart"
            before = (teacher.seq(), _cached_digests(runs, provider))
    clean = tmp_path / "clean"
    clean.mkdir()
    with FakeProvider(faults=faults, latency_s=0.03) as clean_teacher:
        clean_recipe = write_recipe(clean, data, student_server.url, clean_teacher.url, provider, concurrency=8,
                                    timeout_s=0.75, max_failed=0.2)
        cgd("run", str(clean_recipe), "--until", "critique", "--runs-dir", str(clean / "runs"))
    assert stage_records(runs, "critique") == stage_records(clean / "runs", "critique")
    assert stage_records(runs, "probe") == stage_records(clean / "runs", "probe")
    info = stage_info(runs, "critique")
    assert info["from_journal"] >= 400 and info["ok"] + info["failed"] == 500


def test_user_errors_exit_2_without_a_traceback(tmp_path, data, student_server):
    recipe = write_recipe(tmp_path, data, student_server.url, "http://127.0.0.1:9", "anthropic")
    proc = cgd("run", str(recipe), "--until", "critique", "--runs-dir", str(tmp_path / "r"), check=False,
               env={KEY_ENV: ""})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"environment variable {KEY_ENV}" in proc.stderr
    bad = recipe.read_text().replace("provider: anthropic", "provider: antropic")
    recipe.write_text(bad)
    proc = cgd("run", str(recipe), "--until", "critique", "--runs-dir", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown teacher provider 'antropic'; available:" in proc.stderr
    recipe.write_text(bad.replace("provider: antropic", "provider: openai-compatible").replace(
        "  max_retries: 3\n", "  max_retries: 3\n  batch: true\n"))
    proc = cgd("validate", str(recipe), check=False)
    assert proc.returncode == 2 and "has no batch API" in proc.stderr and "Traceback" not in proc.stderr


def test_a_killed_batch_run_collects_its_batch_instead_of_paying_again(tmp_path, data, student_server):
    with FakeProvider(hold_batches=True) as teacher:
        recipe = write_recipe(tmp_path, data, student_server.url, teacher.url, "anthropic",
                              extra="  batch: true\n  batch_poll_s: 0.05\n")
        runs = tmp_path / "runs"
        args = ["run", str(recipe), "--until", "critique", "--runs-dir", str(runs), "--set", "data.limit=60"]
        proc = subprocess.Popen([*CGD, *args], cwd=PROJECT_ROOT, env={**os.environ, KEY_ENV: KEY},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while teacher.stats.batches_created == 0 or not _submitted(runs):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # a few polls of the batch in progress
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        teacher.hold_batches = False  # the provider finishes the batch while nobody is running
        out = json.loads(cgd(*args, "--json").stdout)
        assert teacher.stats.batches_created == 1  # collected after the restart, not submitted again
        assert max(teacher.stats.batch_items.values()) == 1
    assert out["stages"]["critique"]["records"] == 60
    assert all(r["status"] == "ok" for r in stage_records(runs, "critique"))
    info = stage_info(runs, "critique")
    assert info["sent"] == 0 and info["cost_usd"] > 0  # this run only collected what the first one paid for


def _submitted(runs: Path) -> bool:
    path = runs / "cache" / "requests.sqlite"
    if not path.exists():
        return False
    try:
        with sqlite3.connect(path) as db:
            return bool(db.execute("SELECT COUNT(*) FROM batches WHERE state = 'submitted'").fetchone()[0])
    except sqlite3.OperationalError:
        return False


def test_plan_estimates_the_teacher_cost_before_sending_anything(tmp_path, data, student_server):
    with FakeProvider() as teacher:
        recipe = write_recipe(tmp_path, data, student_server.url, teacher.url, "anthropic")
        runs = str(tmp_path / "runs")
        direct = json.loads(cgd("plan", str(recipe), "--runs-dir", runs, "--json").stdout)
        batch = json.loads(cgd("plan", str(recipe), "--runs-dir", runs, "--json", "--set", "teacher.batch=true").stdout)
        assert not teacher.stats.received and teacher.stats.batches_created == 0
    rows = {r["stage"]: r for r in direct["stages"]}
    assert rows["critique"]["requests"] == 500 and rows["critique"]["est_cost_usd"] > 0
    assert rows["refine"]["est_cost_usd"] > 0
    assert batch["estimated_cost_usd"] == pytest.approx(direct["estimated_cost_usd"] / 2, rel=0.01)
