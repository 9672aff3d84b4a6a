"""Score one model on the recipe's suites (lm-eval); write normalized result rows."""

from __future__ import annotations

from harness.evaluation import run_suite
from harness.stages.base import StageContext, StageInput, StageOutput

KIND = "evaluate"
VERSION = 1


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    source = next(iter(inputs.values()))
    model_path = source.info["model_path"]
    rows = []
    for suite in ctx.params["suites"]:
        ctx.log(f"suite {suite['name']} on {ctx.params['label']}")
        rows += run_suite(suite, model_path=model_path, out_dir=ctx.path / suite["name"], limit=ctx.params["limit"],
                          batch_size=ctx.runtime["batch_size"], console=ctx.console)
    for row in rows:
        row.update(variant=ctx.params["variant"], seed=ctx.params["seed"], model=model_path)
    return StageOutput(records=rows, info={"results": len(rows)})
