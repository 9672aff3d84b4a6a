"""Back-end `vllm`: the harness serves the model itself (`vllm serve`, or `transformers serve` on CPU) for the
stage's duration and talks to it through the OpenAI-compatible client."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from harness.llm.base import ChatRequest, ChatResult, SendPolicy
from harness.llm.remote import OpenAICompatBackend, merge
from harness.llm.server import ServerLauncher, ServeSettings


class VLLMBackend(OpenAICompatBackend):
    name = "vllm"

    def __init__(self, model: str, *, serve: ServeSettings, api_key_env: str | None = None,
                 policy: SendPolicy | None = None, workdir: Path | None = None) -> None:
        super().__init__(model, base_url=None, api_key_env=api_key_env, policy=policy)
        self.launcher = ServerLauncher(model, serve, log_path=(workdir / "server.log") if workdir else None)
        self._start_lock: asyncio.Lock | None = None

    async def start(self) -> None:
        if self.base_url is not None:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self.base_url is None:
                url = await asyncio.to_thread(self.launcher.start)
                self.base_url = f"{url}/v1"

    async def complete(self, request: ChatRequest) -> ChatResult:
        await self.start()
        if request.n > 1 and self.launcher.settings.flavor == "transformers":
            # transformers serve ignores `n`: ask n times, each sample with its own seed
            samples = [replace(request, n=1, seed=None if request.seed is None else request.seed + j)
                       for j in range(request.n)]
            return merge(list(await asyncio.gather(*(super(VLLMBackend, self).complete(s) for s in samples))))
        return await super().complete(request)

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            self.launcher.stop()
            self.base_url = None
