"""Paired bootstrap intervals for the difference between two rows on the same items.

Items come from the per-sample logs each result row points at (`samples`): lm-eval's samples_<task>_<time>.jsonl
(one line per document and filter, with the metric's per-item value), a glob of them for a group task, or EvalPlus's
samples_eval_results.json. Two rows are paired by document id; a row trained with several seeds scores an item by
its mean over the seeds. The interval is the percentile interval of the mean difference over `resamples` seeded
resamples of the paired items.
"""

from __future__ import annotations

import functools
import glob
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

CHUNK = 256  # resamples drawn at once (bounds memory on large benchmarks)
_TASK_RE = re.compile(r"^samples_(.*)_\d{4}-\d{2}-\d{2}T[\d.\-]+\.jsonl$")


@functools.lru_cache(maxsize=256)
def item_scores(path: str, metric: str, benchmark: str = "") -> dict[Any, float]:
    """{item id: score in 0..1} from one per-sample log (or a glob of them); {} when it cannot be read."""
    if path.endswith(".json"):
        return _evalplus_scores(Path(path), plus=benchmark.endswith("_plus"))
    files = sorted(glob.glob(path)) if any(ch in path for ch in "*?[") else [path]
    name, _, filt = metric.partition(",")
    filt = filt or "none"
    scores: dict[Any, float] = {}
    for file in files:
        match = _TASK_RE.match(Path(file).name)
        task = (match.group(1) if match else Path(file).name) if len(files) > 1 else None
        try:
            lines = Path(file).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec.get("filter", "none") != filt and not (filt == "none" and "filter" not in rec):
                continue
            value = rec.get(name)
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, int | float) or "doc_id" not in rec:
                continue
            scores[(task, rec["doc_id"]) if task else rec["doc_id"]] = float(value)
    return scores


def _evalplus_scores(path: Path, plus: bool) -> dict[Any, float]:
    try:
        per_task = json.loads(path.read_text())["eval"]
    except (OSError, KeyError, ValueError):
        return {}
    out = {}
    for task, results in per_task.items():
        if not results:
            continue
        ok = [r["base_status"] == "pass" and (not plus or r.get("plus_status") == "pass") for r in results]
        out[task] = sum(ok) / len(ok)
    return out


def row_items(samples: dict[Any, tuple[str, str]], benchmark: str) -> dict[Any, float]:
    """One row's per-item scores on a benchmark: the mean over its seeds, on the items every seed has."""
    per_seed = [item_scores(path, metric, benchmark) for path, metric in samples.values()]
    per_seed = [s for s in per_seed if s]
    if not per_seed:
        return {}
    common = set.intersection(*(set(s) for s in per_seed))
    return {k: sum(s[k] for s in per_seed) / len(per_seed) for k in common}


def paired_bootstrap(a: dict[Any, float], b: dict[Any, float], *, resamples: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> tuple[float, float, float, int] | None:
    """(mean of b - a, low, high, n) over the items both have, x100; None when they share no items."""
    keys = sorted(set(a) & set(b), key=str)
    if not keys:
        return None
    diffs = np.array([b[k] - a[k] for k in keys], dtype=np.float64)
    n = len(diffs)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, CHUNK):
        size = min(CHUNK, resamples - start)
        means[start:start + size] = diffs[rng.integers(0, n, size=(size, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return 100.0 * float(diffs.mean()), 100.0 * float(low), 100.0 * float(high), n


def paired_table(table: Any, pairs: list[tuple[str, str]], *, resamples: int, seed: int,
                 confidence: float) -> tuple[list[Any], list[str]]:
    """Intervals for each (row, row) pair on each benchmark both rows have per-sample logs for."""
    from harness.report.model import PairedDiff, find_row

    out, notes = [], []
    bench_cols = [c.id for g in table.groups for c in g.benchmarks]
    for a_name, b_name in pairs:
        a, b = find_row(table, a_name), find_row(table, b_name)
        if a is None or b is None:
            missing = a_name if a is None else b_name
            notes.append(f"paired bootstrap: no row '{missing}' (rows: {', '.join(r.key for r in table.rows)})")
            continue
        for col in bench_cols:
            if col not in a.samples or col not in b.samples:
                continue
            benchmark = col.split("/")[0]
            found = paired_bootstrap(row_items(a.samples[col], benchmark), row_items(b.samples[col], benchmark),
                                     resamples=resamples, seed=seed, confidence=confidence)
            if found is None:
                notes.append(f"paired bootstrap: {a.key} and {b.key} share no scored items on {col}")
                continue
            diff, low, high, n = found
            out.append(PairedDiff(a.key, b.key, col, diff, low, high, n))
    return out, notes
