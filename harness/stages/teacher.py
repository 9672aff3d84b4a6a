"""What the teacher stages share: the back-end, its price, and the request parameters from the recipe."""

from __future__ import annotations

from typing import Any

from harness.llm import Backend, ChatRequest, make_backend
from harness.pricing import Price, price_for
from harness.stages.generation import GenerationJob, Parser


def teacher_params(recipe: Any) -> dict[str, Any]:
    """The teacher fields that change what comes back (part of every teacher stage's fingerprint)."""
    t = recipe.teacher
    return {"provider": t.provider, "model": t.model, "generation": t.generation.model_dump(),
            "base_url": t.base_url if t.provider in ("openai_compat", "vllm", "hf") else None}


def request_params(generation: dict[str, Any]) -> dict[str, Any]:
    return {"temperature": generation["temperature"], "top_p": generation["top_p"],
            "max_tokens": generation["max_tokens"], "n": generation["n"], "seed": generation["seed"]}


def teacher_job(recipe: Any, build: Any, parse: Parser) -> GenerationJob:
    t = recipe.teacher
    backend: Backend = make_backend(t.provider, t, t.model)
    price: Price = price_for(t.provider, t.model, t.price)
    return GenerationJob(backend=backend, backend_name=t.provider, price=price, build=build, parse=parse,
                         budget_usd=t.budget_usd)


def chat(messages: list[dict[str, str]], generation: dict[str, Any]) -> ChatRequest:
    return ChatRequest.build(messages, **request_params(generation))
