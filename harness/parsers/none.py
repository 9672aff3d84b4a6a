"""The text as generated (the default).

For models that write their answer and nothing else.
"""

from __future__ import annotations

NAME = "none"


def parse(text: str) -> str:
    return text
