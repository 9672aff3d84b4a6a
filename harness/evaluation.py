"""Evaluation suites (eval_suites/<name>.yaml) and running them through lm-eval, with normalized results.

A normalized result row: {benchmark, metric, value, stderr, n, suite, suite_hash, samples} (+ variant, seed and
model, added by the evaluate stage). The report reads only these rows.
"""

from __future__ import annotations

import glob
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from ruamel.yaml import YAML

from harness.paths import EVAL_SUITES_DIR
from harness.registry import UnknownName
from harness.store import fingerprint


def available_suites(folder: Path = EVAL_SUITES_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_suite(name: str, folder: Path = EVAL_SUITES_DIR) -> dict[str, Any]:
    """The suite's settings, with include_path made absolute and a hash of everything that pins its scores."""
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise UnknownName(f"unknown eval suite '{name}'; available: {', '.join(available_suites(folder))}")
    suite = YAML(typ="safe").load(path.read_text())
    lm = suite.get("lm_eval") or {}
    if lm.get("include_path"):
        include = (folder / lm["include_path"]).resolve()
        lm["include_path"] = str(include)
        # Task YAMLs and their helpers are part of what pins the scores.
        files = sorted(glob.glob(str(include / "**" / "*"), recursive=True))
        lm["task_files_hash"] = fingerprint({Path(f).name: Path(f).read_text() for f in files if Path(f).is_file()})
    suite["lm_eval"] = lm
    suite["hash"] = fingerprint(suite)[:16]
    return suite


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def normalize_lm_eval(results: dict[str, Any], suite: dict[str, Any], samples_dir: Path) -> list[dict[str, Any]]:
    """One row per (task, metric) from lm-eval's result dict ("exact_match,none" / "exact_match_stderr,none")."""
    rows = []
    n_samples = results.get("n-samples", {})
    for task, metrics in results.get("results", {}).items():
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filt = key.split(",", 1)
            number = _finite(value)
            if number is None:
                continue
            stderr = _finite(metrics.get(f"{metric}_stderr,{filt}"))
            n = (n_samples.get(task) or {}).get("effective")
            samples = sorted(samples_dir.glob(f"**/samples_{task}_*.jsonl"))
            rows.append({"benchmark": task, "metric": metric if filt == "none" else f"{metric},{filt}",
                         "value": number, "stderr": stderr, "n": n, "suite": suite["name"],
                         "suite_hash": suite["hash"], "samples": str(samples[-1]) if samples else None})
    return rows


def run_suite(suite: dict[str, Any], *, model_path: str, out_dir: Path, limit: int | None, batch_size: int,
              console: Console) -> list[dict[str, Any]]:
    lm = suite.get("lm_eval") or {}
    rows: list[dict[str, Any]] = []
    if lm.get("tasks"):
        rows += _run_lm_eval(lm, suite, model_path=model_path, out_dir=out_dir, limit=limit, batch_size=batch_size)
    if suite.get("evalplus"):
        # EvalPlus suites arrive with the evaluation issue; say so instead of silently scoring nothing.
        console.print(f"[yellow]suite {suite['name']}: EvalPlus datasets are not wired yet; skipped[/yellow]")
    return rows


def _run_lm_eval(lm: dict[str, Any], suite: dict[str, Any], *, model_path: str, out_dir: Path, limit: int | None,
                 batch_size: int) -> list[dict[str, Any]]:
    import lm_eval
    import lm_eval.models  # noqa: F401 - fills the model registry before any custom registration
    import torch
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    on_gpu = torch.cuda.is_available()
    model_args = {"pretrained": model_path, "dtype": "bfloat16" if on_gpu else "float32"}
    tm = TaskManager(include_path=lm.get("include_path"))
    tracker = EvaluationTracker(output_path=str(out_dir))
    res = lm_eval.simple_evaluate(
        model="hf", model_args=model_args, device="cuda" if on_gpu else "cpu", batch_size=batch_size,
        tasks=list(lm["tasks"]), task_manager=tm, limit=limit, num_fewshot=lm.get("num_fewshot"),
        apply_chat_template=bool(lm.get("apply_chat_template")), system_instruction=lm.get("system_instruction"),
        fewshot_as_multiturn=bool(lm.get("apply_chat_template")), gen_kwargs=lm.get("gen_kwargs") or None,
        log_samples=True, evaluation_tracker=tracker, random_seed=0, numpy_random_seed=1234,
        torch_random_seed=1234, fewshot_random_seed=1234,
    )
    samples = res.pop("samples")
    tracker.save_results_aggregated(results=res, samples=samples)
    for task in res["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    return normalize_lm_eval(res, suite, out_dir)
