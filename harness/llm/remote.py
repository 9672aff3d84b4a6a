"""Paid and served back-ends through the official async SDKs: OpenAI-compatible servers, OpenAI, Anthropic.

The SDKs' own retries are switched off (`max_retries=0`): the harness retries in `Backend.send`, so every retry
is counted in the progress bar, the backoff comes from the recipe, and a 429's retry-after pauses all senders.
Every SDK or transport failure leaves here as an LLMError that says whether trying again can help.

Speed: generation requests go through the SDK clients' raw `post` (their documented way to call an endpoint
directly; same auth, headers, timeouts and error classes) and the JSON is read here, skipping the typed layer's
request transform and response models; the SDKs' aiohttp transport is used when aiohttp is installed
(`CGD_HTTP_TRANSPORT=httpx` turns it off). Together these roughly halve the CPU per request
(bench/teacher_throughput.py).

Both providers' batch APIs are here too (`submit_batch` / `batch_state` / `batch_results` / `find_batch`, the
`BatchBackend` interface of harness/llm/base.py, with each provider's way of counting and naming batch items); the
stage runner (harness/stages/generation.py) owns when to use them and persists the batch ids.

Whether a back-end needs a key, has a batch API or is billed is declared once, at its registration
(harness/llm/__init__.py).
"""

from __future__ import annotations

import email.utils
import functools
import io
import itertools
import json
import os
import re
import time
from typing import Any

from harness.errors import HarnessError
from harness.llm.base import Backend, BatchBackend, BatchState, ChatRequest, ChatResult, LLMError, SendPolicy

FATAL_STATUS = (401, 403, 404)  # bad key, no access, unknown model or route: every request would fail alike
RETRYABLE_STATUS = (408, 409, 425, 429)


def api_key_from_env(env_name: str | None, *, required: bool, provider: str) -> str | None:
    """Keys come only from the environment variable the recipe names; they are never stored."""
    if env_name is None:
        if required:
            raise HarnessError(f"{provider} needs an API key: set api_key_env to the name of the environment "
                               "variable holding it")
        return None
    value = os.environ.get(env_name)
    if not value and required:
        raise HarnessError(f"environment variable {env_name} (named by api_key_env) is not set or empty")
    return value


def retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or an HTTP date); None when absent or odd."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) / scale)
        except ValueError:
            pass
        parsed = email.utils.parsedate_to_datetime(raw) if name == "retry-after" else None
        if parsed is not None:
            return max(0.0, parsed.timestamp() - time.time())
    return None


KEY_LIKE = re.compile(r"\b(sk|key)-[A-Za-z0-9_*.\-]{8,}")


def redact(text: str, secret: str | None = None) -> str:
    """Error bodies can echo a (masked) key back ("Incorrect API key provided: sk-ab***yz"); keep it out of
    records, logs and messages."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return KEY_LIKE.sub("[redacted]", text)


def to_llm_error(exc: Exception, sdk: Any, secret: str | None = None) -> LLMError:
    """Map an SDK (openai or anthropic module) or transport exception to an LLMError."""
    if isinstance(exc, LLMError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        message = redact(str(getattr(exc, "message", "") or exc), secret)
        retryable = status in RETRYABLE_STATUS or status >= 500
        return LLMError(f"{name} (HTTP {status}): {message[:300]}", retryable=retryable, status=status,
                        retry_after=retry_after(exc.response.headers), fatal=status in FATAL_STATUS)
    if isinstance(exc, sdk.APITimeoutError):
        return LLMError(f"{name}: no answer within the timeout", retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return LLMError(f"{name}: the connection failed or was dropped", retryable=True)
    if isinstance(exc, sdk.APIResponseValidationError | json.JSONDecodeError | UnicodeDecodeError):
        return LLMError(f"malformed response body ({name})", retryable=True)
    return LLMError(f"{name}: {redact(str(exc), secret)[:300]}", retryable=False)


def _malformed(exc: Exception) -> LLMError:
    """A 200 whose body is not the expected schema (a proxy's HTML page, a truncated JSON): worth another try."""
    return LLMError(f"malformed response body ({type(exc).__name__})", retryable=True)


# --- request and response shapes (pure functions: tests rebuild the exact bodies the server receives) ---------

def openai_chat_params(model: str, request: ChatRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"model": model, "messages": request.message_dicts(), "temperature": request.temperature,
                              "top_p": request.top_p, "max_tokens": request.max_tokens}
    if request.n > 1:
        params["n"] = request.n
    if request.seed is not None:
        params["seed"] = request.seed
    if request.stop:
        params["stop"] = list(request.stop)
    return params


def openai_result(body: dict[str, Any]) -> ChatResult:
    """A chat.completion JSON body (or its SDK model dumped) to a ChatResult."""
    choices = sorted(body["choices"], key=lambda c: c.get("index", 0))
    usage = body.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return ChatResult(texts=[(c["message"].get("content") or "") for c in choices],
                      finish_reasons=[c.get("finish_reason") or "" for c in choices],
                      input_tokens=usage.get("prompt_tokens") or 0, output_tokens=usage.get("completion_tokens") or 0,
                      cached_input_tokens=details.get("cached_tokens") or 0)


def anthropic_message_params(model: str, request: ChatRequest) -> dict[str, Any]:
    """Messages API params. The system prompt (shared by every request of a stage) carries a cache breakpoint,
    so the provider bills its repeats at the cached-input price.

    No sampling parameters: API version 2026-10-21 (what the 2.x SDKs send) rejects temperature, top_p and top_k
    with a 400, even at their defaults, and the SDK no longer accepts them. Seeds were never supported. So an
    Anthropic teacher samples at the provider's default, and a re-ask after a malformed answer is the same body
    sent again (a fresh sample)."""
    system = "\n\n".join(c for r, c in request.messages if r == "system")
    messages = [m for m in request.message_dicts() if m["role"] != "system"]
    params: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": request.max_tokens}
    if system:
        params["system"] = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
    if request.stop:
        params["stop_sequences"] = list(request.stop)
    return params


def anthropic_result(body: dict[str, Any]) -> ChatResult:
    """One Message JSON body to a ChatResult. Anthropic's `input_tokens` excludes cache reads and writes."""
    usage = body.get("usage") or {}
    read = usage.get("cache_read_input_tokens") or 0
    write = usage.get("cache_creation_input_tokens") or 0
    text = "".join(block.get("text", "") for block in body.get("content") or [] if block.get("type") == "text")
    return ChatResult(texts=[text], finish_reasons=[body.get("stop_reason") or ""],
                      input_tokens=(usage.get("input_tokens") or 0) + read + write,
                      output_tokens=usage.get("output_tokens") or 0, cached_input_tokens=read,
                      cache_write_tokens=write)


def merge(results: list[ChatResult]) -> ChatResult:
    """n single-sample results (Anthropic has no `n`) as one result with n texts."""
    return ChatResult(texts=[t for r in results for t in r.texts],
                      finish_reasons=[f for r in results for f in r.finish_reasons],
                      input_tokens=sum(r.input_tokens for r in results),
                      output_tokens=sum(r.output_tokens for r in results),
                      cached_input_tokens=sum(r.cached_input_tokens for r in results),
                      cache_write_tokens=sum(r.cache_write_tokens for r in results))


# --- batches ---------------------------------------------------------------------------------------------------

def _group_samples(items: list[tuple[str, ChatResult | LLMError]]) -> dict[str, ChatResult | LLMError]:
    by_prefix: dict[str, dict[int, ChatResult | LLMError]] = {}
    for cid, outcome in items:
        prefix, _, sample = cid.rpartition("_")
        by_prefix.setdefault(prefix, {})[int(sample or 0)] = outcome
    out: dict[str, ChatResult | LLMError] = {}
    for prefix, samples in by_prefix.items():
        ordered = [samples[i] for i in sorted(samples)]
        errors = [o for o in ordered if isinstance(o, LLMError)]
        out[prefix] = errors[0] if errors else merge([o for o in ordered if isinstance(o, ChatResult)])
    return out


# --- back-ends -------------------------------------------------------------------------------------------------

CONNECTIONS_PER_CLIENT = 32


def _pool_sizes(policy: SendPolicy) -> tuple[int, int]:
    """(clients, connections each). httpx's connection pool scans all of its connections for every request it
    assigns, so one pool of 256 costs O(256) per request; several small pools keep that scan short. Each pool may
    grow to the full concurrency (no request ever waits for a connection), but in practice holds ~1/n of it.
    aiohttp's pool has no such scan: one client."""
    n = 1 if http_transport() == "aiohttp" else max(1, -(-policy.max_concurrency // CONNECTIONS_PER_CLIENT))
    return n, max(policy.max_concurrency, 8)


def http_transport() -> str:
    """`aiohttp` when it is importable (the SDKs ship an aiohttp transport: about a quarter less CPU per request
    than httpx's own), else `httpx`. CGD_HTTP_TRANSPORT=httpx|aiohttp overrides it."""
    choice = os.environ.get("CGD_HTTP_TRANSPORT", "auto")
    if choice not in ("auto", "httpx", "aiohttp"):
        raise HarnessError(f"CGD_HTTP_TRANSPORT: unknown transport '{choice}'; available: auto, httpx, aiohttp")
    if choice != "auto":
        return choice
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return "httpx"
    return "aiohttp"


def _http_client(sdk: Any, policy: SendPolicy) -> Any:
    httpx_module = _httpx(sdk)
    _, size = _pool_sizes(policy)
    # Keep one connection per concurrent request alive: the SDK default keeps 100, and past that every request
    # would pay a new TCP (and TLS) handshake.
    limits = httpx_module.Limits(max_connections=size, max_keepalive_connections=size)
    if http_transport() == "aiohttp" and hasattr(sdk, "DefaultAioHttpClient"):
        return sdk.DefaultAioHttpClient(limits=limits)
    return sdk.DefaultAsyncHttpxClient(limits=limits)


class _ClientPool:
    """A few SDK clients used in turn (see `_pool_sizes`); `first` serves the batch and file endpoints."""

    def __init__(self, make: Any, policy: SendPolicy) -> None:
        n, _ = _pool_sizes(policy)
        self.clients = [make() for _ in range(n)]
        self._turn = itertools.cycle(range(n))

    @property
    def first(self) -> Any:
        return self.clients[0]

    def next(self) -> Any:
        return self.clients[next(self._turn)]

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


class SDKBackend(Backend):
    """What the SDK-backed back-ends share: the key from the environment and a lazily built pool of clients."""

    @property
    def key_required(self) -> bool:
        """From the back-end's registration (`needs_key`); an SDK back-end nobody registered needs one."""
        from harness.llm import find_provider

        info = find_provider(self.name)
        return info.needs_key if info is not None else True

    def __init__(self, model: str, *, base_url: str | None, api_key_env: str | None,
                 policy: SendPolicy | None = None) -> None:
        super().__init__(model, policy=policy)
        self.base_url = base_url
        self._key = api_key_from_env(api_key_env, required=self.key_required, provider=self.name) or "EMPTY"
        self._pool: _ClientPool | None = None

    def _make_client(self) -> Any:
        raise NotImplementedError

    @property
    def pool(self) -> _ClientPool:
        if self._pool is None:
            self._pool = _ClientPool(self._make_client, self.policy)
        return self._pool

    @property
    def client(self) -> Any:
        return self.pool.first

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class OpenAICompatBackend(SDKBackend):
    """Chat completions on any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, transformers serve)."""

    name = "openai_compat"

    def _make_client(self) -> Any:
        import openai

        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self._key, timeout=self.policy.timeout_s,
                                  max_retries=0, http_client=_http_client(openai, self.policy))

    async def complete(self, request: ChatRequest) -> ChatResult:
        """One chat completion. Sent with the SDK's raw `post` (its documented way to call an endpoint directly):
        the same client, auth, timeouts and error classes, without the typed layer's request transform and
        response models, which cost more CPU than everything else here at hundreds of requests per second."""
        import openai

        client = self.pool.next()
        try:
            resp = await client.post("/chat/completions", body=openai_chat_params(self.model, request),
                                     cast_to=_httpx(openai).Response)
        except (openai.APIError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise to_llm_error(exc, openai, self._key) from None
        try:
            return openai_result(json.loads(resp.content))
        except Exception as exc:  # noqa: BLE001 - not JSON, or not the schema
            raise _malformed(exc) from None


@functools.cache
def _httpx(sdk: Any) -> Any:
    """The HTTP library the SDK is built on (httpx2 for the current SDKs, httpx for older ones)."""
    import importlib

    return importlib.import_module(sdk.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0])


class OpenAIBackend(OpenAICompatBackend, BatchBackend):
    name = "openai"

    async def submit_batch(self, items: list[tuple[str, ChatRequest]], tag: str) -> str:
        import openai

        lines = [json.dumps({"custom_id": self.custom_id(key), "method": "POST", "url": "/v1/chat/completions",
                             "body": openai_chat_params(self.model, req)}) for key, req in items]
        data = ("\n".join(lines) + "\n").encode()
        try:
            upload = await self.client.files.create(file=(f"cgd-{tag}.jsonl", io.BytesIO(data)), purpose="batch")
            batch = await self.client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                                     completion_window="24h", metadata={"cgd_tag": tag})
        except Exception as exc:  # noqa: BLE001
            raise to_llm_error(exc, openai, self._key) from None
        return batch.id

    async def batch_state(self, batch_id: str) -> BatchState:
        import openai

        try:
            batch = await self.client.batches.retrieve(batch_id)
        except Exception as exc:  # noqa: BLE001
            raise to_llm_error(exc, openai, self._key) from None
        counts = batch.request_counts
        detail = f"{batch.status}" + (f" {counts.completed + counts.failed}/{counts.total}" if counts else "")
        if batch.status == "completed":
            return BatchState("ended", detail)
        if batch.status in ("failed", "expired", "cancelled"):
            # An expired or cancelled batch still has an output file with what did finish.
            return BatchState("ended" if batch.output_file_id else "failed", detail)
        return BatchState("running", detail)

    async def batch_results(self, batch_id: str) -> dict[str, ChatResult | LLMError]:
        import openai

        try:
            batch = await self.client.batches.retrieve(batch_id)
            texts = []
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    texts.append((await self.client.files.content(file_id)).text)
        except Exception as exc:  # noqa: BLE001
            raise to_llm_error(exc, openai, self._key) from None
        items: list[tuple[str, ChatResult | LLMError]] = []
        for text in texts:
            for line in text.splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                response, error = row.get("response") or {}, row.get("error")
                status = response.get("status_code")
                if status == 200 and not error:
                    try:
                        items.append((row["custom_id"], openai_result(response["body"])))
                    except (KeyError, TypeError, ValueError) as exc:
                        items.append((row["custom_id"], LLMError(f"malformed batch result: {exc}", retryable=True)))
                    continue
                message = (error or {}).get("message") or json.dumps((response.get("body") or {}).get("error"))
                retryable = status is None or status in RETRYABLE_STATUS or status >= 500
                items.append((row["custom_id"], LLMError(f"batch item failed (HTTP {status}): {message[:200]}",
                                                         retryable=retryable, status=status)))
        return _group_samples(items)

    async def find_batch(self, tag: str, count: int, since: float) -> str | None:
        import openai

        try:
            page = await self.client.batches.list(limit=100)
        except Exception as exc:  # noqa: BLE001
            raise to_llm_error(exc, openai, self._key) from None
        for batch in page.data:
            if (batch.metadata or {}).get("cgd_tag") == tag:
                return batch.id
        return None


class AnthropicBackend(SDKBackend, BatchBackend):
    name = "anthropic"

    def _make_client(self) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(base_url=self.base_url, api_key=self._key, timeout=self.policy.timeout_s,
                                        max_retries=0, http_client=_http_client(anthropic, self.policy))

    async def complete(self, request: ChatRequest) -> ChatResult:
        """One message per sample (the Messages API has no `n`), through the SDK's raw `post` like the OpenAI
        back-end: same client, auth, headers, timeouts and error classes, less CPU per request."""
        import anthropic

        params = anthropic_message_params(self.model, request)
        results = []
        for _ in range(request.n):
            try:
                resp = await self.pool.next().post("/v1/messages", body=params, cast_to=_httpx(anthropic).Response)
            except (anthropic.APIError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise to_llm_error(exc, anthropic, self._key) from None
            try:
                results.append(anthropic_result(json.loads(resp.content)))
            except Exception as exc:  # noqa: BLE001 - not JSON, or not the schema
                raise _malformed(exc) from None
        return merge(results)

    async def submit_batch(self, items: list[tuple[str, ChatRequest]], tag: str) -> str:
        import anthropic

        requests = [{"custom_id": self.custom_id(key, j), "params": anthropic_message_params(self.model, req)}
                    for key, req in items for j in range(req.n)]
        try:
            batch = await self.client.messages.batches.create(requests=requests)
        except Exception as exc:  # noqa: BLE001
            raise to_llm_error(exc, anthropic, self._key) from None
        return batch.id

    async def batch_state(self, batch_id: str) -> BatchState:
        import anthropic

        try:
            batch = await self.client.messages.batches.retrieve(batch_id)
        except Exception as exc:  # noqa: BLE001
            raise to_llm_error(exc, anthropic, self._key) from None
        c = batch.request_counts
        detail = (f"{batch.processing_status}: {c.succeeded} ok, {c.errored} errored, {c.processing} processing, "
                  f"{c.expired} expired")
        return BatchState("ended" if batch.processing_status == "ended" else "running", detail)

    async def batch_results(self, batch_id: str) -> dict[str, ChatResult | LLMError]:
        import anthropic

        items: list[tuple[str, ChatResult | LLMError]] = []
        try:
            async for item in await self.client.messages.batches.results(batch_id):
                result = item.result
                if result.type == "succeeded":
                    items.append((item.custom_id, anthropic_result(result.message.model_dump())))
                elif result.type == "errored":
                    kind = result.error.error.type
                    retryable = kind not in ("invalid_request_error", "authentication_error", "permission_error",
                                             "not_found_error", "billing_error")
                    items.append((item.custom_id, LLMError(f"batch item errored: {kind}: {result.error.error.message}"
                                                           [:300], retryable=retryable)))
                else:  # canceled or expired: never processed, so try again
                    items.append((item.custom_id, LLMError(f"batch item {result.type}", retryable=True)))
        except Exception as exc:  # noqa: BLE001
            raise to_llm_error(exc, anthropic, self._key) from None
        return _group_samples(items)

    async def find_batch(self, tag: str, count: int, since: float) -> str | None:
        """Anthropic batches carry no metadata: adopt the one batch created after `since` with `count` requests
        (only used after a kill in the instant between submitting and recording the id)."""
        import anthropic

        try:
            page = await self.client.messages.batches.list(limit=100)
        except Exception as exc:  # noqa: BLE001
            raise to_llm_error(exc, anthropic, self._key) from None
        found = []
        for batch in page.data:
            c = batch.request_counts
            total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
            if batch.created_at.timestamp() >= since - 5 and total == count:
                found.append(batch.id)
        return found[0] if len(found) == 1 else None

    def batch_request_count(self, items: list[tuple[str, ChatRequest]]) -> int:
        """The Messages API has no `n`: a request with n samples is n batch items (`self.custom_id(key, j)`)."""
        return sum(req.n for _, req in items)
