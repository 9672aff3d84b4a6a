"""The tiny world's teacher: it reads the synthetic problem out of the prompt and answers exactly."""

from __future__ import annotations

import asyncio
import os

from harness.llm.base import Backend, ChatRequest, ChatResult
from harness.tiny.oracle import respond


class OracleBackend(Backend):
    name = "oracle"

    async def complete(self, request: ChatRequest) -> ChatResult:
        # CGD_ORACLE_LATENCY_S simulates an API's latency (benchmarks, kill-and-resume tests);
        # CGD_ORACLE_CALL_LOG appends one line per call, so tests can count what was really sent.
        await asyncio.sleep(float(os.environ.get("CGD_ORACLE_LATENCY_S", "0")))
        text = respond(request.message_dicts())
        if log := os.environ.get("CGD_ORACLE_CALL_LOG"):
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(request.messages[-1][1][:60].replace("\n", " ") + "\n")
        words_in = sum(len(content.split()) for _, content in request.messages)
        return ChatResult(texts=[text] * request.n, finish_reasons=["stop"] * request.n,
                          input_tokens=words_in, output_tokens=len(text.split()) * request.n)
