"""Critique noise for the CGD dataset: a seeded share of critiques corrupted in one of three ways.

The examples to corrupt are a seeded sample of round(rate x n); every other example's critique is left byte for
byte as it was, so a noise ablation differs from the clean dataset only where it says it does.
"""

from __future__ import annotations

import random
import re

from harness.grading import VERDICT_RE

NUMBER = re.compile(r"(?<![\w.])\d+(?![\w.])")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def flip_verdict(critique: str, rng: random.Random) -> str:
    """The last `Conclusion: right|wrong` says the opposite (a critique without one gets a wrong verdict added)."""
    matches = list(VERDICT_RE.finditer(critique))
    if not matches:
        return critique.rstrip() + "\n\nConclusion: wrong"
    last = matches[-1]
    word = last.group(1)
    flipped = "wrong" if word.lower() in ("right", "correct") else "right"
    start, end = last.span(1)
    return critique[:start] + (flipped.capitalize() if word[:1].isupper() else flipped) + critique[end:]


def wrong_step(critique: str, rng: random.Random) -> str:
    """One number in the critique changed (seeded), so it points at a step or value the draft does not have."""
    numbers = list(NUMBER.finditer(critique))
    if not numbers:
        return critique.rstrip() + f"\n\nThe error is in step {rng.randint(2, 9)}."
    pick = numbers[rng.randrange(len(numbers))]
    value = int(pick.group())
    return critique[:pick.start()] + str(value + rng.randint(1, 9)) + critique[pick.end():]


def shuffle(critique: str, rng: random.Random) -> str:
    """The critique's sentences in a seeded order that differs from the original (words, for one sentence)."""
    parts = [p for p in SENTENCE_END.split(critique.strip()) if p]
    joiner = " "
    if len(parts) < 2:
        parts, joiner = critique.split(), " "
    if len(set(parts)) < 2:
        return critique.rstrip() + " " + critique.strip()  # nothing to reorder: repeat it (still corrupted)
    order = list(range(len(parts)))
    while order == sorted(order):
        rng.shuffle(order)
    return joiner.join(parts[i] for i in order)


KINDS = {"flip_verdict": flip_verdict, "wrong_step": wrong_step, "shuffle": shuffle}


def corrupt(critiques: list[str], rate: float, kind: str, seed: int) -> tuple[list[str], list[int]]:
    """(critiques with a seeded round(rate x n) of them corrupted, the indices corrupted, ascending)."""
    rng = random.Random(f"critique-noise:{kind}:{seed}")
    chosen = sorted(rng.sample(range(len(critiques)), round(rate * len(critiques))))
    out = list(critiques)
    for i in chosen:
        out[i] = KINDS[kind](critiques[i], random.Random(f"critique-noise:{seed}:{i}"))
    return out, chosen
