"""Evaluation: suites (eval_suites/<name>.yaml) run through lm-eval and EvalPlus, normalized into result rows.

A normalized row: {benchmark, task, metric, value, stderr, n, primary, suite, suite_hash, samples, results_file,
backend} (+ `grader` for tasks scored by harness.grading, see harness.graders; + model, model_hash, variant and seed,
added by the evaluate stage). `primary` marks the suite's headline metric of each benchmark; `samples` points at
the per-sample log. The report reads only these rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from harness.evaluation.lmeval import EvalBackend, normalize_lm_eval
from harness.evaluation.model_hash import model_content_hash
from harness.evaluation.suites import available_suites, load_suite, suite_datasets

__all__ = ["EvalBackend", "available_suites", "load_suite", "model_content_hash", "normalize_lm_eval", "run_suite",
           "suite_datasets"]


def run_suite(suite: dict[str, Any], *, model_path: str, out_dir: Path, limit: int | None, batch_size: int,
              console: Console, backend: EvalBackend | None = None, launch: Any = None,
              phase: str = "all") -> list[dict[str, Any]]:
    """Score one model on one suite (lm-eval tasks, then EvalPlus datasets); outputs go under out_dir.

    `launch(model_path, log_path)` is a context manager yielding a server URL (default: the vLLM launcher);
    `phase` ("loglikelihood" / "generate" / "all") lets a caller run in-process work before one shared server
    answers all generative work (see harness.stages.evaluate.score_model).
    """
    backend = backend or EvalBackend()
    rows: list[dict[str, Any]] = []
    lm = suite.get("lm_eval") or {}
    if lm.get("tasks"):
        from harness.evaluation.lmeval import run_lm_eval

        rows += run_lm_eval(suite, model_path=model_path, out_dir=Path(out_dir) / "lm_eval", limit=limit,
                            batch_size=batch_size, backend=backend, console=console, launch=launch, phase=phase)
    if suite.get("evalplus") and phase != "loglikelihood":
        from harness.evaluation.evalplus_run import run_evalplus

        rows += run_evalplus(suite, model_path=model_path, out_dir=Path(out_dir) / "evalplus", limit=limit,
                             backend=backend, console=console, launch=launch)
    return rows
