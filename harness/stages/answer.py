"""The teacher answers the plain prompt (the target of distilled SFT)."""

from __future__ import annotations

from harness.prompts import PromptStyle
from harness.stages.base import StageContext, StageInput, StageOutput
from harness.stages.generation import raise_if_partial, run_generation
from harness.stages.refine import verified_answer
from harness.stages.teacher import chat, teacher_job

KIND = "answer"
VERSION = 1
READS = ("prompt", "reference")
WRITES = ("teacher_answer", "teacher_answer_correct")


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    style = PromptStyle.from_params(ctx.params["style"])
    generation = ctx.params["teacher"]["generation"]
    job = teacher_job(ctx, lambda rec: chat(style.answer_messages(rec["prompt"]), generation),
                      verified_answer("teacher_answer"))
    out, stats = run_generation(ctx, inputs["data"].records, job, "answer (teacher)")
    raise_if_partial(ctx.name, stats, job.max_failed, job.budget_key)
    return StageOutput(records=out, info=stats)
