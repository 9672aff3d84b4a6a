"""The code suite: HumanEval+ / MBPP+ through EvalPlus, pass@k computed here from the statuses EvalPlus writes.

EvalPlus prints pass@k but stores only per-sample statuses (`<samples>_eval_results.json`: task -> [{base_status,
plus_status, ...}]). pass@k on the base tests counts base_status == "pass"; on base + extra tests ("plus") it needs
both statuses to be "pass", as EvalPlus itself does.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.errors import HarnessError
from harness.evaluation.passk import pass_at_k

DATASET_FILES = {"humaneval": ("HumanEvalPlus", "HUMANEVAL_OVERRIDE_PATH"),
                 "mbpp": ("MbppPlus", "MBPP_OVERRIDE_PATH")}


def dataset_file(dataset: str, version: str) -> Path:
    """Where EvalPlus keeps (and offline, must find) a dataset version: $XDG_CACHE_HOME/evalplus/<Name>-<v>.jsonl."""
    from harness.datasets_seed import evalplus_cache

    return evalplus_cache() / f"{DATASET_FILES[dataset][0]}-{version}.jsonl"


def scores_from_statuses(eval_results: dict[str, Any], ks: tuple[int, ...] = (1,)) -> dict[str, dict[str, Any]]:
    """{"base": {...}, "plus": {...}} with pass@k, its standard error (k=1) and the number of tasks."""
    per_task = eval_results["eval"]
    out: dict[str, dict[str, Any]] = {}
    for level in ("base", "plus"):
        counts = []
        for results in per_task.values():
            if level == "base":
                good = sum(r["base_status"] == "pass" for r in results)
            else:
                if any(r.get("plus_status") is None for r in results):
                    break  # --base_only results have no plus statuses
                good = sum(r["base_status"] == "pass" and r["plus_status"] == "pass" for r in results)
            counts.append((len(results), good))
        else:
            if not counts:
                continue
            level_scores: dict[str, Any] = {"n": len(counts)}
            for k in ks:
                if all(n >= k for n, _ in counts):
                    level_scores[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
            per = [c / n for n, c in counts]
            level_scores["stderr"] = statistics.stdev(per) / math.sqrt(len(per)) if len(per) > 1 else None
            out[level] = level_scores
    return out


def _slice(src: Path, dest: Path, limit: int) -> Path:
    lines = [line for line in src.read_text().splitlines() if line.strip()][:limit]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(lines) + "\n")
    return dest


def run_worker(args: dict[str, Any], *, env_extra: dict[str, str], log_path: Path,
               timeout_s: float | None = None) -> None:
    args_path = log_path.with_suffix(".args.json")
    args_path.write_text(json.dumps(args, indent=2))
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **env_extra}
    with log_path.open("w") as log:
        proc = subprocess.run([sys.executable, "-m", "harness.evaluation.evalplus_worker", str(args_path)],
                              stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        tail = log_path.read_text()[-3000:]
        raise HarnessError(f"EvalPlus ({args['dataset']}) failed with exit code {proc.returncode} "
                           f"(log: {log_path}):\n{tail}")


def evaluate_samples(dataset: str, version: str, samples: Path, *, out_dir: Path, dataset_path: Path | None = None,
                     min_time_limit: float = 1.0, gt_time_limit_factor: float = 4.0) -> dict[str, Any]:
    """EvalPlus-evaluate an existing samples file (JSONL of {task_id, solution|completion}); its eval results."""
    args = {"dataset": dataset, "version": version, "samples": str(samples), "generate": False,
            "min_time_limit": min_time_limit, "gt_time_limit_factor": gt_time_limit_factor}
    env = {DATASET_FILES[dataset][1]: str(dataset_path)} if dataset_path else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    run_worker(args, env_extra=env, log_path=out_dir / f"evalplus-{dataset}.log")
    return json.loads(samples.with_name(samples.stem + "_eval_results.json").read_text())


def run_evalplus(suite: dict[str, Any], *, model_path: str, out_dir: Path, limit: int | None, backend: Any,
                 console: Console,
                 launch: Callable[[str, Path], AbstractContextManager[str]] | None = None) -> list[dict[str, Any]]:
    """Generate with the model (EvalPlus's hf back-end, or its openai back-end on a served model), evaluate in
    EvalPlus's sandbox, and return rows: <dataset> (base tests) and <dataset>_plus (base + extra), pass@k."""
    import torch

    ep = suite["evalplus"]
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    rows: list[dict[str, Any]] = []
    ks = (1,) if ep["n_samples"] == 1 else tuple(k for k in (1, 10, 100) if k <= ep["n_samples"])
    if backend.kind == "hf":
        on_gpu = torch.cuda.is_available() and backend.device != "cpu"
        gen = {"backend": "hf", "model": model_path, "dtype": backend.dtype or ("bfloat16" if on_gpu else "float32")}
        server: AbstractContextManager[str] | None = None
    else:
        from harness.evaluation.lmeval import _server

        gen = {"backend": "openai", "model": backend.served_model or model_path}
        server = _server(backend, model_path, out_dir, launch, needed=True)
    work = []
    for d in ep["datasets"]:
        source = dataset_file(d["dataset"], d["version"])
        if not source.exists() and (offline or limit):
            raise HarnessError(f"EvalPlus {d['dataset']} {d['version']}: {source} is missing (offline); "
                               f"`cgd data seed` copies local files there")
        folder = out_dir / d["benchmark"]
        folder.mkdir(parents=True, exist_ok=True)
        env = {}
        if limit:
            env[DATASET_FILES[d["dataset"]][1]] = str(_slice(source, folder / f"problems-first{limit}.jsonl", limit))
        work.append((d, folder, env))
    jobs, env_all = [], {}
    with server if server is not None else contextlib.nullcontext("") as url:
        for d, folder, env in work:
            samples = folder / "samples.jsonl"
            args = {**gen, "dataset": d["dataset"], "version": d["version"], "samples": str(samples),
                    "generate": True, "greedy": bool(ep["greedy"]), "n_samples": int(ep["n_samples"]),
                    "temperature": 0.0 if ep["greedy"] else float(ep.get("temperature", 0.8)),
                    "max_new_tokens": int(ep["max_new_tokens"]), "min_time_limit": ep["min_time_limit"],
                    "gt_time_limit_factor": ep["gt_time_limit_factor"]}
            if url:
                args["base_url"] = f"{url.rstrip('/').removesuffix('/v1')}/v1"
                env_all.setdefault("OPENAI_API_KEY", os.environ.get("OPENAI_API_KEY", "none"))
            env_all.update(env)
            jobs.append(args)
        names = ", ".join(f"{d['dataset']} ({d['version']})" for d, _, _ in work)
        console.print(f"  [dim]EvalPlus {names}{' first ' + str(limit) if limit else ''}[/dim]")
        out_dir.mkdir(parents=True, exist_ok=True)
        run_worker({"jobs": jobs, "dataset": names}, env_extra=env_all, log_path=out_dir / "evalplus.log")
    for d, folder, _ in work:
        results_path = folder / "samples_eval_results.json"
        scores = scores_from_statuses(json.loads(results_path.read_text()), ks)
        label = f"{backend.kind}:evalplus-{gen['backend']}"
        for level, bench in (("base", d["benchmark"]), ("plus", f"{d['benchmark']}_plus")):
            if level not in scores:
                continue
            for k in ks:
                if f"pass@{k}" not in scores[level]:
                    continue
                rows.append({"benchmark": bench, "task": f"evalplus:{d['dataset']}", "metric": f"pass@{k}",
                             "value": scores[level][f"pass@{k}"],
                             "stderr": scores[level]["stderr"] if k == 1 else None, "n": scores[level]["n"],
                             "suite": suite["name"], "suite_hash": suite["hash"], "samples": str(results_path),
                             "results_file": str(results_path), "backend": label,
                             "primary": level == "plus" and k == 1})
    return rows

