"""Prompt files in the recipe's JSONL schema, made from the tiny world's generator."""

from __future__ import annotations

import json
from pathlib import Path

from harness.tiny.problems import generate


def write_prompts(path: Path, n: int, seed: int) -> Path:
    """n distinct problems as {"id": "q000", "question", "answer"} rows (ids sort in file order)."""
    rows = [{"id": f"q{i:03d}", "question": p.question, "answer": p.solution} for i, p in enumerate(generate(n, seed))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
