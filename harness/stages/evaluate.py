"""Score one model on the recipe's suites (lm-eval, EvalPlus); write normalized result rows.

Results are cached by (the model's content hash, the suite's settings hash, the item limit) under
RUNS_DIR/evals/, not by path: a model retrained into the same folder is scored again, and the same weights reached
by another route (a re-run, a copy) reuse their scores. The lm-eval / EvalPlus outputs (per-sample logs) live in
that cache folder, and every row points at its log. `still_valid` lets the pipeline re-check a finished evaluate
stage against the model's current content before reusing it.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

from harness.evaluation import EvalBackend, model_content_hash, run_suite
from harness.stages.base import StageContext, StageInput, StageOutput
from harness.store import atomic_write_json, file_lock, fingerprint, read_jsonl, write_jsonl

KIND = "evaluate"
VERSION = 2
READS = ()
WRITES = ("benchmark", "metric", "value", "stderr", "n", "samples", "variant", "seed", "model", "model_hash")


def eval_cache_dir(root: Path, model_hash: str, suite: dict[str, Any], limit: int | None) -> Path:
    key = fingerprint(model_hash, suite["hash"], limit)[:16]
    return root / "evals" / f"{suite['name']}-{key}"


def _backend(ctx: StageContext) -> EvalBackend:
    spec = dict(ctx.runtime.get("backend") or {})
    return EvalBackend(**spec)


def score_model(model_path: str, suites: list[dict[str, Any]], *, store_root: Path, limit: int | None,
                batch_size: int, backend: EvalBackend, console: Any, log: Any = None,
                model_hash: str | None = None, launch: Any = None) -> tuple[list[dict[str, Any]], str]:
    """Rows for every suite, from the eval cache or by running it; returns (rows, model content hash).

    With the `vllm` back-end, the suites' log-likelihood tasks run in-process first, then ONE server (the
    generation launcher) answers every generative task and EvalPlus prompt of this model.
    """
    model_hash = model_hash or model_content_hash(model_path)
    by_suite: dict[str, list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        pending = []
        for suite in suites:
            folder = eval_cache_dir(store_root, model_hash, suite, limit)
            folder.mkdir(parents=True, exist_ok=True)
            stack.enter_context(file_lock(folder / ".lock", f"eval {suite['name']} of {model_path}"))
            if (folder / "rows.jsonl").exists():
                if log:
                    log(f"suite {suite['name']}: cached ({folder})")
                by_suite[suite["name"]] = read_jsonl(folder / "rows.jsonl")
            else:
                pending.append((suite, folder))
        common = {"model_path": model_path, "limit": limit, "batch_size": batch_size, "console": console}
        fresh: dict[str, list[dict[str, Any]]] = {suite["name"]: [] for suite, _ in pending}
        if pending and backend.kind == "vllm":
            for suite, folder in pending:
                if log:
                    log(f"suite {suite['name']} ({suite['hash']}): in-process part")
                fresh[suite["name"]] += run_suite(suite, out_dir=folder, backend=backend, phase="loglikelihood",
                                                  **common)
            from harness.evaluation.serving import launch_server

            starter = launch or functools.partial(launch_server, settings=backend.serve)
            with starter(model_path, store_root / "evals" / f"server-{model_hash[:12]}.log") as url:
                def shared(*_: Any) -> contextlib.AbstractContextManager[str]:
                    return contextlib.nullcontext(url)

                for suite, folder in pending:
                    if log:
                        log(f"suite {suite['name']} ({suite['hash']}): served part ({url})")
                    fresh[suite["name"]] += run_suite(suite, out_dir=folder, backend=backend, phase="generate",
                                                      launch=shared, **common)
        else:
            for suite, folder in pending:
                if log:
                    log(f"suite {suite['name']} ({suite['hash']}) on {model_path}")
                fresh[suite["name"]] = run_suite(suite, out_dir=folder, backend=backend, launch=launch, **common)
        for suite, folder in pending:
            suite_rows = [{**row, "model_hash": model_hash} for row in fresh[suite["name"]]]
            write_jsonl(folder / "rows.jsonl", suite_rows)
            atomic_write_json(folder / "meta.json", {"model": model_path, "model_hash": model_hash,
                                                     "suite": suite["name"], "suite_hash": suite["hash"],
                                                     "limit": limit, "backend": backend.kind})
            by_suite[suite["name"]] = suite_rows
    return [row for suite in suites for row in by_suite[suite["name"]]], model_hash


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    source = next(iter(inputs.values()))
    model_path = source.info["model_path"]
    suites = ctx.runtime.get("suites") or ctx.params["suites"]  # located in this checkout (params: portable)
    rows, model_hash = score_model(model_path, suites, store_root=ctx.store.root,
                                   limit=ctx.params["limit"], batch_size=ctx.runtime["batch_size"],
                                   backend=_backend(ctx), console=ctx.console, log=ctx.log)
    records = [{**row, "variant": ctx.params["variant"], "seed": ctx.params["seed"], "model": model_path,
                "model_hash": model_hash, "label": ctx.params["label"]} for row in rows]
    return StageOutput(records=records, info={"results": len(records), "model_hash": model_hash,
                                              "model_path": model_path})


def still_valid(manifest: dict[str, Any], inputs: dict[str, StageInput]) -> bool:
    """Is a finished evaluate stage still about the model it would score now (same content hash)?"""
    recorded = (manifest.get("info") or {}).get("model_hash")
    source = next(iter(inputs.values()), None)
    if recorded is None or source is None or "model_path" not in source.info:
        return True
    return model_content_hash(source.info["model_path"]) == recorded
