"""Generation back-ends, looked up by name: `make_backend("hf", spec, model=...)`.

Every back-end speaks `Backend.stream(requests)` (harness/llm/base.py). Remote ones take the recipe's connection
keys (ConnectionSpec: base_url, api_key_env, max_concurrency, rate limits, timeout, retries), for a teacher and
for a student alike.

Each back-end is registered once, with its provider facts (`ProviderInfo`: batch API, key required, paid per token,
self-hosted, in-process, can draft as a student). Recipe validation, pricing, the teacher stages and the SDK
clients read those facts from here (`provider_info`), so a new back-end is one registration:

    @register_backend("acme", batch=True, needs_key=True, paid=True)
    def _acme(spec, model, **_): return AcmeBackend(model, ...)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.llm.base import Backend, ChatRequest, ChatResult, LLMError, NotSent, SendPolicy
from harness.registry import Registry

BackendFactory = Callable[..., Backend]


@dataclass(frozen=True)
class ProviderInfo:
    """What the rest of the harness may know about a back-end, declared where it is registered."""

    name: str  # the canonical name (request cache, fingerprints); aliases fold to it
    factory: BackendFactory = field(repr=False, compare=False)
    aliases: tuple[str, ...] = ()
    batch: bool = False  # has a batch API (`teacher.batch`)
    needs_key: bool = False  # an API key is required: the recipe must name `api_key_env`
    paid: bool = False  # billed per token: priced from harness/pricing.py's table (or the recipe's `price`)
    self_hosted: bool = False  # an open-weight model the user serves or loads: base_url is part of its identity
    in_process: bool = False  # runs in this process: no base_url, nothing goes over the network
    student: bool = True  # can draft as a student (the oracle only answers teacher prompts)

    def __call__(self, spec: Any, model: str, **kwargs: Any) -> Backend:
        return self.factory(spec, model, **kwargs)


BACKENDS: Registry[ProviderInfo] = Registry("back-end")
_ORDER: list[str] = []  # registration order, for messages that list back-ends by a fact ("openai, anthropic")


def register_backend(name: str, *aliases: str, **facts: Any) -> Callable[[BackendFactory], BackendFactory]:
    """Register a back-end factory `(spec, model, *, workdir=None, **_) -> Backend` with its provider facts."""

    def wrap(factory: BackendFactory) -> BackendFactory:
        BACKENDS.register(name, *aliases)(ProviderInfo(name, factory, aliases=aliases, **facts))
        _ORDER.append(name)
        return factory

    return wrap


def provider_info(name: str) -> ProviderInfo:
    """The facts of a registered back-end (by name or alias); UnknownName lists the available ones."""
    return BACKENDS.get(name)


def find_provider(name: str) -> ProviderInfo | None:
    """`provider_info`, or None for a name nothing registered (callers that must not raise)."""
    return BACKENDS.get(name) if name in BACKENDS else None


def providers() -> list[ProviderInfo]:
    """Every registered back-end once (aliases folded), in registration order."""
    seen: dict[str, ProviderInfo] = {}
    for key in BACKENDS.names():
        info = BACKENDS.get(key)
        seen.setdefault(info.name, info)
    rank = {name: i for i, name in enumerate(_ORDER)}
    return sorted(seen.values(), key=lambda info: (rank.get(info.name, len(rank)), info.name))


def names_with(fact: str) -> tuple[str, ...]:
    """Canonical names of the back-ends whose `fact` is true, e.g. `names_with("batch")`."""
    return tuple(info.name for info in providers() if getattr(info, fact))


def canonical(name: str) -> str:
    """One name per back-end (aliases fold), so the request cache and fingerprints do not split on spelling."""
    info = find_provider(name)
    return info.name if info is not None else name


def __getattr__(attr: str) -> Any:
    # Derived from the registry when read, so a back-end registered later (a plugin, a test) is in it.
    if attr == "BATCH_CAPABLE":
        return names_with("batch")
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def _remote(spec: Any) -> dict[str, Any]:
    return {"base_url": spec.base_url, "api_key_env": spec.api_key_env, "policy": SendPolicy.from_spec(spec)}


@register_backend("hf", self_hosted=True, in_process=True)
def _hf(spec: Any, model: str, **_: Any) -> Backend:
    from harness.llm.hf import HFBackend

    return HFBackend(model, batch_size=getattr(spec, "batch_size", 32))


@register_backend("oracle", in_process=True, student=False)
def _oracle(spec: Any, model: str, **_: Any) -> Backend:
    from harness.llm.oracle import OracleBackend

    return OracleBackend(model, policy=SendPolicy.from_spec(spec))


@register_backend("openai_compat", "openai-compatible", self_hosted=True)
def _openai_compat(spec: Any, model: str, **_: Any) -> Backend:
    from harness.llm.remote import OpenAICompatBackend

    return OpenAICompatBackend(model, **_remote(spec))


@register_backend("openai", batch=True, needs_key=True, paid=True)
def _openai(spec: Any, model: str, **_: Any) -> Backend:
    from harness.llm.remote import OpenAIBackend

    return OpenAIBackend(model, **_remote(spec))


@register_backend("anthropic", batch=True, needs_key=True, paid=True)
def _anthropic(spec: Any, model: str, **_: Any) -> Backend:
    from harness.llm.remote import AnthropicBackend

    return AnthropicBackend(model, **_remote(spec))


@register_backend("vllm", self_hosted=True)
def _vllm(spec: Any, model: str, workdir: Path | None = None, **_: Any) -> Backend:
    from harness.llm.server import ServeSettings
    from harness.llm.vllm import VLLMBackend

    return VLLMBackend(model, serve=ServeSettings.from_spec(spec.vllm), api_key_env=spec.api_key_env,
                       policy=SendPolicy.from_spec(spec), workdir=workdir)


def make_backend(kind: str, spec: Any, model: str, *, workdir: Path | None = None) -> Backend:
    """`workdir`: the stage folder, for what a back-end writes (a served model's log)."""
    return provider_info(kind)(spec, model, workdir=workdir)


__all__ = ["BACKENDS", "BATCH_CAPABLE", "Backend", "BackendFactory", "ChatRequest", "ChatResult", "LLMError",
           "NotSent", "ProviderInfo", "SendPolicy", "canonical", "find_provider", "make_backend", "names_with",
           "provider_info", "providers", "register_backend"]
