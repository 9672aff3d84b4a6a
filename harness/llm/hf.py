"""In-process batched generation with transformers (CPU or one GPU).

A model whose tokenizer has a chat template gets its messages through it (with the generation prompt). A base model
without one gets the official CGD code's plain-completion fallback (CapitalOne-Research/
Critique-Guided-Distillation, src/cgd_pipeline.py, `VLLMClient._to_prompt`): the first user message as
"Question: {q}\n\nAnswer:", system turns dropped, tokenized as plain text (with the tokenizer's BOS, as vLLM's
`generate` on a string prompt adds it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from harness.llm.base import Backend, ChatRequest, ChatResult


def completion_prompt(messages: Sequence[dict[str, str]]) -> str:
    """The official base-model prompt: the first user message as a question to complete."""
    question = next((m.get("content", "") for m in messages if m.get("role") == "user"), "")
    return f"Question: {question}\n\nAnswer:"


def has_chat_template(tokenizer: Any) -> bool:
    """As the official `has_chat_template`: the tokenizer defines one."""
    return getattr(tokenizer, "chat_template", None) is not None


class HFBackend(Backend):
    name = "hf"

    def __init__(self, model: str, *, batch_size: int = 32, max_concurrency: int = 1) -> None:
        super().__init__(model, max_concurrency=max_concurrency)
        self.batch_size = batch_size
        self._model: Any = None
        self._tok: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(self.model)
        self._tok.padding_side = "left"  # generation appends on the right; left padding keeps rows aligned
        if self._tok.pad_token is None:
            self._tok.pad_token = self._tok.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self._model = AutoModelForCausalLM.from_pretrained(self.model, dtype=dtype).to(device).eval()

    def _generate(self, batch: Sequence[ChatRequest]) -> list[ChatResult]:
        import torch

        self._load()
        first = batch[0]
        convs = [r.message_dicts() for r in batch]
        if has_chat_template(self._tok):
            enc = self._tok.apply_chat_template(convs, add_generation_prompt=True, return_dict=True,
                                                return_tensors="pt", padding=True).to(self._model.device)
        else:  # a base model: the official plain-completion prompt
            enc = self._tok([completion_prompt(c) for c in convs], return_tensors="pt", padding=True,
                            return_token_type_ids=False).to(self._model.device)
        sample = first.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": first.max_tokens, "do_sample": sample,
                                  "num_return_sequences": first.n, "pad_token_id": self._tok.pad_token_id}
        if sample:
            kwargs.update(temperature=first.temperature, top_p=first.top_p)
            if first.seed is not None:
                torch.manual_seed(first.seed)
        with torch.inference_mode():
            out = self._model.generate(**enc, **kwargs)
        prompt_len = enc["input_ids"].shape[1]
        gen = out[:, prompt_len:]
        eos = self._tok.eos_token_id
        results = []
        for i in range(len(batch)):
            rows = gen[i * first.n:(i + 1) * first.n]
            texts = self._tok.batch_decode(rows, skip_special_tokens=True)
            reasons = ["stop" if eos in row.tolist() else "length" for row in rows]
            n_out = sum(int((row != self._tok.pad_token_id).sum()) for row in rows)
            n_in = int(enc["attention_mask"][i].sum())
            results.append(ChatResult(texts=[t.strip() for t in texts], finish_reasons=reasons,
                                      input_tokens=n_in, output_tokens=n_out))
        return results

    async def stream(self, requests: Sequence[ChatRequest], admission: Any = None
                     ) -> AsyncIterator[tuple[int, ChatResult | Exception]]:
        # Batch requests that share generation parameters; each batch runs in a worker thread.
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.temperature, r.top_p, r.max_tokens, r.n, r.seed), []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                try:
                    results = await asyncio.to_thread(self._generate, [requests[i] for i in chunk])
                except Exception as exc:  # noqa: BLE001 - recorded per request by the caller
                    for i in chunk:
                        yield i, exc
                    continue
                for i, result in zip(chunk, results, strict=True):
                    yield i, result

    async def complete(self, request: ChatRequest) -> ChatResult:
        return (await asyncio.to_thread(self._generate, [request]))[0]

    async def aclose(self) -> None:
        self._model = None
