"""S1.1 (simplescaling/s1.1-*): keep what follows the `answer\\s+Answer` marker, drop the thinking trace.

S1.1 writes `think ... answer\\nAnswer: ...` (its `<|im_start|>` turn markers are special tokens, gone once
decoded). Reproduces `PromptFormatter._parse_s1_1_response` of the official code
(CapitalOne-Research/Critique-Guided-Distillation, src/cgd_pipeline.py): a case-insensitive split at the first
`answer\\s+Answer`, the rest with leading colons and spaces removed, then stripped; without the marker (a trace cut
off before its answer) the text is kept unchanged.
"""

from __future__ import annotations

import re

NAME = "s1"
MARKER = re.compile(r"answer\s+Answer", re.IGNORECASE)


def parse(text: str) -> str:
    parts = MARKER.split(text, maxsplit=1)
    if len(parts) > 1:
        return parts[1].lstrip(": ").strip()
    return text
