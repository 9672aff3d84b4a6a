"""What the teacher stages share: the back-end, its price, and the request parameters from the recipe."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.llm import Backend, ChatRequest, canonical, find_provider, make_backend, names_with
from harness.parsers import DEFAULT as DEFAULT_PARSER
from harness.pricing import Price, price_for
from harness.stages.base import StageContext
from harness.stages.generation import GenerationJob, Parser, read_spend


def teacher_params(recipe: Any) -> dict[str, Any]:
    """The teacher fields that change what comes back (part of every teacher stage's fingerprint). Speed and
    money settings (concurrency, rate limits, retries, batch, budget) are not: they never change an answer.

    `reask` and `parser` change what a stage keeps, so they are in it too, but only when they differ from their
    defaults (reask on, parser none): recipes that leave them alone keep the fingerprints they had before the
    keys existed."""
    t = recipe.teacher
    provider = canonical(t.provider)
    info = find_provider(provider)
    # base_url says which model answers only where the user serves or loads it (not a paid API's proxy)
    params = {"provider": provider, "model": t.model, "generation": t.generation.model_dump(),
              "base_url": t.base_url if info is not None and info.self_hosted else None}
    if not t.reask:
        params["reask"] = False
    if t.parser != DEFAULT_PARSER:
        params["parser"] = t.parser
    return params


def _fingerprinted(ctx: StageContext) -> dict[str, Any]:
    """The stage's teacher params (a caller that built its own context without them: the recipe's)."""
    return ctx.params.get("teacher") or teacher_params(ctx.recipe)


def teacher_parser(ctx: StageContext) -> str:
    """The teacher's output parser, as fingerprinted (absent: none)."""
    return _fingerprinted(ctx).get("parser", DEFAULT_PARSER)


def teacher_reask(ctx: StageContext) -> bool:
    """Whether unusable answers are re-asked (the default), as fingerprinted (absent: on)."""
    return _fingerprinted(ctx).get("reask", True)


def request_params(generation: dict[str, Any]) -> dict[str, Any]:
    return {"temperature": generation["temperature"], "top_p": generation["top_p"],
            "max_tokens": generation["max_tokens"], "n": generation["n"], "seed": generation["seed"]}


def teacher_job(ctx: StageContext, build: Any, parse: Parser) -> GenerationJob:
    recipe = ctx.recipe
    t = recipe.teacher
    provider = canonical(t.provider)
    info = find_provider(provider)
    if t.batch and (info is None or not info.batch):
        raise HarnessError(f"teacher.batch: provider '{t.provider}' has no batch API "
                           f"(only {', '.join(names_with('batch'))})")
    backend: Backend = make_backend(provider, t, t.model, workdir=ctx.path)
    price: Price = price_for(provider, t.model, t.price)
    budget, key = stage_budget(t.budget_usd, recipe.budget_usd, ctx.runtime.get("budget_peers", ()))
    return GenerationJob(backend=backend, backend_name=provider, price=price, build=build, parse=parse,
                         budget_usd=budget, budget_key=key,
                         # reask off (the official code): nothing is re-asked, an empty answer is kept as generated
                         max_malformed_retries=t.max_malformed_retries if teacher_reask(ctx) else 0,
                         allow_empty=not teacher_reask(ctx),
                         batch=t.batch, batch_poll_s=t.batch_poll_s, batch_max_requests=t.batch_max_requests,
                         max_failed=t.max_failed)


def stage_budget(stage_cap: float | None, recipe_cap: float | None, peers: Iterable[str]
                 ) -> tuple[float | None, str]:
    """(this stage's cap, the key that sets it): the tighter of teacher.budget_usd (per stage) and what the
    recipe-wide budget_usd leaves after the spend of the recipe's other teacher stages (their ledgers)."""
    if recipe_cap is None:
        return stage_cap, "teacher.budget_usd"
    left = max(0.0, recipe_cap - sum(read_spend(Path(p) / "spend.jsonl") for p in peers))
    if stage_cap is not None and stage_cap <= left:
        return stage_cap, "teacher.budget_usd"
    return left, "budget_usd"


def chat(messages: list[dict[str, str]], generation: dict[str, Any]) -> ChatRequest:
    return ChatRequest.build(messages, **request_params(generation))
