"""Synthetic two-step arithmetic word problems with worked reference solutions.

A problem is `start, (op1, x), (op2, y)`; its question reads like a (very short) word problem and its solution
shows each step as an equation, then the answer in \\boxed{}. The format is small enough for a sub-million
parameter student to learn partly in a minute of warm-up, which is what makes its drafts useful: often wrong.

`python -m harness.tiny.problems` rewrites data/tiny/*.jsonl; a test checks the shipped files match.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from harness.paths import PROJECT_ROOT

DATA_DIR = PROJECT_ROOT / "data" / "tiny"
PHRASES = {"+": "add {x}", "-": "subtract {x}", "*": "multiply by {x}"}
QUESTION_RE = re.compile(r"Start with (\d+), (add|subtract|multiply by) (\d+), then (add|subtract|multiply by) (\d+)\.")
WORD_TO_OP = {"add": "+", "subtract": "-", "multiply by": "*"}
# Split sizes: the warm-up split teaches the student the format; train holds the recipe's prompts (never seen in
# warm-up, so drafts are real attempts); test is the held-out evaluation suite.
SPLITS = {"warmup": (4000, 11), "train": (400, 22), "test": (200, 33)}
"""split -> (rows, seed)."""


def apply(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


@dataclass(frozen=True)
class Problem:
    start: int
    op1: str
    x: int
    op2: str
    y: int

    @property
    def steps(self) -> list[tuple[int, str, int, int]]:
        """(left, op, right, result) per step."""
        mid = apply(self.op1, self.start, self.x)
        return [(self.start, self.op1, self.x, mid), (mid, self.op2, self.y, apply(self.op2, mid, self.y))]

    @property
    def answer(self) -> int:
        return self.steps[-1][3]

    @property
    def question(self) -> str:
        first = PHRASES[self.op1].format(x=self.x)
        second = PHRASES[self.op2].format(x=self.y)
        return f"Start with {self.start}, {first}, then {second}. What is the result?"

    @property
    def solution(self) -> str:
        lines = [f"{a}{op}{b}={r}." for a, op, b, r in self.steps]
        return " ".join(lines) + f" The answer is \\boxed{{{self.answer}}}."


def parse_question(text: str) -> Problem | None:
    """Find a problem's question anywhere in a text (a prompt, or a teacher request that quotes it)."""
    m = QUESTION_RE.search(text)
    if not m:
        return None
    return Problem(int(m[1]), WORD_TO_OP[m[2]], int(m[3]), WORD_TO_OP[m[4]], int(m[5]))


def sample(rng: random.Random) -> Problem:
    """Small numbers keep the arithmetic learnable by a sub-million parameter model in a minute or two."""
    start = rng.randint(2, 30)
    op1 = rng.choice("+-*")
    x = rng.randint(2, 5) if op1 == "*" else rng.randint(2, 20)
    if op1 == "-":
        x = rng.randint(1, start)  # keep intermediate results non-negative
    mid = apply(op1, start, x)
    op2 = rng.choice("+-") if mid > 60 else rng.choice("+-*")
    y = rng.randint(2, 5) if op2 == "*" else rng.randint(2, 20)
    if op2 == "-":
        y = rng.randint(1, max(1, mid))
    return Problem(start, op1, x, op2, y)


def generate(n: int, seed: int, exclude: set[str] | None = None) -> list[Problem]:
    rng = random.Random(seed)
    seen = set(exclude or ())
    out: list[Problem] = []
    while len(out) < n:
        p = sample(rng)
        if p.question in seen:
            continue
        seen.add(p.question)
        out.append(p)
    return out


def row(p: Problem, index: int, split: str) -> dict:
    # Like many real instruction sets, the recipe's own split answers tersely (the SFT target), while the
    # warm-up split and the teacher show their work: SFT and distilled SFT then differ as in the paper.
    answer = f"The answer is \\boxed{{{p.answer}}}." if split == "train" else p.solution
    return {"id": f"{split}-{index:05d}", "question": p.question, "answer": answer, "final": str(p.answer)}


def build_splits() -> dict[str, list[dict]]:
    """Disjoint splits: no question appears in two of them."""
    taken: set[str] = set()
    out = {}
    for split, (n, seed) in SPLITS.items():
        problems = generate(n, seed, exclude=taken)
        taken |= {p.question for p in problems}
        out[split] = [row(p, i, split) for i, p in enumerate(problems)]
    return out


def write_splits(folder: Path = DATA_DIR) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in build_splits().items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    write_splits()
