"""The teacher answers the plain prompt (the target of distilled SFT).

Parsed with `teacher.parser` (`teacher_answer_raw` keeps the raw text when it differs); with `teacher.reask: false`
a cut-off answer is kept as generated (counted `cut_off`), as in refine.
"""

from __future__ import annotations

from harness.prompts import PromptStyle
from harness.stages.base import StageContext, StageInput, StageOutput
from harness.stages.generation import kept_as_generated, raise_if_partial, run_generation
from harness.stages.refine import teacher_answer_parser
from harness.stages.teacher import chat, teacher_job, teacher_reask

KIND = "answer"
VERSION = 1
READS = ("prompt", "reference")
WRITES = ("teacher_answer", "teacher_answer_correct")


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    style = PromptStyle.from_params(ctx.params["style"])
    generation = ctx.params["teacher"]["generation"]
    job = teacher_job(ctx, lambda rec: chat(style.answer_messages(rec["prompt"]), generation),
                      teacher_answer_parser(ctx, "teacher_answer"))
    out, stats = run_generation(ctx, inputs["data"].records, job, "answer (teacher)")
    raise_if_partial(ctx.name, stats, job.max_failed, job.budget_key)
    if not teacher_reask(ctx):
        stats |= kept_as_generated(out, "teacher_answer")
    return StageOutput(records=out, info=stats)
