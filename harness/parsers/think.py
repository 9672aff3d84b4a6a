"""`<think>...</think>` reasoning blocks (DeepSeek-R1 and its distills, Qwen3, QwQ): removed.

Every closed block goes; when the chat template opened the block in the prompt (the output holds a lone
`</think>`), what follows the last `</think>` is kept. A block never closed (cut off while thinking) leaves the
text unchanged, like the s1 parser's fallback. Not in the official CGD code, which has no such model.
"""

from __future__ import annotations

import re

NAME = "think"
BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
CLOSE = "</think>"


def parse(text: str) -> str:
    if "<think>" not in text and CLOSE not in text:
        return text
    out = BLOCK.sub("", text)
    if CLOSE in out:
        out = out.rsplit(CLOSE, 1)[1]
    if "<think>" in out:  # never closed: the answer was not reached
        return text
    return out.strip()
