"""One async interface for every generation back-end (local models, served models, paid APIs, the oracle).

`Backend.stream(requests)` yields (index, result or error) as requests finish. The base class owns what every
remote back-end needs and no SDK does for all of them alike: a concurrency limit, client-side request/token rate
limits, retries with exponential backoff that honour the server's retry-after (and pause every sender after a
429), and an admission hook the caller uses for budgets. Back-ends implement `complete(request)` for one try.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

from harness.llm.limits import RateLimiter


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

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ChatRequest:
        """The inverse of `payload()` (tests rebuild what was sent from the request cache)."""
        data = dict(payload)
        data["messages"] = tuple((m["role"], m["content"]) for m in data["messages"])
        data["stop"] = tuple(data.get("stop") or ())
        return cls(**data)

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {"messages": self.message_dicts(), "temperature": self.temperature,
                                "top_p": self.top_p, "max_tokens": self.max_tokens, "n": self.n, "seed": self.seed,
                                "stop": list(self.stop)}
        if self.attempt:
            data["attempt"] = self.attempt
        return data

    def estimated_input_tokens(self) -> int:
        """A deliberate over-estimate (3 characters per token) used for budgets and token rate limits."""
        return sum(len(content) for _, content in self.messages) // 3 + 4 * len(self.messages)

    def worst_case_tokens(self) -> tuple[int, int]:
        return self.estimated_input_tokens(), self.max_tokens * self.n


@dataclass
class ChatResult:
    texts: list[str]
    finish_reasons: list[str] = field(default_factory=list)
    input_tokens: int = 0  # every input token, cached or not
    output_tokens: int = 0
    cached_input_tokens: int = 0  # input tokens read from the provider's prompt cache (cheaper)
    cache_write_tokens: int = 0  # input tokens written to the provider's prompt cache (dearer, Anthropic)

    def to_json(self) -> dict[str, Any]:
        return {"texts": list(self.texts), "finish_reasons": list(self.finish_reasons),
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cached_input_tokens": self.cached_input_tokens, "cache_write_tokens": self.cache_write_tokens}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChatResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


class LLMError(Exception):
    """A request that failed. `retryable`: trying again may help (429, 5xx, timeouts, dropped connections,
    malformed bodies). `retry_after`: seconds the server asked us to wait. `fatal`: no request can succeed
    (bad key, unknown model): the stage stops at once instead of failing every record the same way."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None,
                 retry_after: float | None = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.fatal = fatal


class NotSent(Exception):
    """The caller's admission hook declined the request (a budget would be passed); nothing was sent."""


@dataclass(frozen=True)
class SendPolicy:
    """How requests are sent: from the recipe's connection keys (ConnectionSpec)."""

    max_concurrency: int = 16
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_retries: int = 6
    retry_backoff_s: float = 1.0
    retry_max_backoff_s: float = 60.0
    timeout_s: float = 600.0

    @classmethod
    def from_spec(cls, spec: Any) -> SendPolicy:
        names = {f.name for f in fields(cls)}
        return cls(**{n: getattr(spec, n) for n in names if getattr(spec, n, None) is not None})


class Admission(Protocol):
    """The caller's gate around each send (the budget). `acquire` may wait; False means: do not send."""

    async def acquire(self, request: ChatRequest) -> bool: ...

    def release(self, request: ChatRequest, outcome: ChatResult | Exception) -> None: ...


def backoff_delay(retry: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: base * 2^retry, capped, times a factor in [0.75, 1]."""
    return min(base * (2 ** retry), cap) * (1 - 0.25 * random.random())


class Backend:
    """Base class. Remote back-ends implement `complete`; batched local ones override `stream`."""

    name = "base"

    def __init__(self, model: str, *, max_concurrency: int | None = None, policy: SendPolicy | None = None) -> None:
        self.model = model
        policy = policy or SendPolicy(max_retries=0)  # built without a recipe (tests, tools): no retries
        if max_concurrency is not None:
            policy = SendPolicy(**{**asdict(policy), "max_concurrency": max_concurrency})
        self.policy = policy
        self.limiter = RateLimiter(policy.requests_per_minute, policy.tokens_per_minute)
        self.on_retry: Callable[[LLMError], None] | None = None  # the progress bar counts retries

    @property
    def max_concurrency(self) -> int:
        return self.policy.max_concurrency

    async def start(self) -> None:
        """Start what the back-end needs (a server, a model) before the first request; idempotent."""

    async def complete(self, request: ChatRequest) -> ChatResult:
        """One try. Raise LLMError (retryable or not) for failures the retry loop should know about."""
        raise NotImplementedError

    async def send(self, request: ChatRequest) -> ChatResult:
        """`complete` under the rate limits, retried with backoff while the error is retryable."""
        p = self.policy
        retry = 0
        while True:
            estimate = request.estimated_input_tokens() + request.max_tokens * request.n
            await self.limiter.acquire(estimate)
            try:
                result = await self.complete(request)
            except LLMError as exc:
                self.limiter.settle(estimate, 0)
                if exc.fatal or not exc.retryable or retry >= p.max_retries:
                    if exc.retryable and retry:
                        exc.args = (f"{exc.args[0]} (gave up after {retry + 1} tries)",)
                    raise
                if exc.retry_after is not None:
                    delay = exc.retry_after  # the server knows best; the SDKs honour it the same way
                    if exc.status == 429:
                        self.limiter.pause(delay)  # the account is limited, not this request: everyone waits
                else:
                    delay = backoff_delay(retry, p.retry_backoff_s, p.retry_max_backoff_s)
                if self.on_retry is not None:
                    self.on_retry(exc)
                retry += 1
                await asyncio.sleep(delay)
                continue
            except BaseException:
                self.limiter.settle(estimate, 0)
                raise
            self.limiter.settle(estimate, result.input_tokens + result.output_tokens)
            return result

    async def stream(self, requests: Sequence[ChatRequest], admission: Admission | None = None
                     ) -> AsyncIterator[tuple[int, ChatResult | Exception]]:
        """Yield (index, result or error) as each request finishes, at most `max_concurrency` in flight.

        A pool of workers pulls the requests in order (no task per request, so a million prompts cost a
        million small tuples, not a million coroutines)."""
        await self.start()
        queue: asyncio.Queue[tuple[int, ChatResult | Exception]] = asyncio.Queue()
        indices = iter(range(len(requests)))

        async def worker() -> None:
            for index in indices:
                request = requests[index]
                outcome: ChatResult | Exception
                try:
                    if admission is not None and not await admission.acquire(request):
                        queue.put_nowait((index, NotSent("not sent: the budget would be passed")))
                        continue
                    try:
                        outcome = await self.send(request)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded outcome
                        outcome = exc
                    if admission is not None:
                        admission.release(request, outcome)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a failing hook must not leave the consumer waiting
                    outcome = exc
                queue.put_nowait((index, outcome))

        workers = [asyncio.ensure_future(worker()) for _ in range(min(self.max_concurrency, len(requests)))]
        try:
            for _ in range(len(requests)):
                yield await queue.get()
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def aclose(self) -> None:
        """Release clients, servers or models."""



# --- batch APIs ------------------------------------------------------------------------------------------------

CUSTOM_ID_PREFIX = 58  # Anthropic allows 64 characters: a request key's first 58 hex digits + "_" + sample index


@dataclass
class BatchState:
    status: str  # running | ended | failed (failed: nothing more will come; unanswered requests go again)
    detail: str = ""


class BatchBackend:
    """The batch half of a provider back-end: submit, poll, collect, and find a batch after a crash.

    The stage runner (harness/stages/generation.py) speaks only these methods; how a provider names the items
    of a batch and counts them is the back-end's business."""

    policy: SendPolicy
    model: str

    async def submit_batch(self, items: list[tuple[str, ChatRequest]], tag: str) -> str:
        raise NotImplementedError

    async def batch_state(self, batch_id: str) -> BatchState:
        raise NotImplementedError

    async def batch_results(self, batch_id: str) -> dict[str, ChatResult | LLMError]:
        """Results by `result_id(key)` (`custom_id` without the sample suffix)."""
        raise NotImplementedError

    async def find_batch(self, tag: str, count: int, since: float) -> str | None:
        """A batch submitted under `tag` whose id was not recorded (killed between submit and commit); `count` is
        `batch_request_count` of what was submitted."""
        return None

    def batch_request_count(self, items: list[tuple[str, ChatRequest]]) -> int:
        """How many requests the provider sees in a batch of these items (one per request key by default)."""
        return len(items)

    def result_id(self, key: str) -> str:
        """The id `batch_results` files a request key's outcome under."""
        return key[:CUSTOM_ID_PREFIX]

    def custom_id(self, key: str, sample: int = 0) -> str:
        """The id of one batch item: `result_id` and the sample index (what `batch_results` groups by)."""
        return f"{self.result_id(key)}_{sample}"

    async def results_by_key(self, batch_id: str, keys: list[str]) -> dict[str, ChatResult | LLMError]:
        """`batch_results` for these request keys, by key (keys with no result are left out)."""
        results = await self.batch_results(batch_id)
        out: dict[str, ChatResult | LLMError] = {}
        for key in keys:
            outcome = results.get(self.result_id(key))
            if outcome is not None:
                out[key] = outcome
        return out
