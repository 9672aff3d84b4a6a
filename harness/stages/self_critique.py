"""The student critiques its own draft with the recipe's critique prompt (no teacher): c_self."""

from __future__ import annotations

from harness.grading import verdict_of
from harness.prompts import PromptStyle
from harness.stages.base import StageContext, StageInput, StageOutput
from harness.stages.generation import raise_if_partial, run_generation
from harness.stages.student_gen import student_job
from harness.stages.teacher import chat

KIND = "self_critique"
VERSION = 1
READS = ("prompt", "draft")
WRITES = ("self_critique", "self_verdict")


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    style = PromptStyle.from_params(ctx.params["style"])
    generation = ctx.params["generation"]
    drafts = [r for r in inputs["probe"].records if r.get("status") == "ok"]
    # A small student rarely ends with a verdict line; its critique is kept as written (verdict None then).
    job = student_job(ctx, inputs["student"].info["model_path"],
                      lambda rec: chat(style.critique_messages(rec["prompt"], rec["draft"]), generation),
                      lambda rec, result: {"self_critique": result.text.strip(),
                                           "self_verdict": verdict_of(result.text)})
    out, stats = run_generation(ctx, drafts, job, "self-critique (student)")
    raise_if_partial(ctx.name, stats, job.max_failed)
    return StageOutput(records=out, info=stats)
