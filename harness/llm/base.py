"""One async interface for every generation back-end (local models, served models, paid APIs, the oracle)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChatRequest:
    """What is sent. Its `payload()` is the request-cache key material, so it must hold everything that can
    change the response and nothing about how the response is parsed."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs; a tuple so requests are hashable
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    attempt: int = 0  # > 0 on a deliberate re-ask after a malformed answer, so it is a distinct cache entry

    @classmethod
    def build(cls, messages: Sequence[dict[str, str]], **params: Any) -> ChatRequest:
        return cls(messages=tuple((m["role"], m["content"]) for m in messages), **params)

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def payload(self) -> dict[str, Any]:
        data = asdict(self)
        data["messages"] = self.message_dicts()
        if not self.attempt:
            data.pop("attempt")
        return data


@dataclass
class ChatResult:
    texts: list[str]
    finish_reasons: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChatResult:
        return cls(**data)

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


class LLMError(Exception):
    """A request that failed after the back-end's own retries. `retryable` says whether trying later may help."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class Backend:
    """Base class. Remote back-ends implement `complete`; batched local ones override `stream`."""

    name = "base"

    def __init__(self, model: str, *, max_concurrency: int = 16) -> None:
        self.model = model
        self.max_concurrency = max_concurrency

    async def complete(self, request: ChatRequest) -> ChatResult:
        raise NotImplementedError

    async def stream(self, requests: Sequence[ChatRequest]) -> AsyncIterator[tuple[int, ChatResult | Exception]]:
        """Yield (index, result or error) as each request finishes, at most `max_concurrency` in flight."""
        limit = asyncio.Semaphore(self.max_concurrency)

        async def one(index: int, request: ChatRequest) -> tuple[int, ChatResult | Exception]:
            async with limit:
                try:
                    return index, await self.complete(request)
                except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded outcome
                    return index, exc

        tasks = [asyncio.ensure_future(one(i, r)) for i, r in enumerate(requests)]
        try:
            for next_done in asyncio.as_completed(tasks):
                yield await next_done
        finally:
            for task in tasks:
                task.cancel()

    async def aclose(self) -> None:
        """Release clients, servers or models."""
