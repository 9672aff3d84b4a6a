"""The teacher writes the refined answer ŷ from (prompt, draft, critique); the grader checks it.

With `teacher.parser` the refinement is the parsed text (`refined_raw` keeps the raw one when it differs) and the
grade is taken on it. With `teacher.reask: false` an answer cut off at max_tokens is kept as generated
(`refined_cut_off`, counted `cut_off` in the stage info) instead of being re-asked and then dropped: the official
code (CapitalOne-Research/Critique-Guided-Distillation, src/cgd_pipeline.py, `run_pipeline_step`) writes every
refine output into the SFT triples.
"""

from __future__ import annotations

from harness.grading import grade
from harness.parsers import parsed_fields
from harness.prompts import PromptStyle
from harness.stages.base import Record, StageContext, StageInput, StageOutput
from harness.stages.generation import Malformed, kept_as_generated, raise_if_partial, run_generation
from harness.stages.teacher import chat, teacher_job, teacher_parser, teacher_reask

KIND = "refine"
VERSION = 1
READS = ("prompt", "draft", "critique", "reference")
WRITES = ("refined", "refined_correct")


def verified_answer(field: str, parser: str = "none", reask: bool = True):
    """A parser that keeps the (parsed) text and grades it against the reference answer. A cut-off answer is
    re-asked (reask) or kept and flagged `{field}_cut_off`."""

    def parse(rec: Record, result) -> dict:
        text = result.text.strip()
        cut_off = result.finish_reasons[:1] == ["length"]
        if cut_off and reask:
            raise Malformed("cut off at max_tokens")
        fields = parsed_fields(field, text, parser)
        answer = fields[field]
        fields[f"{field}_correct"] = grade(answer, rec["reference"]) if rec.get("reference") else None
        if cut_off:
            fields[f"{field}_cut_off"] = True
        return fields

    return parse


def teacher_answer_parser(ctx: StageContext, field: str):
    """`verified_answer` with the teacher's parser and reask setting from the stage's (fingerprinted) params."""
    return verified_answer(field, teacher_parser(ctx), teacher_reask(ctx))


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    style = PromptStyle.from_params(ctx.params["style"])
    todo = [r for r in inputs["critique"].records if r.get("status") == "ok"]
    generation = ctx.params["teacher"]["generation"]
    job = teacher_job(
        ctx, lambda rec: chat(style.refine_messages(rec["prompt"], rec["draft"], rec["critique"]), generation),
        teacher_answer_parser(ctx, "refined"),
    )
    out, stats = run_generation(ctx, todo, job, "refine (teacher)")
    raise_if_partial(ctx.name, stats, job.max_failed, job.budget_key)
    graded = [r for r in out if r.get("refined_correct") is not None]
    stats["verified"] = sum(1 for r in graded if r["refined_correct"])
    stats["unverified"] = len(graded) - stats["verified"]
    if not teacher_reask(ctx):
        stats |= kept_as_generated(out, "refined")
    return StageOutput(records=out, info=stats)
