"""The back-ends and the request runner against a real local HTTP server speaking the providers' schemas
(tests/fakes/provider.py): retries through every kind of failure, retry-after, rate limits, the running budget
gate, fatal errors, and both batch APIs including a batch resumed after a kill. In-process and fast."""

from __future__ import annotations

import asyncio
import io
import time
from types import SimpleNamespace

import pytest
from rich.console import Console

from harness.errors import HarnessError
from harness.llm import ChatRequest, ChatResult, SendPolicy, make_backend
from harness.llm.base import Backend
from harness.llm.limits import RateLimiter
from harness.llm.remote import AnthropicBackend, OpenAIBackend, OpenAICompatBackend, retry_after
from harness.pricing import Price, price_for
from harness.stages.base import StageContext
from harness.stages.critique import _parse as parse_critique
from harness.stages.generation import GenerationJob, run_generation
from harness.store import RunStore
from harness.tiny.problems import generate
from tests.fakes.provider import FakeProvider, Fault, FaultPlan, digest

KEY_ENV = "CGD_TEST_PROVIDER_KEY"
KEY = "sk-test-unit-0123456789"
FAST = SendPolicy(max_concurrency=32, max_retries=3, retry_backoff_s=0.01, retry_max_backoff_s=0.05, timeout_s=0.5)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def _problems(n: int, seed: int = 7) -> list[dict]:
    return [{"id": f"p{i}", "prompt": p.question, "draft": p.solution, "reference": p.solution}
            for i, p in enumerate(generate(n, seed=seed))]


def _critique_request(rec: dict) -> ChatRequest:
    return ChatRequest.build([{"role": "system", "content": "Critique, then end with 'Conclusion: right|wrong'."},
                              {"role": "user", "content": f"Question: {rec['prompt']}\n\nStudent's Answer: "
                                                          f"{rec['draft']}"}], max_tokens=256)


def _ctx(store: RunStore, name: str = "critique") -> StageContext:
    return StageContext(name, {}, {}, store.stage(name, name.ljust(64, "0")), store, Console(file=io.StringIO()), None)


def _backend(kind: str, url: str, policy: SendPolicy = FAST, model: str = "claude-haiku-4-5") -> Backend:
    if kind == "anthropic":
        return AnthropicBackend(model, base_url=url, api_key_env=KEY_ENV, policy=policy)
    if kind == "openai":
        return OpenAIBackend(model, base_url=f"{url}/v1", api_key_env=KEY_ENV, policy=policy)
    return OpenAICompatBackend(model, base_url=f"{url}/v1", api_key_env=None, policy=policy)


def _job(backend: Backend, kind: str, **kw) -> GenerationJob:
    return GenerationJob(backend=backend, backend_name=kind, price=price_for(kind, "claude-haiku-4-5"),
                         build=_critique_request, parse=parse_critique, **kw)


async def _closing(backend: Backend, coro):
    try:
        return await coro
    finally:
        await backend.aclose()


def _settled(server: FakeProvider, quiet_s: float = 0.3, limit_s: float = 5.0) -> dict[str, int]:
    """The server's arrival counts once they stop changing: on a loaded box a try the client already gave up on
    (timed out while still in the accept queue) is read by a handler thread a moment after the stage returns."""
    deadline = time.monotonic() + limit_s
    last = dict(server.stats.received)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = dict(server.stats.received)
        if now == last:
            return now
        last = now
    return last


def _ok(out: list[dict]) -> int:
    return sum(r["status"] == "ok" for r in out)


# --- retries through every failure ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,transport", [("anthropic", "auto"), ("openai", "auto"), ("openai_compat", "auto"),
                                            ("openai", "httpx"), ("anthropic", "httpx")])
def test_every_failure_kind_is_retried_and_the_unrecoverable_ones_are_listed(tmp_path, monkeypatch, kind, transport):
    """auto: the SDKs' aiohttp transport (aiohttp is installed); httpx: their default one."""
    monkeypatch.setenv("CGD_HTTP_TRANSPORT", transport)
    faults = FaultPlan(rate=0.6, unrecoverable=0.15, hang_s=1.0)
    records = _problems(60)
    with FakeProvider(faults=faults) as server:
        out, stats = run_generation(_ctx(RunStore(tmp_path)), records, _job(_backend(kind, server.url), kind), "t")
        received = _settled(server)
    assert [r["id"] for r in out] == [r["id"] for r in records]  # every record, once, in order
    assert stats["retries"] > 0 and stats["ok"] + stats["failed"] == len(records)
    planned = {k: faults.fault_for(k) for k in received}
    for rec in out:
        if rec["status"] == "ok":
            assert rec["verdict"] == "right" and "Conclusion" in rec["critique"]
            continue
        # failed: with the reason, and only when the fault plan made every try fail
        assert rec["error"]
        if rec["error"].startswith("malformed after"):
            assert "no 'Conclusion: right|wrong' line" in rec["error"]
        else:
            assert "gave up after 4 tries" in rec["error"], rec["error"]
    unrecoverable = [k for k, f in planned.items() if f is not None and f.times == -1 and f.kind != "bad_output"]
    http_failures = [r for r in out if r["status"] == "failed" and not r["error"].startswith("malformed after")]
    assert len(http_failures) == len(unrecoverable)
    assert all(received[k] == 4 for k in unrecoverable)  # 1 try + max_retries, then listed as failed
    recoverable = [k for k, f in planned.items() if f is not None and f.times > 0 and f.kind != "bad_output"]
    # (>=: on a loaded machine a slow answer may also time out once)
    assert recoverable and all(received[k] >= planned[k].times + 1 for k in recoverable)
    assert {f["reason"] for f in stats["failures"]} == {r["error"] for r in out if r["status"] == "failed"}


def test_retry_after_is_honoured_and_pauses_every_sender(tmp_path):
    faults = FaultPlan(rate=1.0, kinds=("429",), unrecoverable=0.0, retry_after_s=0.4)
    with FakeProvider(faults=faults) as server:
        backend = _backend("openai_compat", server.url, SendPolicy(max_concurrency=4, max_retries=3,
                                                                   retry_backoff_s=0.01, retry_max_backoff_s=0.01))
        start = time.monotonic()
        out, stats = run_generation(_ctx(RunStore(tmp_path)), _problems(4), _job(backend, "openai_compat"), "t")
        elapsed = time.monotonic() - start
    assert _ok(out) == 4
    assert elapsed >= 0.4  # the backoff would have been 10 ms; the server asked for 400
    assert retry_after({"retry-after-ms": "250"}) == 0.25 and retry_after({"retry-after": "2"}) == 2.0


def test_rate_limits_space_the_requests_out():
    async def go() -> float:
        limiter = RateLimiter(requests_per_minute=600)  # 10/s, a burst of 10
        start = time.monotonic()
        for _ in range(25):
            await limiter.acquire(10)
        return time.monotonic() - start

    assert 1.3 < asyncio.run(go()) < 3.0

    async def tokens() -> float:
        limiter = RateLimiter(tokens_per_minute=60_000)  # 1000 tokens/s
        start = time.monotonic()
        for _ in range(4):
            await limiter.acquire(500)
        return time.monotonic() - start

    assert 0.8 < asyncio.run(tokens()) < 2.0


def test_a_bad_key_stops_the_stage_with_a_harness_error_and_keeps_nothing_secret(tmp_path, monkeypatch):
    with FakeProvider(require_key="the-right-key") as server:
        with pytest.raises(HarnessError, match=r"refused the request.*401"):
            run_generation(_ctx(RunStore(tmp_path)), _problems(5), _job(_backend("anthropic", server.url),
                                                                         "anthropic"), "t")
        assert len(server.stats.received) == 0  # refused at the door, never retried
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(HarnessError, match=KEY_ENV):
        _backend("anthropic", "http://127.0.0.1:9")
    spec = SimpleNamespace(base_url=None, api_key_env=None, max_concurrency=1)
    with pytest.raises(HarnessError, match="unknown back-end 'opneai'; available: .*openai"):
        make_backend("opneai", spec, "m")


# --- cost --------------------------------------------------------------------------------------------------------

class Expensive(Backend):
    """Every answer really costs about its worst case."""

    name = "expensive"

    def __init__(self) -> None:
        super().__init__("m", max_concurrency=2)
        self.calls = 0

    async def complete(self, request: ChatRequest) -> ChatResult:
        self.calls += 1
        await asyncio.sleep(0.01)
        return ChatResult(texts=["fine. Conclusion: right"], input_tokens=request.estimated_input_tokens(),
                          output_tokens=request.max_tokens - 10)


def test_the_budget_stops_before_it_is_passed_and_keeps_what_finished(tmp_path):
    price = Price(1.0, 2.0)
    records = _problems(6)
    worst = price.cost(*_critique_request(records[0]).worst_case_tokens())
    backend = Expensive()
    job = GenerationJob(backend=backend, backend_name="expensive", price=price, build=_critique_request,
                        parse=parse_critique, budget_usd=2.5 * worst)
    store = RunStore(tmp_path)
    out, stats = run_generation(_ctx(store), records, job, "t")
    assert backend.calls == 2  # a third would have passed the budget at its worst case
    assert [r["status"] for r in out] == ["ok", "ok", "unsent", "unsent", "unsent", "unsent"]
    assert stats["unsent"] == 4 and stats["cost_usd"] <= 2.5 * worst
    # spend is remembered across runs: the same budget allows nothing more
    again = Expensive()
    out, stats = run_generation(_ctx(store), records, GenerationJob(
        backend=again, backend_name="expensive", price=price, build=_critique_request, parse=parse_critique,
        budget_usd=2.5 * worst), "t")
    assert again.calls == 0 and stats["from_journal"] == 2 and stats["unsent"] == 4


def test_prices_count_cached_and_batch_tokens():
    p = price_for("anthropic", "claude-sonnet-4-5-20250929")
    assert p.cost(1_000_000, 0) == pytest.approx(3.0)
    assert p.cost(1_000_000, 0, cached_input_tokens=1_000_000) == pytest.approx(0.3)
    assert p.cost(1_000_000, 0, cache_write_tokens=1_000_000) == pytest.approx(3.75)
    assert p.cost(0, 1_000_000, batch=True) == pytest.approx(7.5)
    custom = price_for("anthropic", "claude-haiku-4-5", {"input": 1.0, "output": 1.0, "batch_discount": 0.25})
    assert custom.cost(1_000_000, 1_000_000, batch=True) == pytest.approx(0.5)
    assert price_for("vllm", "any").free


def test_anthropic_usage_and_the_cached_system_prompt(tmp_path):
    with FakeProvider() as server:
        backend = _backend("anthropic", server.url)
        rec = _problems(1)[0]
        result = asyncio.run(_closing(backend, backend.complete(_critique_request(rec))))
    # the fake bills the system prompt as a cache read (it carried a cache_control breakpoint)
    assert result.cached_input_tokens > 0 and result.input_tokens > result.cached_input_tokens


# --- batches -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_batch_mode_collects_everything_and_resubmits_only_errored_items(tmp_path, kind):
    faults = FaultPlan(rate=0.3, unrecoverable=0.0, kinds=("500", "bad_output"))
    records = _problems(40)
    with FakeProvider(faults=faults, batch_polls_until_done=2) as server:
        job = _job(_backend(kind, server.url), kind, batch=True, batch_poll_s=0.01)
        out, stats = run_generation(_ctx(RunStore(tmp_path)), records, job, "t")
        created, items = server.stats.batches_created, server.stats.batch_items
    assert [r["id"] for r in out] == [r["id"] for r in records]
    assert _ok(out) == len(records)
    assert 2 <= created <= 5  # the first batch, then batches of errored items and re-asks
    assert max(items.values()) <= 3  # no request was submitted over and over
    assert stats["cost_usd"] == pytest.approx(stats["cost_usd_this_run"]) and stats["cost_usd"] > 0


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_a_batch_submitted_before_a_kill_is_collected_not_paid_again(tmp_path, kind):
    records = _problems(12)
    store = RunStore(tmp_path)
    with FakeProvider() as server:
        backend = _backend(kind, server.url)
        job = _job(backend, kind, batch=True, batch_poll_s=0.01)
        # What a run killed right after submitting leaves behind: the intent row, maybe without the batch id.
        keys = [(store.request_cache.key(kind, backend.model, _critique_request(r).payload()), _critique_request(r))
                for r in records]
        tag = "killed-run-tag"
        created = store.request_cache.batch_intent(tag, kind, backend.model, [(k, q.payload()) for k, q in keys],
                                                   len(keys))
        asyncio.run(_closing(backend, backend.submit_batch(keys, tag)))
        assert server.stats.batches_created == 1
        out, stats = run_generation(_ctx(store), records, _job(_backend(kind, server.url), kind, batch=True,
                                                                batch_poll_s=0.01), "t")
        assert server.stats.batches_created == 1  # found by its tag (openai) or count and time (anthropic)
        assert _ok(out) == len(records)
        assert store.request_cache.open_batches(kind, backend.model) == []
        assert created > 0 and job


def test_fault_plan_is_a_function_of_the_payload():
    plan = FaultPlan(rate=0.3, seed=1)
    d = digest({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert plan.fault_for(d) == plan.fault_for(d)
    share = sum(plan.fault_for(digest({"i": i})) is not None for i in range(2000)) / 2000
    assert 0.25 < share < 0.35
    assert Fault("500", 1).times == 1
