"""The request runner: cache before journal, failures recorded with reasons, malformed answers re-asked."""

from __future__ import annotations

import io

from rich.console import Console

from harness.llm import Backend, ChatRequest, ChatResult, LLMError
from harness.pricing import Price
from harness.stages.base import StageContext
from harness.stages.generation import GenerationJob, Malformed, run_generation
from harness.store import RunStore


class ScriptedBackend(Backend):
    """Answers by prompt: 'fail' always errors, 'odd' is malformed on the first try, anything else succeeds."""

    name = "scripted"

    def __init__(self) -> None:
        super().__init__("m", max_concurrency=4)
        self.calls: list[tuple[str, int]] = []

    async def complete(self, request: ChatRequest) -> ChatResult:
        prompt = request.messages[-1][1]
        self.calls.append((prompt, request.attempt))
        if prompt.startswith("fail"):
            raise LLMError("HTTP 500 after retries", retryable=True, status=500)
        if prompt.startswith("odd") and request.attempt == 0:
            return ChatResult(texts=["no verdict here"], input_tokens=10, output_tokens=5)
        return ChatResult(texts=[f"answer to {prompt}. Conclusion: right"], input_tokens=10, output_tokens=5)


def _parse(rec, result):
    if "Conclusion" not in result.text:
        raise Malformed("no verdict")
    return {"out": result.text}


def _ctx(store: RunStore, fp: str) -> StageContext:
    return StageContext("critique", {}, {}, store.stage("critique", fp), store, Console(file=io.StringIO()), None)


def _job(backend: Backend, **kw) -> GenerationJob:
    return GenerationJob(backend=backend, backend_name="scripted", price=Price(1.0, 2.0),
                         build=lambda rec: ChatRequest.build([{"role": "user", "content": rec["prompt"]}]),
                         parse=_parse, **kw)


RECORDS = [{"id": f"r{i}", "prompt": p} for i, p in enumerate(["a", "fail-1", "odd", "b", "c"])]


def test_every_record_once_failures_with_reasons_malformed_retried(tmp_path):
    store = RunStore(tmp_path)
    backend = ScriptedBackend()
    out, stats = run_generation(_ctx(store, "1" * 64), RECORDS, _job(backend), "t")
    assert [r["id"] for r in out] == [r["id"] for r in RECORDS]
    by_id = {r["id"]: r for r in out}
    assert by_id["r1"]["status"] == "failed" and "500" in by_id["r1"]["error"]
    assert by_id["r2"]["status"] == "ok" and ("odd", 1) in backend.calls  # re-asked once, then fine
    assert stats["failed"] == 1 and stats["ok"] == 4
    assert stats["failures"] == [{"id": "r1", "reason": by_id["r1"]["error"]}]
    assert stats["cost_usd"] > 0


def test_a_rerun_pays_nothing_twice(tmp_path):
    store = RunStore(tmp_path)
    first = ScriptedBackend()
    run_generation(_ctx(store, "1" * 64), RECORDS, _job(first), "t")
    # Same stage folder: finished records come from the journal; only the failure is tried again.
    again = ScriptedBackend()
    out, stats = run_generation(_ctx(store, "1" * 64), RECORDS, _job(again), "t")
    assert [c[0] for c in again.calls] == ["fail-1"]
    assert stats["from_journal"] == 4
    # A different stage (say a parser fix bumped its version): responses come from the request cache.
    third = ScriptedBackend()
    out, stats = run_generation(_ctx(store, "2" * 64), RECORDS, _job(third), "t")
    assert [c[0] for c in third.calls] == ["fail-1"]
    assert [r["status"] for r in out] == ["ok", "failed", "ok", "ok", "ok"]


def test_malformed_answers_are_bounded_and_never_cached(tmp_path):
    store = RunStore(tmp_path)

    class AlwaysOdd(ScriptedBackend):
        async def complete(self, request):
            self.calls.append((request.messages[-1][1], request.attempt))
            return ChatResult(texts=[""], input_tokens=1, output_tokens=0)

    backend = AlwaysOdd()
    out, stats = run_generation(_ctx(store, "3" * 64), RECORDS[:1], _job(backend, max_malformed_retries=2), "t")
    assert len(backend.calls) == 3
    assert out[0]["status"] == "failed" and "malformed after 3 tries: empty response" in out[0]["error"]
    assert len(store.request_cache) == 0


def test_budget_is_a_running_gate(tmp_path):
    # Worst case per request ~ (est. input x $1 + 512 x $2)/1e6 = ~$0.001, but a real answer costs $0.00002: the gate
    # counts real spend plus the worst case of what is in flight, so a budget of ~2.5 worst cases sends all three.
    # (tests/test_backends.py covers a budget that real costs do exhaust.)
    store = RunStore(tmp_path)
    backend = ScriptedBackend()
    job = _job(backend, budget_usd=0.0025)
    plain = [r for r in RECORDS if r["prompt"] in ("a", "b", "c")]
    out, stats = run_generation(_ctx(store, "4" * 64), plain, job, "t")
    assert stats["unsent"] == 0
    assert len(backend.calls) == 3
    assert [r["status"] for r in out] == ["ok", "ok", "ok"]
    assert stats["cost_usd"] <= 0.0025
