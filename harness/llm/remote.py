"""Paid and served back-ends through the official async SDKs: OpenAI-compatible servers, OpenAI, Anthropic.

The SDKs retry 408/409/429/5xx and connection errors themselves (with backoff honouring retry-after); what is
left after `max_retries` comes out as an LLMError.
"""

from __future__ import annotations

import os
from typing import Any

from harness.errors import HarnessError
from harness.llm.base import Backend, ChatRequest, ChatResult, LLMError


def api_key_from_env(env_name: str | None, *, required: bool, provider: str) -> str | None:
    """Keys come only from the environment variable the recipe names; they are never stored."""
    if env_name is None:
        if required:
            raise HarnessError(f"{provider} needs an API key: set teacher.api_key_env to the variable holding it")
        return None
    value = os.environ.get(env_name)
    if not value and required:
        raise HarnessError(f"environment variable {env_name} (api_key_env) is not set")
    return value


def _status_error(exc: Exception) -> LLMError:
    status = getattr(exc, "status_code", None)
    retryable = status is None or status in (408, 409, 429) or (status is not None and status >= 500)
    return LLMError(f"{type(exc).__name__}: {exc}", retryable=retryable, status=status)


class OpenAICompatBackend(Backend):
    """Chat completions on any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, transformers serve)."""

    name = "openai_compat"
    key_required = False

    def __init__(self, model: str, *, base_url: str | None, api_key_env: str | None, max_concurrency: int = 16,
                 timeout_s: float = 600.0, max_retries: int = 6) -> None:
        super().__init__(model, max_concurrency=max_concurrency)
        import openai

        key = api_key_from_env(api_key_env, required=self.key_required, provider=self.name) or "EMPTY"
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=key, timeout=timeout_s,
                                          max_retries=max_retries)

    async def complete(self, request: ChatRequest) -> ChatResult:
        import openai

        params: dict[str, Any] = {"model": self.model, "messages": request.message_dicts(),
                                  "temperature": request.temperature, "top_p": request.top_p,
                                  "max_tokens": request.max_tokens}
        if request.n > 1:
            params["n"] = request.n
        if request.seed is not None:
            params["seed"] = request.seed
        if request.stop:
            params["stop"] = list(request.stop)
        try:
            resp = await self._client.chat.completions.create(**params)
        except openai.APIError as exc:
            raise _status_error(exc) from None
        texts = [(c.message.content or "") for c in resp.choices]
        usage = resp.usage
        return ChatResult(texts=texts, finish_reasons=[c.finish_reason or "" for c in resp.choices],
                          input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                          output_tokens=getattr(usage, "completion_tokens", 0) or 0)

    async def aclose(self) -> None:
        await self._client.close()


class OpenAIBackend(OpenAICompatBackend):
    name = "openai"
    key_required = True


class AnthropicBackend(Backend):
    name = "anthropic"

    def __init__(self, model: str, *, base_url: str | None, api_key_env: str | None, max_concurrency: int = 16,
                 timeout_s: float = 600.0, max_retries: int = 6) -> None:
        super().__init__(model, max_concurrency=max_concurrency)
        import anthropic

        key = api_key_from_env(api_key_env, required=True, provider=self.name)
        self._client = anthropic.AsyncAnthropic(base_url=base_url, api_key=key, timeout=timeout_s,
                                                max_retries=max_retries)

    async def complete(self, request: ChatRequest) -> ChatResult:
        import anthropic

        system = "\n\n".join(c for r, c in request.messages if r == "system")
        messages = [m for m in request.message_dicts() if m["role"] != "system"]
        params: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": request.max_tokens,
                                  "temperature": request.temperature}
        if request.top_p < 1.0:
            params["top_p"] = request.top_p
        if system:
            # The shared system prompt is cached by the provider: later requests pay the cached-input price.
            params["system"] = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        texts, reasons, n_in, n_out, n_cached = [], [], 0, 0, 0
        for _ in range(request.n):  # the Messages API has no `n`
            try:
                msg = await self._client.messages.create(**params)
            except anthropic.APIError as exc:
                raise _status_error(exc) from None
            texts.append("".join(getattr(block, "text", "") for block in msg.content))
            reasons.append(msg.stop_reason or "")
            usage = msg.usage
            n_in += getattr(usage, "input_tokens", 0) or 0
            n_out += getattr(usage, "output_tokens", 0) or 0
            n_cached += getattr(usage, "cache_read_input_tokens", 0) or 0
        return ChatResult(texts=texts, finish_reasons=reasons, input_tokens=n_in, output_tokens=n_out,
                          cached_input_tokens=n_cached)

    async def aclose(self) -> None:
        await self._client.close()
