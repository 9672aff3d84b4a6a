"""nvidia/Llama-Nemotron-Post-Training-Dataset, SFT math (v1.1; the official CGD code's
`nemotron_sft_math_v1.1_chunk_0`, read by its `_process_generic_chat_format`).

Fields: `input` (a list of {role, content} messages), `output` (the assistant's answer), `category`, `license`,
`reasoning`, `generator`, `used_in_training`, `version`, `system_prompt`. The conversation is looked for under
`input`, `messages` or `conversations` (in that order, as the official code does); the prompt is the first user
turn, the reference the first assistant turn, else `output`."""

from __future__ import annotations

from typing import Any

from harness.data.processors import text

NAME = "nemotron_sft_math"
SOURCE = "nvidia/Llama-Nemotron-Post-Training-Dataset (SFT math)"
LICENSE = "cc-by-4.0"  # the source dataset's licence (its Hub card), shown in dataset cards
FIELDS = ("input", "messages", "conversations", "output")


def process(row: dict[str, Any]) -> dict[str, Any] | None:
    conversation = next((row[k] for k in ("input", "messages", "conversations") if isinstance(row.get(k), list)),
                        None)
    if not conversation:
        return None
    prompt = answer = None
    for message in conversation:
        if isinstance(message, dict) and "role" in message and "content" in message:
            if message["role"] == "user" and prompt is None:
                prompt = text(message["content"])
            if message["role"] == "assistant" and answer is None:
                answer = text(message["content"])
    if prompt is None:
        return None
    return {"prompt": prompt, "reference": answer if answer is not None else text(row.get("output"))}
