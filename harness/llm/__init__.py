"""Generation back-ends, looked up by name: `make_backend("hf", spec, model=...)`.

Every back-end speaks `Backend.stream(requests)` (harness/llm/base.py). Remote ones take the recipe's connection
keys (ConnectionSpec: base_url, api_key_env, max_concurrency, rate limits, timeout, retries), for a teacher and
for a student alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.llm.base import Backend, ChatRequest, ChatResult, LLMError, NotSent, SendPolicy
from harness.registry import Registry

BackendFactory = Callable[..., Backend]
BACKENDS: Registry[BackendFactory] = Registry("back-end")
ALIASES = {"openai-compatible": "openai_compat"}
BATCH_CAPABLE = ("openai", "anthropic")


def canonical(name: str) -> str:
    """One name per back-end (aliases fold), so the request cache and fingerprints do not split on spelling."""
    return ALIASES.get(name, name)


def _remote(spec: Any) -> dict[str, Any]:
    return {"base_url": spec.base_url, "api_key_env": spec.api_key_env, "policy": SendPolicy.from_spec(spec)}


@BACKENDS.register("hf")
def _hf(spec: Any, model: str, **_: Any) -> Backend:
    from harness.llm.hf import HFBackend

    return HFBackend(model, batch_size=getattr(spec, "batch_size", 32))


@BACKENDS.register("oracle")
def _oracle(spec: Any, model: str, **_: Any) -> Backend:
    from harness.llm.oracle import OracleBackend

    return OracleBackend(model, policy=SendPolicy.from_spec(spec))


@BACKENDS.register("openai_compat", "openai-compatible")
def _openai_compat(spec: Any, model: str, **_: Any) -> Backend:
    from harness.llm.remote import OpenAICompatBackend

    return OpenAICompatBackend(model, **_remote(spec))


@BACKENDS.register("openai")
def _openai(spec: Any, model: str, **_: Any) -> Backend:
    from harness.llm.remote import OpenAIBackend

    return OpenAIBackend(model, **_remote(spec))


@BACKENDS.register("anthropic")
def _anthropic(spec: Any, model: str, **_: Any) -> Backend:
    from harness.llm.remote import AnthropicBackend

    return AnthropicBackend(model, **_remote(spec))


@BACKENDS.register("vllm")
def _vllm(spec: Any, model: str, workdir: Path | None = None, **_: Any) -> Backend:
    from harness.llm.server import ServeSettings
    from harness.llm.vllm import VLLMBackend

    return VLLMBackend(model, serve=ServeSettings.from_spec(spec.vllm), api_key_env=spec.api_key_env,
                       policy=SendPolicy.from_spec(spec), workdir=workdir)


def make_backend(kind: str, spec: Any, model: str, *, workdir: Path | None = None) -> Backend:
    """`workdir`: the stage folder, for what a back-end writes (a served model's log)."""
    return BACKENDS.get(kind)(spec, model, workdir=workdir)


__all__ = ["BACKENDS", "BATCH_CAPABLE", "Backend", "ChatRequest", "ChatResult", "LLMError", "NotSent",
           "SendPolicy", "canonical", "make_backend"]
