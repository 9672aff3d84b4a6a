"""Subprocess side of the code suite: EvalPlus codegen (unless samples are given) and sandboxed evaluation.

Run as `python -m harness.evaluation.evalplus_worker ARGS.json`. It runs in its own process because EvalPlus reads
its dataset overrides (HUMANEVAL_OVERRIDE_PATH / MBPP_OVERRIDE_PATH) at import time, executes model-written code,
and leaves a non-daemon watchdog thread that keeps a process alive for 20 s after the work is done; the worker
exits with os._exit once the results file is written.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

# EvalPlus's own prompt (evalplus.codegen.run_codegen, 0.3.1): the instruction and the response prefix that the
# chat template frames the problem with.
INSTRUCTION_PREFIX = ("Please provide a self-contained Python script that solves the following problem in a markdown "
                      "code block:")
RESPONSE_PREFIX = ("Below is a Python script with a self-contained function that solves the problem and passes "
                   "corresponding tests:")


def run_job(args: dict) -> None:
    samples = args["samples"]
    if args.get("generate", True):
        from evalplus.codegen import codegen
        from evalplus.provider import make_model

        model = make_model(model=args["model"], backend=args["backend"], dataset=args["dataset"], batch_size=1,
                           temperature=args["temperature"], base_url=args.get("base_url"),
                           instruction_prefix=INSTRUCTION_PREFIX, response_prefix=RESPONSE_PREFIX,
                           dtype=args.get("dtype", "bfloat16"))
        model.max_new_tokens = int(args["max_new_tokens"])
        codegen(target_path=samples, model=model, dataset=args["dataset"], greedy=args["greedy"],
                n_samples=args["n_samples"], version=args["version"], resume=True)
        del model
        gc.collect()
    from evalplus.evaluate import evaluate

    evaluate(dataset=args["dataset"], samples=samples, parallel=args.get("parallel"), version=args["version"],
             min_time_limit=args["min_time_limit"], gt_time_limit_factor=args["gt_time_limit_factor"])


def main(args_path: str) -> int:
    """ARGS.json: {"jobs": [...]} (one per dataset, sharing this process's imports) or a single job."""
    args = json.loads(Path(args_path).read_text())
    for job in args.get("jobs", [args]):
        run_job(job)
    return 0


if __name__ == "__main__":
    code = 1
    try:
        code = main(sys.argv[1])
    except BaseException:  # noqa: BLE001 - print it: os._exit below skips the interpreter's own report
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
