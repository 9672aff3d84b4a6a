"""Run one LLM request per record through a back-end, with the request cache and the stage journal.

Order of commits per request: response -> request cache -> parsed record -> journal (fsynced). A kill anywhere
loses at most work that was not yet committed: a re-run finds paid responses in the cache and finished records
in the journal, and sends only what is missing. Commits are grouped (one SQLite transaction and one fsync for
whatever finished together) in a worker thread, so a stage at hundreds of requests per second does not stall
its event loop on the disk.

Failures never vanish: a request that fails after its retries, or whose answer stays unusable after
`max_malformed_retries` re-asks, comes out as a record with `status: failed` and the reason; one the budget did
not allow comes out as `status: unsent`. Failed records are not journaled, so a re-run tries them again; a stage
left with more failed or unsent records than `max_failed` allows is partial (`raise_if_partial`), never done.

Re-asks are the harness's own filter, not the paper's: with `teacher.reask: false` (the paper recipes) a teacher
job has `max_malformed_retries=0` and `allow_empty`, and its parsers keep verdict-less, cut-off and empty outputs
as generated, flagged on the record and counted by `kept_as_generated`, as the official code does (it has no
retry at all: CapitalOne-Research/Critique-Guided-Distillation, src/cgd_pipeline.py, `VLLMClient.generate`).

Budget: the spend of this stage (kept in `spend.jsonl`, across restarts) plus the worst case of every request in
flight never passes `budget_usd`; the stage keeps sending while real costs leave room.

Batch mode (`teacher.batch`): requests go to the provider's batch API in chunks; each batch is recorded in the
request cache (`batches` table) before and after it is submitted, so a restarted run polls and collects the
batch it already paid for instead of submitting it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.markup import escape

from harness.errors import HarnessError
from harness.llm import Backend, ChatRequest, ChatResult, LLMError, NotSent
from harness.llm.base import BatchBackend, backoff_delay
from harness.llm.server import ServerStartError
from harness.pricing import Price
from harness.progress import StageProgress
from harness.stages.base import Record, StageContext, StageFailed, StagePartial
from harness.store import Journal, RequestCache


class Malformed(ValueError):
    """The response arrived but is unusable (no verdict, empty, cut off); the message says why."""


Parser = Callable[[Record, ChatResult], dict[str, Any]]


@dataclass
class GenerationJob:
    backend: Backend
    backend_name: str
    price: Price
    build: Callable[[Record], ChatRequest]
    parse: Parser
    max_malformed_retries: int = 2
    budget_usd: float | None = None
    budget_key: str = "teacher.budget_usd"  # the recipe key that set budget_usd, named when it is reached
    allow_empty: bool = False  # a student's empty draft is a (bad) answer; a teacher's empty text is a failure
    batch: bool = False
    batch_poll_s: float = 30.0
    batch_max_requests: int = 10000
    max_failed: float = 0  # failures the stage may end with and still be done: < 1 a share, >= 1 a count


def allowed_failures(max_failed: float, total: int) -> int:
    """`max_failed` below 1 is a share of the stage's records, 1 or more a count."""
    return int(max_failed * total) if max_failed < 1 else int(max_failed)


def _bump(request: ChatRequest) -> ChatRequest:
    """A re-ask after a malformed answer: a distinct request (and cache entry), sampled, with a fresh seed."""
    attempt = request.attempt + 1
    return replace(request, attempt=attempt, temperature=max(request.temperature, 0.7),
                   seed=(request.seed or 0) + attempt)


def run_generation(ctx: StageContext, records: list[Record], job: GenerationJob, label: str
                   ) -> tuple[list[Record], dict]:
    """Returns (records in input order, each with status ok|failed|unsent, and stats)."""
    return asyncio.run(_run(ctx, records, job, label))


# --- durable commits -------------------------------------------------------------------------------------------

class Committer:
    """Commits cache rows, journal rows and spend in that order, in a worker thread, grouping what arrives
    together. `flush()` waits until everything added so far is on disk."""

    def __init__(self, cache: RequestCache, journal: Journal, ledger: Path) -> None:
        self.cache = cache
        self.journal = journal
        self.ledger = ledger
        self._buf: list[tuple[tuple | None, Record | None, float]] = []
        self._added = 0
        self._written = 0
        self._wake = asyncio.Event()
        self._wrote = asyncio.Event()
        self._closing = False
        self._error: BaseException | None = None
        self._task: asyncio.Task | None = None

    def add(self, cache_row: tuple | None, journal_row: Record | None, spend: float = 0.0) -> None:
        if self._error is not None:
            raise self._error
        self._buf.append((cache_row, journal_row, spend))
        self._added += 1
        self._wake.set()

    def _write(self, items: list[tuple[tuple | None, Record | None, float]]) -> None:
        rows = [c for c, _, _ in items if c is not None]
        if rows:
            self.cache.put_many(rows)
        self.journal.append([j for _, j, _ in items if j is not None])
        spend = sum(s for _, _, s in items)
        if spend:
            with self.ledger.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"usd": round(spend, 9)}) + "\n")

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            items, self._buf = self._buf, []
            if items:
                try:
                    await asyncio.to_thread(self._write, items)
                except BaseException as exc:  # noqa: BLE001 - surfaced by add/flush
                    self._error = exc
                self._written += len(items)
                self._wrote.set()
            if self._closing and not self._buf:
                return

    async def flush(self) -> None:
        target = self._added
        self._wake.set()
        while self._written < target:
            self._wrote.clear()
            await self._wrote.wait()
        if self._error is not None:
            raise self._error

    async def __aenter__(self) -> Committer:
        self._task = asyncio.ensure_future(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._error is not None and exc[0] is None:
            raise self._error


def read_spend(ledger: Path) -> float:
    if not ledger.exists():
        return 0.0
    total = 0.0
    for line in ledger.read_text(encoding="utf-8").splitlines():
        try:
            total += json.loads(line)["usd"]
        except (ValueError, KeyError):
            break  # a torn last line
    return total


# --- the budget ------------------------------------------------------------------------------------------------

class BudgetGate:
    """Admission by cost: spent + reserved (worst case of what is in flight) + this request's worst case must stay
    within the budget. A request that does not fit waits while others are in flight (their real cost is usually
    far below the worst case); when nothing is in flight and it still does not fit, it is not sent."""

    def __init__(self, budget: float | None, price: Price, spent: float, batch: bool = False) -> None:
        self.budget = budget
        self.price = price
        self.spent = spent
        self.batch = batch
        self.reserved = 0.0
        self.inflight = 0
        self._changed = asyncio.Event()

    def worst(self, request: ChatRequest) -> float:
        tokens_in, tokens_out = request.worst_case_tokens()
        return self.price.cost(tokens_in, tokens_out, batch=self.batch)

    def cost(self, result: ChatResult) -> float:
        return self.price.cost(result.input_tokens, result.output_tokens, result.cached_input_tokens,
                               batch=self.batch, cache_write_tokens=result.cache_write_tokens)

    def try_reserve(self, request: ChatRequest, force: bool = False) -> bool:
        w = self.worst(request)
        if not force and self.budget is not None and self.spent + self.reserved + w > self.budget:
            return False
        self.reserved += w
        self.inflight += 1
        return True

    async def acquire(self, request: ChatRequest) -> bool:
        while not self.try_reserve(request):
            if self.inflight == 0:
                return False
            self._changed.clear()
            await self._changed.wait()
        return True

    def release(self, request: ChatRequest, outcome: ChatResult | Exception) -> None:
        self.reserved = max(0.0, self.reserved - self.worst(request))
        self.inflight -= 1
        if isinstance(outcome, ChatResult):
            self.spent += self.cost(outcome)
        self._changed.set()


# --- the runner ------------------------------------------------------------------------------------------------

Item = tuple[Record, ChatRequest]


class _Runner:
    def __init__(self, ctx: StageContext, job: GenerationJob, progress: StageProgress, committer: Committer,
                 finished: dict[str, Record], gate: BudgetGate) -> None:
        self.ctx = ctx
        self.job = job
        self.cache = ctx.store.request_cache
        self.progress = progress
        self.committer = committer
        self.finished = finished
        self.gate = gate
        self.failed: dict[str, Record] = {}
        self.unsent: set[str] = set()
        self.reasons: Counter[str] = Counter()
        self.batch_errors: Counter[str] = Counter()

    # -- shared -------------------------------------------------------------------------------------------------
    def key(self, request: ChatRequest) -> str:
        return self.cache.key(self.job.backend_name, self.job.backend.model, request.payload())

    async def lookup(self, pending: list[Item]) -> dict[str, list[Item]]:
        """Settle cache hits; return what must be sent, grouped by request key (identical requests go once)."""
        await self.committer.flush()
        by_key: dict[str, list[Item]] = {}
        for rec, req in pending:
            by_key.setdefault(self.key(req), []).append((rec, req))
        hits = self.cache.get_many(list(by_key))
        self.retry: list[Item] = []
        for key, data in hits.items():
            result = ChatResult.from_json(data)
            for rec, req in by_key.pop(key):
                self.settle(rec, req, result, None, cached=True)
        return by_key

    def fail(self, rec: Record, reason: str) -> None:
        self.failed[rec["id"]] = {**rec, "status": "failed", "error": reason}
        self.reasons[reason.split(":")[0].split(" (")[0][:60]] += 1
        self.progress.advance(1, failed=1)

    def settle(self, rec: Record, req: ChatRequest, result: ChatResult, cache_row: tuple | None, *,
               cached: bool = False, cost: float = 0.0) -> None:
        """Parse one answer: a finished record (journaled), a re-ask, or a failure with the reason."""
        try:
            if not self.job.allow_empty and not any(t.strip() for t in result.texts):
                raise Malformed("empty response")
            fields = self.job.parse(rec, result)
        except Malformed as exc:
            self.committer.add(cache_row, None, cost)
            if req.attempt < self.job.max_malformed_retries:
                self.retry.append((rec, _bump(req)))
                self.progress.advance(0, retries=1)
            else:
                self.fail(rec, f"malformed after {req.attempt + 1} tries: {exc}")
            return
        row = {**rec, **fields, "status": "ok"}
        row.pop("error", None)
        self.committer.add(cache_row, row, cost)
        self.finished[rec["id"]] = row
        self.failed.pop(rec["id"], None)
        self.progress.advance(1, cached=1 if cached else 0)

    def answered(self, key: str, items: list[Item], outcome: ChatResult) -> None:
        cost = self.gate.cost(outcome)
        self.progress.advance(0, tokens=outcome.input_tokens + outcome.output_tokens, cost_usd=cost)
        req = items[0][1]
        # Empty answers are never cached (a retry may do better); anything else is, parsed or not.
        cache_row = ((key, self.job.backend_name, self.job.backend.model, req.payload(), outcome.to_json())
                     if any(t.strip() for t in outcome.texts) else None)
        for i, (rec, item_req) in enumerate(items):
            self.settle(rec, item_req, outcome, cache_row if i == 0 else None, cost=cost if i == 0 else 0.0)

    def fatal(self, exc: LLMError) -> HarnessError:
        return HarnessError(f"{self.ctx.name}: {self.job.backend_name} refused the request ({exc}); check the model "
                            "name, base_url and the key in api_key_env. Finished work is kept; run again to resume.")

    # -- direct requests ----------------------------------------------------------------------------------------
    async def direct_round(self, pending: list[Item]) -> list[Item]:
        by_key = await self.lookup(pending)
        keys = list(by_key)
        requests = [by_key[k][0][1] for k in keys]
        admission = self.gate if self.job.budget_usd is not None else None
        async for index, outcome in self.job.backend.stream(requests, admission):
            key, items = keys[index], by_key[keys[index]]
            if isinstance(outcome, NotSent):
                self.unsent.update(rec["id"] for rec, _ in items)
                self.progress.advance(len(items), unsent=len(items))
                continue
            self.progress.sent += 1
            if isinstance(outcome, LLMError) and outcome.fatal:
                raise self.fatal(outcome)
            if isinstance(outcome, ServerStartError):
                raise outcome
            if isinstance(outcome, Exception):
                for rec, _ in items:
                    self.fail(rec, f"{type(outcome).__name__}: {outcome}" if not isinstance(outcome, LLMError)
                              else str(outcome))
                continue
            self.answered(key, items, outcome)
        return self.retry

    # -- batches ------------------------------------------------------------------------------------------------
    async def batch_round(self, pending: list[Item]) -> list[Item]:
        backend = self.job.backend
        if not isinstance(backend, BatchBackend):
            raise HarnessError(f"{self.ctx.name}: back-end {self.job.backend_name} has no batch API")
        by_key = await self.lookup(pending)
        if not by_key:
            return self.retry
        batches = await self._open_batches(backend, by_key)
        attached = {k for b in batches for k in b["keys"]}
        for key in attached & set(by_key):
            self.gate.try_reserve(by_key[key][0][1], force=True)  # already submitted: it will be paid anyway
        fresh = [k for k in by_key if k not in attached]
        held = []
        to_submit = []
        for key in fresh:
            (to_submit if self.gate.try_reserve(by_key[key][0][1]) else held).append(key)
        for start in range(0, len(to_submit), self.job.batch_max_requests):
            chunk = to_submit[start:start + self.job.batch_max_requests]
            batch = await self._submit(backend, chunk, by_key)
            if batch is not None:
                batches.append(batch)
        if held and not batches:
            for key in held:
                self.unsent.update(rec["id"] for rec, _ in by_key[key])
                self.progress.advance(len(by_key[key]), unsent=len(by_key[key]))
            held = []
        await asyncio.gather(*(self._collect(backend, b, by_key) for b in batches))
        for key in held:  # the budget may have room now that real costs are known
            self.retry.extend(by_key[key])
        return self.retry

    async def _open_batches(self, backend: BatchBackend, by_key: dict[str, list[Item]]) -> list[dict]:
        """Batches recorded earlier (by a killed run) that hold some of these requests: poll, do not resubmit."""
        wanted = set(by_key)
        out = []
        for row in self.cache.open_batches(self.job.backend_name, backend.model):
            if row["batch_id"] is None:  # killed between submitting and recording the id
                found = await backend.find_batch(row["tag"], row["count"], row["created"])
                if found is None:
                    self.cache.batch_state(row["tag"], "lost")
                    continue
                self.cache.batch_submitted(row["tag"], found)
                row["batch_id"] = found
            if wanted & set(row["keys"]):
                self.ctx.log(f"resuming batch {row['batch_id']} ({len(row['keys'])} requests) submitted earlier")
                out.append(row)
        return out

    async def _submit(self, backend: BatchBackend, keys: list[str], by_key: dict[str, list[Item]]) -> dict | None:
        tag = uuid.uuid4().hex[:24]
        items = [(key, by_key[key][0][1]) for key in keys]
        count = backend.batch_request_count(items)
        created = self.cache.batch_intent(tag, self.job.backend_name, backend.model,
                                          [(key, req.payload()) for key, req in items], count)
        policy = backend.policy
        for retry in range(policy.max_retries + 1):
            try:
                batch_id = await backend.submit_batch(items, tag)
                break
            except LLMError as exc:
                if exc.fatal:
                    raise self.fatal(exc) from None
                found = await _quiet(backend.find_batch(tag, count, created))
                if found:
                    batch_id = found
                    break
                if not exc.retryable or retry == policy.max_retries:
                    self.cache.batch_state(tag, "failed")
                    for key in keys:
                        self.gate.release(by_key[key][0][1], exc)
                        for rec, _ in by_key[key]:
                            self.fail(rec, f"batch submission failed: {exc}")
                    return None
                self.progress.advance(0, retries=1)
                await asyncio.sleep(backoff_delay(retry, policy.retry_backoff_s, policy.retry_max_backoff_s))
        self.cache.batch_submitted(tag, batch_id)
        self.progress.sent += len(items)
        self.ctx.log(f"submitted batch {batch_id} with {len(items)} requests")
        return {"tag": tag, "batch_id": batch_id, "keys": keys}

    async def _collect(self, backend: BatchBackend, batch: dict, by_key: dict[str, list[Item]]) -> None:
        batch_id, policy = batch["batch_id"], backend.policy
        while True:
            try:
                state = await backend.batch_state(batch_id)
            except LLMError as exc:
                if exc.fatal:
                    raise self.fatal(exc) from None
                state = None
            if state is not None:
                self.progress.status = f"batch {batch_id}: {state.detail}"
                self.progress.advance(0)
                if state.status != "running":
                    break
            await asyncio.sleep(self.job.batch_poll_s)
        results: dict[str, ChatResult | LLMError] = {}
        if state.status == "ended":
            for retry in range(policy.max_retries + 1):
                try:
                    results = await backend.results_by_key(batch_id, batch["keys"])
                    break
                except LLMError as exc:
                    if exc.fatal or not exc.retryable or retry == policy.max_retries:
                        raise
                    await asyncio.sleep(backoff_delay(retry, policy.retry_backoff_s, policy.retry_max_backoff_s))
        for key in batch["keys"]:
            outcome = results.get(key) or LLMError(
                f"no result in batch {batch_id} ({state.detail})", retryable=True)
            items = by_key.get(key)
            if items is None:  # another stage's request in a shared batch: keep what was paid for
                if isinstance(outcome, ChatResult) and any(t.strip() for t in outcome.texts):
                    payload = self.cache.batch_payload(key)
                    if payload is not None:
                        self.committer.add((key, self.job.backend_name, backend.model, payload, outcome.to_json()),
                                           None, self.gate.cost(outcome))
                continue
            self.gate.release(items[0][1], outcome)
            if isinstance(outcome, ChatResult):
                self.answered(key, items, outcome)
                continue
            self.batch_errors[key] += 1
            if outcome.retryable and self.batch_errors[key] <= policy.max_retries:
                self.progress.advance(0, retries=1)
                self.retry.extend(items)
            else:
                for rec, _ in items:
                    self.fail(rec, str(outcome))
        await self.committer.flush()  # every paid answer is in the cache before the batch counts as collected
        self.cache.batch_state(batch["tag"], "collected")


async def _quiet(coro: Any) -> Any:
    try:
        return await coro
    except LLMError:
        return None


async def _run(ctx: StageContext, records: list[Record], job: GenerationJob, label: str) -> tuple[list[Record], dict]:
    journal = ctx.stage_dir.journal
    ctx.path.mkdir(parents=True, exist_ok=True)
    ledger = ctx.path / "spend.jsonl"
    finished: dict[str, Record] = {r["id"]: r for r in journal.read() if r.get("status") == "ok"}
    todo = [r for r in records if r["id"] not in finished]
    if finished:
        ctx.log(f"resuming: {len(finished)} records already in the journal, {len(todo)} to go")
    spent_before = read_spend(ledger)
    gate = BudgetGate(job.budget_usd, job.price, spent_before, batch=job.batch)
    try:
        with StageProgress(ctx.console, label, total=len(records)) as progress:
            progress.advance(len(records) - len(todo), cached=len(records) - len(todo))
            async with Committer(ctx.store.request_cache, journal, ledger) as committer:
                runner = _Runner(ctx, job, progress, committer, finished, gate)
                job.backend.on_retry = lambda exc: progress.advance(0, retries=1)
                pending: list[Item] = [(rec, job.build(rec)) for rec in todo]
                while pending:
                    pending = await (runner.batch_round(pending) if job.batch else runner.direct_round(pending))
    except ServerStartError as exc:
        raise StageFailed(ctx.name, str(exc), exc.log_tail) from None
    finally:
        with contextlib.suppress(Exception):  # closing is best effort
            await job.backend.aclose()
    failed = runner.failed
    out = []
    for r in records:
        if r["id"] in finished:
            out.append(finished[r["id"]])
        elif r["id"] in failed:
            out.append(failed[r["id"]])
        else:
            out.append({**r, "status": "unsent", "error": f"not sent: {job.budget_key} reached"})
    n_unsent = sum(1 for r in out if r["status"] == "unsent")
    stats = {"requests": len(records), "ok": len(finished), "failed": len(failed), "unsent": n_unsent,
             "cost_usd": round(read_spend(ledger), 6), "cost_usd_this_run": round(progress.cost_usd, 6),
             "tokens": progress.tokens, "sent": progress.sent, "retries": progress.retries,
             "from_journal": len(records) - len(todo), "seconds": round(progress.seconds, 2),
             "failure_reasons": dict(runner.reasons.most_common()),
             "failures": [{"id": r["id"], "reason": r["error"]} for r in failed.values()]}
    if failed:
        reasons = escape(", ".join(f"{k}: {v}" for k, v in runner.reasons.items()))  # error bodies may hold [...]
        ctx.log(f"[yellow]{len(failed)} failed[/yellow] ({reasons})"
                "; their reasons are in the records and in the stage info")
    return out, stats


def kept_as_generated(records: list[Record], field: str) -> dict[str, int]:
    """Counts for the stage info of what `reask: false` kept: cut off at max_tokens, and empty."""
    ok = [r for r in records if r.get("status") == "ok"]
    return {"cut_off": sum(1 for r in ok if r.get(f"{field}_cut_off")),
            "empty": sum(1 for r in ok if not str(r.get(field) or "").strip())}


def raise_if_partial(stage: str, stats: dict[str, Any], max_failed: float, budget_key: str = "budget_usd") -> None:
    """A stage left with more failed or unsent records than `max_failed` allows is partial: it raises instead of
    being committed as done; its good records stay in the journal and the cache for the next run."""
    failed, unsent, total = stats["failed"], stats["unsent"], stats["requests"]
    if failed + unsent <= allowed_failures(max_failed, total):
        return
    reasons = ", ".join(f"{k}: {v}" for k, v in list(stats["failure_reasons"].items())[:5])
    parts = [f"{failed} of {total} records failed" + (f" ({reasons})" if reasons else "")]
    if unsent:
        parts.append(f"{unsent} not sent because the budget was reached (raise {budget_key})")
    raise StagePartial(stage, "; ".join(parts) + f". The stage is partial, not done: {stats['ok']} good records are "
                       "kept, and the next `cgd run` sends only the failed and missing requests (max_failed allows "
                       "failures).", failed, unsent, total)
