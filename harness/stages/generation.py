"""Run one LLM request per record through a back-end, with the request cache and the stage journal.

Order of commits per request: response -> request cache (fsynced) -> parsed record -> journal (fsynced). A kill
anywhere loses at most work that was not paid for: a re-run finds paid responses in the cache and finished records
in the journal, and sends only what is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.llm import Backend, ChatRequest, ChatResult
from harness.pricing import Price
from harness.progress import StageProgress
from harness.stages.base import Record, StageContext


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
    allow_empty: bool = False  # a student's empty draft is a (bad) answer; a teacher's empty text is a failure


def _bump(request: ChatRequest) -> ChatRequest:
    """A re-ask after a malformed answer: a distinct request (and cache entry), sampled, with a fresh seed."""
    from dataclasses import replace

    attempt = request.attempt + 1
    return replace(request, attempt=attempt, temperature=max(request.temperature, 0.7),
                   seed=(request.seed or 0) + attempt)


def run_generation(ctx: StageContext, records: list[Record], job: GenerationJob, label: str) -> tuple[list[Record], dict]:
    """Returns (records in input order, each with status ok|failed, and stats)."""
    return asyncio.run(_run(ctx, records, job, label))


async def _run(ctx: StageContext, records: list[Record], job: GenerationJob, label: str) -> tuple[list[Record], dict]:
    cache = ctx.store.request_cache
    journal = ctx.stage_dir.journal
    finished: dict[str, Record] = {r["id"]: r for r in journal.read() if r.get("status") == "ok"}
    todo = [r for r in records if r["id"] not in finished]
    if finished:
        ctx.log(f"resuming: {len(finished)} records already in the journal, {len(todo)} to go")
    failed: dict[str, Record] = {}
    with StageProgress(ctx.console, label, total=len(records)) as progress:
        progress.advance(len(records) - len(todo), cached=len(records) - len(todo))
        pending = [(rec, job.build(rec)) for rec in todo]
        while pending:
            pending = await _round(ctx, pending, job, cache, journal, finished, failed, progress)
    try:
        await job.backend.aclose()
    except Exception:  # noqa: BLE001 - closing is best effort
        pass
    unsent = [r for r in records if r["id"] not in finished and r["id"] not in failed]
    out = [finished.get(r["id"]) or failed[r["id"]] if r["id"] in finished or r["id"] in failed
           else {**r, "status": "unsent", "error": "not sent: teacher.budget_usd reached"} for r in records]
    stats = {"unsent": len(unsent), "requests": len(records), "ok": len(finished), "failed": len(failed), "cost_usd": round(progress.cost_usd, 6),
             "tokens": progress.tokens, "sent": progress.sent, "from_journal": len(records) - len(todo), "seconds": round(progress.seconds, 2),
             "failures": [{"id": r["id"], "reason": r["error"]} for r in failed.values()]}
    return out, stats


async def _round(ctx, pending, job, cache, journal, finished, failed, progress) -> list[tuple[Record, ChatRequest]]:
    """Send what is pending; return the malformed ones that deserve another try."""
    retry: list[tuple[Record, ChatRequest]] = []
    to_send: list[tuple[Record, ChatRequest, str]] = []
    for rec, req in pending:
        key = cache.key(job.backend_name, job.backend.model, req.payload())
        hit = cache.get(key)
        if hit is None:
            to_send.append((rec, req, key))
            continue
        again = _settle(rec, req, ChatResult.from_json(hit), job, journal, finished, failed)
        progress.advance(0 if again else 1, cached=0 if again else 1)
        if again:
            retry.append(again)

    spent = progress.cost_usd
    if job.budget_usd is not None and to_send:
        to_send = _within_budget(ctx, to_send, job, spent)
    progress.sent += len(to_send)
    async for index, outcome in job.backend.stream([req for _, req, _ in to_send]):
        rec, req, key = to_send[index]
        if isinstance(outcome, Exception):
            failed[rec["id"]] = {**rec, "status": "failed", "error": f"{type(outcome).__name__}: {outcome}"}
            progress.advance(failed=1)
            continue
        cost = job.price.cost(outcome.input_tokens, outcome.output_tokens, outcome.cached_input_tokens)
        if any(t.strip() for t in outcome.texts):
            cache.put(key, job.backend_name, job.backend.model, req.payload(), outcome.to_json())
        again = _settle(rec, req, outcome, job, journal, finished, failed)
        progress.advance(0 if again else 1, tokens=outcome.input_tokens + outcome.output_tokens, cost_usd=cost,
                         retries=1 if again else 0)
        if again:
            retry.append(again)
    return retry


def _settle(rec, req, result, job, journal, finished, failed) -> tuple[Record, ChatRequest] | None:
    try:
        if not job.allow_empty and not any(t.strip() for t in result.texts):
            raise Malformed("empty response")
        fields = job.parse(rec, result)
    except Malformed as exc:
        if req.attempt < job.max_malformed_retries:
            return rec, _bump(req)
        failed[rec["id"]] = {**rec, "status": "failed", "error": f"malformed after {req.attempt + 1} tries: {exc}"}
        return None
    row = {**rec, **fields, "status": "ok"}
    row.pop("error", None)
    journal.append([row])
    finished[rec["id"]] = row
    failed.pop(rec["id"], None)
    return None


def _within_budget(ctx, to_send, job, spent):
    """Keep only as many requests as the remaining budget covers at the worst case (max_tokens out)."""
    remaining = job.budget_usd - spent
    kept = []
    for rec, req, key in to_send:
        prompt_tokens = sum(len(c) for _, c in req.messages) // 3  # rough upper estimate of tokens
        worst = job.price.cost(prompt_tokens, req.max_tokens * req.n)
        if worst > remaining:
            break
        remaining -= worst
        kept.append((rec, req, key))
    if len(kept) < len(to_send):
        ctx.log(f"[yellow]budget_usd {job.budget_usd} reached: {len(to_send) - len(kept)} requests not sent[/yellow]")
    return kept
