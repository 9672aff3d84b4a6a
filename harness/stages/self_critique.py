"""The student critiques its own draft with the recipe's critique prompt (no teacher): c_self.

Parsed with the student's parser (the probe's, from its info: the probe's fingerprint carries it, and this stage
is downstream of the probe); `self_critique_raw` keeps the raw text when the parser changed it."""

from __future__ import annotations

from harness.grading import verdict_of
from harness.parsers import parsed_fields
from harness.prompts import PromptStyle
from harness.stages.base import StageContext, StageInput, StageOutput
from harness.stages.generation import raise_if_partial, run_generation
from harness.stages.student_gen import student_job
from harness.stages.teacher import chat

KIND = "self_critique"
VERSION = 1
READS = ("prompt", "draft")
WRITES = ("self_critique", "self_verdict")


def _fields(text: str, parser: str) -> dict:
    fields = parsed_fields("self_critique", text.strip(), parser)
    # the verdict as before when nothing is parsed (the raw text), else from what the parser kept
    return {**fields, "self_verdict": verdict_of(text if parser == "none" else fields["self_critique"])}


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    style = PromptStyle.from_params(ctx.params["style"])
    generation = ctx.params["generation"]
    drafts = [r for r in inputs["probe"].records if r.get("status") == "ok"]
    parser = inputs["probe"].info.get("parser", "none")
    # A small student rarely ends with a verdict line; its critique is kept as written (verdict None then).
    job = student_job(ctx, inputs["student"].info["model_path"],
                      lambda rec: chat(style.critique_messages(rec["prompt"], rec["draft"]), generation),
                      lambda rec, result: _fields(result.text, parser))
    out, stats = run_generation(ctx, drafts, job, "self-critique (student)")
    raise_if_partial(ctx.name, stats, job.max_failed)
    if parser != "none":
        stats["parser"] = parser
    return StageOutput(records=out, info=stats)
