"""Format drift: does a trained model still answer, in the form the benchmark expects, or does it critique?

Reads every evaluated model's generations from lm-eval's per-sample logs (the evaluate stage runs lm-eval with
`log_samples` on; each result row's `samples` points at `samples_<task>_<time>.jsonl` in the eval cache folder
RUNS_DIR/evals/<suite>-<key>/, a glob for a group's headline row). Per variant (its seeds pooled) and benchmark:

- answer form: the share of generations with a final answer in the expected form. For tasks graded by
  harness.grading (result rows with `grader`: the harness's math tasks, the tiny world) that is a `\\boxed{}` /
  `\\fbox{}` answer, the form harness.grading.extract_answer reads first; for other lm-eval tasks with an answer
  filter (regex extraction, e.g. GSM8K's "#### n"), a filtered response that is not lm-eval's "[invalid]"; for
  tasks without a filter, again `\\boxed{}`. `answer_pattern` (a regex) replaces the rule for every benchmark.
- critique language: the share of generations that match any of CRITIQUE_PATTERNS (a verdict line
  "Conclusion: right/wrong", "the student's answer", step-by-step verdicts such as "Step 2 is incorrect").
- mean length in words (whitespace-separated).
- drift vs base: the variant's share minus base's on the same benchmark, for both shares (percentage points in
  the table, fractions in `numbers`). A CFT model that learned to write critiques shows critique drift > 0.

Log-likelihood (multiple-choice) tasks have no generations and are skipped; EvalPlus rows too (noted).
"""

from __future__ import annotations

import glob
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.analysis.common import pct, result, share, table
from harness.grading import last_boxed
from harness.recipe.schema import Strict

NAME = "format"
DOC = "answer form, critique language and length of every evaluated model's generations, and their drift vs base"
NEEDS: tuple[str, ...] = ("evaluate",)

CRITIQUE_PATTERNS: tuple[str, ...] = (
    r"conclusion\s*:\s*\**\s*(?:right|wrong|correct|incorrect)\b",  # the verdict line (harness.grading.VERDICT_RE)
    r"\bthe student'?s?\s+(?:initial\s+)?(?:answer|solution|response|attempt|work)\b",  # "the student's answer"
    r"\bstudent'?s\s+(?:initial\s+)?(?:answer|solution)\b",  # "Student's Answer:" quoted back
    r"\bstep\s*\d+\s*(?:is|was)\s+(?:correct|incorrect|wrong|right|missing)\b",  # "Step 2 is incorrect"
    r"\bstep\s*\d+\s*(?:has|contains|makes)\s+(?:an?\s+)?(?:\w+\s+)?(?:error|mistake)\b",  # "Step 1 has an error"
    r"\bstep\s*\d+\s*uses\s+the\s+wrong\b",
    r"\bthe\s+(?:provided|given|original|above|proposed)\s+(?:solution|answer)\s+is\s+(?:in)?correct\b",
    r"\bthe\s+final\s+answer\s+\S+\s+is\s+(?:right|wrong|correct|incorrect)\b",  # "The final answer 54 is wrong"
)
"""Critique language, matched case-insensitively: a generation matching any of these critiques instead of (or as
well as) answering. Normal worked solutions match none of them."""

INVALID = "[invalid]"  # lm-eval's regex filter fallback


class Settings(Strict):
    answer_pattern: str | None = None
    """A regex (searched, case-sensitive) that marks a generation as having the expected answer form, for every
    benchmark; default: the rule per benchmark described in harness/analysis/format.py."""
    critique_patterns: list[str] | None = None
    """Regexes (case-insensitive) for critique language; default: harness.analysis.format.CRITIQUE_PATTERNS."""
    max_samples: int | None = Field(default=None, ge=1)
    """At most this many generations per evaluated model and benchmark (the first ones in the log); default all."""


def _strings(value: Any) -> list[str]:
    """The generated strings in a logged `resps` / `filtered_resps` value (nested lists for repeats)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        out = []
        for v in value:
            out += _strings(v)
        return out
    return []


def read_generations(path: str, root: Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """[{doc_id, text, filtered, filter}] from lm-eval per-sample log(s) at `path` (a file or glob), one entry per
    generation, one filter per document (the first logged); [] for log-likelihood tasks or unreadable files."""
    p = Path(path)
    if not p.is_absolute() and root is not None:
        p = root / p
    files = sorted(glob.glob(str(p))) if any(ch in str(p) for ch in "*?[") else [str(p)]
    out: list[dict[str, Any]] = []
    for file in files:
        seen: set[Any] = set()
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            if not line.strip():
                continue
            rec = json.loads(line)
            doc = rec.get("doc_id")
            if doc in seen:
                continue
            seen.add(doc)
            texts = _strings(rec.get("resps"))
            if not texts:  # log-likelihood requests log (logprob, is_greedy) pairs
                continue
            filtered = _strings(rec.get("filtered_resps"))
            for i, text in enumerate(texts):
                out.append({"doc_id": doc, "text": text, "filter": rec.get("filter", "none"),
                            "filtered": filtered[i] if i < len(filtered) else None})
                if limit is not None and len(out) >= limit:
                    return out
    return out


def has_answer_form(gen: dict[str, Any], graded_by_harness: bool, pattern: re.Pattern[str] | None) -> bool:
    if pattern is not None:
        return pattern.search(gen["text"]) is not None
    if not graded_by_harness and gen.get("filter", "none") != "none" and gen.get("filtered") is not None:
        filtered = gen["filtered"].strip()
        return bool(filtered) and filtered != INVALID
    return last_boxed(gen["text"]) is not None


def is_critique(text: str, patterns: list[re.Pattern[str]]) -> bool:
    return any(p.search(text) for p in patterns)


def measure(gens: list[dict[str, Any]], graded_by_harness: bool, settings: Settings) -> dict[str, Any]:
    """Counts and shares of one set of generations."""
    pattern = re.compile(settings.answer_pattern) if settings.answer_pattern else None
    patterns = [re.compile(p, re.I) for p in (settings.critique_patterns or CRITIQUE_PATTERNS)]
    n = len(gens)
    form = sum(has_answer_form(g, graded_by_harness, pattern) for g in gens)
    critique = sum(is_critique(g["text"], patterns) for g in gens)
    words = sum(len(g["text"].split()) for g in gens)
    return {"n": n, "answer_form": form, "critique": critique, "answer_form_share": share(form, n),
            "critique_share": share(critique, n), "mean_words": words / n if n else None}


def _headline(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """benchmark -> its headline result row (primary, else the first) among one evaluate stage's rows."""
    out: dict[str, dict[str, Any]] = {}
    for row in records:
        bench = row.get("benchmark")
        if bench is None or "/" in str(bench) and row.get("primary") is False:
            continue
        if bench not in out or (row.get("primary") and not out[bench].get("primary")):
            out[bench] = row
    return out


def run(ctx: Any, inputs: dict[str, Any], settings: Settings) -> dict[str, Any]:
    root = getattr(getattr(ctx, "store", None), "root", None)
    pooled: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    harness_graded: dict[tuple[str, str], bool] = {}
    seeds: dict[tuple[str, str], set[Any]] = defaultdict(set)
    notes: list[str] = []
    order: list[str] = []
    for key in sorted(inputs, key=lambda k: (k != "evaluate:base", k)):
        inp = inputs[key]
        for bench, row in _headline(inp.records).items():
            variant = str(row.get("variant") or "base")
            if variant not in order:
                order.append(variant)
            samples = row.get("samples")
            if not samples:
                continue
            if str(samples).endswith(".json"):  # EvalPlus: code, no answer form to measure here
                if variant == "base":
                    notes.append(f"{bench}: EvalPlus results, not measured (code generations)")
                continue
            gens = read_generations(str(samples), root, settings.max_samples)
            if not gens:
                continue
            pooled[(variant, bench)] += gens
            seeds[(variant, bench)].add(row.get("seed"))
            harness_graded[(variant, bench)] = bool(row.get("grader"))
    stats = {k: measure(v, harness_graded[k], settings) for k, v in pooled.items()}
    benches = sorted({b for _, b in stats})
    rows, numbers = [], {}
    for bench in benches:
        base = stats.get(("base", bench))
        for variant in order:
            s = stats.get((variant, bench))
            if s is None:
                continue
            drift_c = drift_f = None
            if base is not None and variant != "base":
                drift_c = _minus(s["critique_share"], base["critique_share"])
                drift_f = _minus(s["answer_form_share"], base["answer_form_share"])
            rows.append([variant, bench, s["n"], len(seeds[(variant, bench)]), pct(s["answer_form_share"]),
                         pct(s["critique_share"]), None if s["mean_words"] is None else round(s["mean_words"], 1),
                         pct(drift_f), pct(drift_c)])
            prefix = f"{variant}.{bench}"
            numbers |= {f"{prefix}.n": s["n"], f"{prefix}.answer_form_share": s["answer_form_share"],
                        f"{prefix}.critique_share": s["critique_share"], f"{prefix}.mean_words": s["mean_words"],
                        f"{prefix}.drift.answer_form": drift_f, f"{prefix}.drift.critique": drift_c}
    if not stats:
        notes.append("no generations found in the evaluated models' per-sample logs")
    if settings.answer_pattern:
        notes.append(f"answer form: generations matching /{settings.answer_pattern}/")
    columns = ["variant", "benchmark", "n", "seeds", "answer form %", "critique %", "words", "Δ form (pts)",
               "Δ critique (pts)"]
    title = "Format of the evaluated models' generations (Δ: against base)"
    return result([table(title, columns, rows)], numbers, notes)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b
