"""The student refines its own draft after its own critique, with the recipe's refine prompt; graded like the
teacher's refinements (self_refined_correct). Parsed with the student's parser (carried from the probe through
self_critique's info; `self_refined_raw` keeps the raw text when the parser changed it)."""

from __future__ import annotations

from harness.grading import grade
from harness.parsers import parsed_fields
from harness.prompts import PromptStyle
from harness.stages.base import StageContext, StageInput, StageOutput
from harness.stages.generation import raise_if_partial, run_generation
from harness.stages.student_gen import student_job
from harness.stages.teacher import chat

KIND = "self_refine"
VERSION = 1
READS = ("prompt", "draft", "self_critique", "reference")
WRITES = ("self_refined", "self_refined_correct")


def make_parser(parser: str = "none"):
    def parse(rec: dict, result) -> dict:
        # cut off or not, it is the student's answer
        fields = parsed_fields("self_refined", result.text.strip(), parser)
        text = fields["self_refined"]
        return {**fields, "self_refined_correct": grade(text, rec["reference"]) if rec.get("reference") else None}

    return parse


_parse = make_parser()


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    style = PromptStyle.from_params(ctx.params["style"])
    generation = ctx.params["generation"]
    todo = [r for r in inputs["self_critique"].records if r.get("status") == "ok"]
    parser = inputs["self_critique"].info.get("parser", "none")
    job = student_job(ctx, inputs["student"].info["model_path"],
                      lambda rec: chat(style.refine_messages(rec["prompt"], rec["draft"], rec["self_critique"]),
                                       generation), make_parser(parser))
    out, stats = run_generation(ctx, todo, job, "self-refine (student)")
    raise_if_partial(ctx.name, stats, job.max_failed)
    graded = [r for r in out if r.get("self_refined_correct") is not None]
    stats["verified"] = sum(1 for r in graded if r["self_refined_correct"])
    stats["unverified"] = len(graded) - stats["verified"]
    if parser != "none":
        stats["parser"] = parser
    return StageOutput(records=out, info=stats)
