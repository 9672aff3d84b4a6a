"""Check the training prompts against the problems of every benchmark in the recipe's eval suites (harness.decontam).

Runs right after the data stage, before any request is sent. `data.decontaminate: report` (the default): the
records are the contaminated prompts, each with its hits; nothing downstream reads them. `drop`: the records are
the data stage's records without the contaminated prompts and without exact duplicates after normalization (the
first of each is kept); the pipeline then feeds every stage that reads `data` from this stage instead.
Either way the info (the manifest, `cgd plan`, run.json's `decontamination`, the report) has the counts per
benchmark, a few example hits, the duplicate count and which benchmarks had no local copy to check.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from harness.decontam import identities, load_benchmarks, scan, summary_line
from harness.errors import HarnessError
from harness.stages.base import StageContext, StageInput, StageOutput

KIND = "decontaminate"
VERSION = 1
READS = ("id", "prompt")
WRITES: tuple[str, ...] = ()  # report: hit records of their own; drop: the data records, passed through
SHOWN_IDS = 50  # dropped ids listed in the info


def benchmark_identity(suite: dict[str, Any]) -> dict[str, Any]:
    """What decides a suite's benchmark problems: its tasks and their files, its datasets, its EvalPlus sets."""
    lm = suite.get("lm_eval") or {}
    tasks = [t["task"] if isinstance(t, dict) else str(t) for t in lm.get("tasks") or []]
    evalplus = [(d["dataset"], d.get("version")) for d in (suite.get("evalplus") or {}).get("datasets") or []]
    return {"name": suite["name"], "tasks": tasks, "task_files": (suite.get("pins") or {}).get("task_files"),
            "datasets": suite.get("datasets") or [], "evalplus": evalplus}


def stage_params(recipe: Any, suites: list[dict[str, Any]]) -> dict[str, Any]:
    """Fingerprinted: the mode, the n-gram length and which benchmarks the suites read (not how they are prompted
    or graded); with `drop` (what downstream trains on depends on it) also which local copy of each was read."""
    d = recipe.data
    params: dict[str, Any] = {"mode": d.decontaminate, "ngram": d.decontaminate_ngram,
                              "suites": [benchmark_identity(s) for s in suites]}
    if d.decontaminate == "drop":
        params["benchmarks"] = identities(load_benchmarks(suites))
    return params


def check(prompts: list[str], suites: list[dict[str, Any]], ngram: int) -> dict[str, Any]:
    """The scan of `prompts` (harness.decontam.scan) against the suites' benchmarks; what `cgd plan` shows."""
    benchmarks = load_benchmarks(suites)
    result = scan(prompts, benchmarks, ngram)
    result["summary"]["sources"] = identities(benchmarks)
    return result


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    records = inputs["data"].records
    result = check([str(r["prompt"]) for r in records], ctx.runtime["suites"], ctx.params["ngram"])
    info: dict[str, Any] = {"mode": ctx.params["mode"], **result["summary"]}
    ctx.log(escape(summary_line(result["summary"])))
    if ctx.params["mode"] == "report":
        by_prompt: dict[int, list[dict[str, Any]]] = {}
        for h in result["hits"]:
            by_prompt.setdefault(h.index, []).append({"benchmark": h.benchmark, "match": h.match,
                                                      "shared_ngrams": h.shared, "item": h.item})
        out = [{"id": records[i]["id"], "prompt": records[i]["prompt"], "hits": hits}
               for i, hits in sorted(by_prompt.items())]
        return StageOutput(records=out, info=info)
    drop = set(result["contaminated"]) | set(result["duplicates"])
    kept = [r for i, r in enumerate(records) if i not in drop]
    if not kept:
        raise HarnessError(f"data.decontaminate: drop removed all {len(records)} prompts "
                           f"({summary_line(result['summary'])})")
    info["dropped"] = len(drop)
    info["dropped_ids"] = {"contaminated": [records[i]["id"] for i in result["contaminated"][:SHOWN_IDS]],
                           "duplicates": [records[i]["id"] for i in result["duplicates"][:SHOWN_IDS]]}
    info["rows"] = len(kept)
    return StageOutput(records=kept, info=info)
