"""gpt-oss (Harmony format): keep the final channel, drop the analysis channel.

Reproduces `parse_harmony_final` of the official code (CapitalOne-Research/Critique-Guided-Distillation,
src/cgd_pipeline.py): the text after `<|start|>assistant<|final|>` up to `<|return|>` (else `<|end|>`), else after
`assistantfinal` (what is left of the markers once special tokens are stripped: `analysis...assistantfinal...`),
else the whole text, stripped. The Harmony spec's own marker, `<|channel|>final<|message|>`, is read the same way
(checked after the official one). A served gpt-oss (vLLM's chat endpoint) already returns the final channel as the
message content: there the parser changes nothing.
"""

from __future__ import annotations

NAME = "harmony"
OFFICIAL_FINAL = "<|start|>assistant<|final|>"
CHANNEL_FINAL = "<|channel|>final<|message|>"
RETURN, END = "<|return|>", "<|end|>"


def _until_end(after: str) -> str:
    for tag in (RETURN, END):
        if tag in after:
            return after.split(tag, 1)[0].strip()
    return after.strip()


def parse(text: str) -> str:
    if not text:
        return text.strip()
    for tag in (OFFICIAL_FINAL, CHANNEL_FINAL):
        if tag in text:
            return _until_end(text.split(tag, 1)[1])
    if "assistantfinal" in text:
        return text.split("assistantfinal", 1)[1].lstrip(":\n\r -").strip()
    return text.strip()
