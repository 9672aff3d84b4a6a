"""pass@k from n samples per problem (the unbiased estimator of Chen et al., 2021), for lm-eval tasks and EvalPlus."""

from __future__ import annotations

from collections.abc import Callable
from math import comb
from typing import Any


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k samples drawn from n (c of them correct) is correct."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def passk_results(doc: dict[str, Any], results: list[str], *, base: Callable[..., dict[str, float]],
                  metric: str = "exact_match", ks: tuple[int, ...] = (1,)) -> dict[str, float]:
    """lm-eval process_results for n sampled responses: each is scored by the task's own process_results (`base`);
    returns the mean accuracy (`metric`) and pass@k for each k."""
    if len(results) == 1 and isinstance(results[0], list | tuple):  # the take_first_k filter keeps them as one list
        results = list(results[0])
    correct = [float(base(doc, [r])[metric]) >= 1.0 for r in results]
    n, c = len(correct), sum(correct)
    out = {metric: c / n if n else 0.0}
    out.update({f"pass@{k}": pass_at_k(n, c, k) for k in ks})
    return out
