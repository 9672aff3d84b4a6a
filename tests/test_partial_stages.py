"""A stage that ends with failed records is partial, never done: `cgd run` exits 1 naming what failed, nothing
downstream of it runs, and the next run sends only the failed and missing requests (the fake provider counts)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fakes.provider import FakeProvider, FaultPlan
from tests.helpers.data import write_prompts
from tests.test_backends_e2e import cgd, stage_records, write_recipe


def _partial(runs: Path, kind: str) -> dict:
    [path] = (runs / "stages").glob(f"{kind}-*/partial.json")
    return json.loads(path.read_text())


def _ok_payloads(server: FakeProvider) -> set[str]:
    return {d for d, n in server.stats.ok.items() if n}


def test_outage_leaves_critique_partial_and_the_rerun_sends_only_the_failed_work(tmp_path):
    data = write_prompts(tmp_path / "prompts.jsonl", 60, seed=5)
    runs = tmp_path / "runs"
    outage = FaultPlan(rate=0.3, unrecoverable=1.0, kinds=("500",), seed=7)  # 30% fail through every retry
    with FakeProvider(record_log=False) as student, FakeProvider(faults=outage) as teacher:
        recipe = write_recipe(tmp_path, data, student.url, teacher.url, "openai")
        first = cgd("run", str(recipe), "--until", "refine", "--runs-dir", str(runs), "--json", check=False)
        first_ok = _ok_payloads(teacher)
        failed_payloads = {d for d in teacher.stats.received if d not in first_ok}
    assert first.returncode == 1, first.stderr[-2000:]
    assert "partial" in first.stderr and "failed" in first.stderr
    assert not list((runs / "stages").glob("critique-*/done.json")), "a stage with failed records was marked done"
    marker = _partial(runs, "critique")
    assert 0 < marker["failed"] < 60 and marker["ok"] + marker["failed"] == 60
    assert not list((runs / "stages").glob("refine-*/done.json"))  # blocked behind the partial stage
    assert len(failed_payloads) == marker["failed"]

    with FakeProvider(record_log=False) as student, FakeProvider() as teacher:  # the outage is over
        recipe = write_recipe(tmp_path, data, student.url, teacher.url, "openai")
        second = cgd("run", str(recipe), "--until", "refine", "--runs-dir", str(runs), "--json")
        resent = set(teacher.stats.received)
    assert json.loads(second.stdout)["stages"]["critique"]["status"] == "done"
    assert not resent & first_ok, "a request that had succeeded was sent again"
    critiques = stage_records(runs, "critique")
    refine = stage_records(runs, "refine")
    assert len(critiques) == 60 and all(r["status"] == "ok" for r in critiques)
    assert len(refine) == 60 and all(r["status"] == "ok" for r in refine)
    # The second run's teacher traffic is the failed critiques plus every refinement, nothing else.
    assert failed_payloads <= resent and len(resent) == len(failed_payloads) + 60
    assert not list((runs / "stages").glob("critique-*/partial.json"))


def test_max_failed_lets_a_stage_end_done_with_its_failures_counted(tmp_path):
    data = write_prompts(tmp_path / "prompts.jsonl", 40, seed=6)
    runs = tmp_path / "runs"
    outage = FaultPlan(rate=0.2, unrecoverable=1.0, kinds=("500",), seed=2)
    with FakeProvider(record_log=False) as student, FakeProvider(faults=outage) as teacher:
        recipe = write_recipe(tmp_path, data, student.url, teacher.url, "openai")
        strict = cgd("run", str(recipe), "--until", "critique", "--runs-dir", str(runs), check=False)
        loose = cgd("run", str(recipe), "--until", "critique", "--runs-dir", str(runs), "--json",
                    "--set", "teacher.max_failed=0.5")
    assert strict.returncode == 1
    assert json.loads(loose.stdout)["stages"]["critique"]["status"] == "done"
    [done] = (runs / "stages").glob("critique-*/done.json")
    info = json.loads(done.read_text())["info"]
    assert info["failed"] > 0 and info["ok"] + info["failed"] == 40


def test_a_damaged_records_file_is_rebuilt_from_the_journal_not_consumed(tmp_path):
    data = write_prompts(tmp_path / "prompts.jsonl", 30, seed=8)
    runs = tmp_path / "runs"
    with FakeProvider(record_log=False) as student, FakeProvider() as teacher:
        recipe = write_recipe(tmp_path, data, student.url, teacher.url, "openai")
        cgd("run", str(recipe), "--until", "probe", "--runs-dir", str(runs))
        [records] = (runs / "stages").glob("probe-*/records.jsonl")
        lines = records.read_text().splitlines(keepends=True)
        for damage in ("cut", "empty", "deleted"):
            if damage == "cut":
                records.write_text("".join(lines[:15]))  # cut at a line boundary: still valid JSONL
            elif damage == "empty":
                records.write_text("")
            else:
                records.unlink()
            sent = sum(student.stats.received.values())
            proc = cgd("run", str(recipe), "--until", "critique", "--runs-dir", str(runs))
            assert "rebuilding it" in proc.stdout, damage
            assert sum(student.stats.received.values()) == sent, "the rebuild sent drafts again"
            assert records.read_text().splitlines(keepends=True) == lines, damage
            assert len(stage_records(runs, "critique")) == 30
