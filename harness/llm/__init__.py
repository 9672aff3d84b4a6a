"""Generation back-ends, looked up by name: `make_backend("hf", spec, model=...)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.llm.base import Backend, ChatRequest, ChatResult, LLMError
from harness.registry import Registry

BackendFactory = Callable[..., Backend]
BACKENDS: Registry[BackendFactory] = Registry("back-end")


def _connection(spec: Any) -> dict[str, Any]:
    return {"base_url": spec.base_url, "api_key_env": spec.api_key_env, "max_concurrency": spec.max_concurrency,
            "timeout_s": spec.timeout_s, "max_retries": spec.max_retries}


@BACKENDS.register("hf")
def _hf(spec: Any, model: str) -> Backend:
    from harness.llm.hf import HFBackend

    return HFBackend(model, batch_size=getattr(spec, "batch_size", 32))


@BACKENDS.register("oracle")
def _oracle(spec: Any, model: str) -> Backend:
    from harness.llm.oracle import OracleBackend

    return OracleBackend(model, max_concurrency=spec.max_concurrency)


@BACKENDS.register("openai_compat", "openai-compatible")
def _openai_compat(spec: Any, model: str) -> Backend:
    from harness.llm.remote import OpenAICompatBackend

    return OpenAICompatBackend(model, **_connection(spec))


@BACKENDS.register("openai")
def _openai(spec: Any, model: str) -> Backend:
    from harness.llm.remote import OpenAIBackend

    return OpenAIBackend(model, **_connection(spec))


@BACKENDS.register("anthropic")
def _anthropic(spec: Any, model: str) -> Backend:
    from harness.llm.remote import AnthropicBackend

    return AnthropicBackend(model, **_connection(spec))


def make_backend(kind: str, spec: Any, model: str) -> Backend:
    return BACKENDS.get(kind)(spec, model)


__all__ = ["BACKENDS", "Backend", "ChatRequest", "ChatResult", "LLMError", "make_backend"]
