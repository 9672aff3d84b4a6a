"""A random (not warmed-up) tiny student for tests: same tokenizer and architecture as the demo's, built in seconds."""

from __future__ import annotations

from pathlib import Path

from harness.prompts import available_styles, load_style
from harness.store import read_jsonl
from harness.tiny.problems import DATA_DIR
from harness.tiny.student import build_tiny_student


def build_random_tiny_model(out: Path, *, hidden_size: int = 64, num_layers: int = 2) -> Path:
    corpus = [text for name in available_styles() for text in load_style(name).corpus()]
    rows = read_jsonl(DATA_DIR / "warmup.jsonl")[:400]
    build_tiny_student(out, train_rows=rows, extra_corpus=corpus, warmup_steps=0, hidden_size=hidden_size,
                       num_layers=num_layers)
    return out
