"""The run store: journals survive torn writes, outputs are atomic, locks exclude, the cache keys on what is sent."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from harness.errors import HarnessError
from harness.store import Journal, RequestCache, RunStore, StageLocked, atomic_write_text, file_lock, fingerprint


def test_fingerprint_ignores_key_order_but_not_values():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_journal_ignores_and_repairs_a_torn_last_line(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")
    journal.append([{"id": "a"}, {"id": "b"}])
    with journal.path.open("a") as handle:  # a kill in the middle of a write
        handle.write('{"id": "c", "te')
    assert [r["id"] for r in journal.read()] == ["a", "b"]
    journal.append([{"id": "d"}])
    assert [r["id"] for r in journal.read()] == ["a", "b", "d"]


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "out" / "x.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def _hold_lock(path, ready):
    with file_lock(path, "test"):
        ready.set()
        time.sleep(3)


def test_lock_excludes_a_second_process(tmp_path):
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_hold_lock, args=(tmp_path / "l.lock", ready))
    proc.start()
    try:
        assert ready.wait(10)
        with pytest.raises(StageLocked, match="locked by pid"), file_lock(tmp_path / "l.lock", "test"):
            pass
    finally:
        proc.kill()
        proc.join()
    with file_lock(tmp_path / "l.lock", "test"):  # a killed holder releases the lock
        pass


def test_request_cache_round_trip_and_persistence(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    request = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.0}
    key = cache.key("oracle", "m", request)
    assert cache.get(key) is None
    cache.put(key, "oracle", "m", request, {"texts": ["hello"]})
    cache.close()
    again = RequestCache(tmp_path / "c.sqlite")
    assert again.get(key) == {"texts": ["hello"]}
    assert again.key("oracle", "m", {**request, "temperature": 0.5}) != key
    assert again.key("openai", "m", request) != key


def test_stage_dir_manifest_is_the_commit_point(tmp_path):
    stage = RunStore(tmp_path).stage("probe", "ab" * 32)
    assert not stage.is_done()
    stage.finish([{"id": "1"}], {"info": {"x": 1}})
    assert stage.is_done()
    assert stage.read_records() == [{"id": "1"}]
    assert stage.manifest()["records"] == 1


def test_a_torn_line_longer_than_the_tail_block_is_cut_back_to_the_last_newline(tmp_path, monkeypatch):
    import harness.store as store

    monkeypatch.setattr(store, "TAIL_BLOCK", 16)  # the scan back crosses several blocks
    journal = Journal(tmp_path / "j.jsonl")
    journal.append([{"id": "a", "text": "x" * 40}])
    with journal.path.open("a") as handle:
        handle.write('{"id": "torn", "text": "' + "y" * 100)
    journal.append([{"id": "b"}])
    assert [r["id"] for r in journal.read()] == ["a", "b"]
    only_torn = Journal(tmp_path / "k.jsonl")
    only_torn.path.write_text('{"id": "torn", "te')  # nothing complete before the tear
    only_torn.append([{"id": "c"}])
    assert only_torn.path.read_text() == '{"id": "c"}\n'


def test_a_damaged_journal_line_before_the_end_is_a_located_error(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")
    journal.append([{"id": "a"}, {"id": "b"}])
    lines = journal.path.read_text().splitlines(keepends=True)
    journal.path.write_text(lines[0] + "garbage\n" + lines[1])
    with pytest.raises(HarnessError, match=r"j.jsonl:2: damaged journal line"):
        journal.read()


def test_a_garbage_request_cache_is_a_located_error(tmp_path):
    path = tmp_path / "requests.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HarnessError, match=r"requests.sqlite: not a readable request cache"):
        RequestCache(path)
