"""The student answers each prompt alone: the draft y'."""

from __future__ import annotations

from harness.stages.base import StageContext, StageFailed, StageInput, StageOutput
from harness.stages.generation import raise_if_partial, run_generation
from harness.stages.student_gen import student_job
from harness.stages.teacher import chat

KIND = "probe"
VERSION = 1
READS = ("id", "prompt")
WRITES = ("draft", "drafts")


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    records = inputs["data"].records
    generation = ctx.params["generation"]
    job = student_job(ctx, inputs["student"].info["model_path"],
                      lambda rec: chat([{"role": "user", "content": rec["prompt"]}], generation),
                      lambda rec, result: {"draft": result.text, "drafts": result.texts})
    out, stats = run_generation(ctx, records, job, "probe (student drafts)")
    raise_if_partial(ctx.name, stats, job.max_failed)
    if stats["ok"] == 0:
        raise StageFailed(ctx.name, f"no draft could be generated: {stats['failures'][:3]}")
    return StageOutput(records=out, info=stats)
