"""The teacher writes the refined answer ŷ from (prompt, draft, critique); the grader checks it."""

from __future__ import annotations

from harness.grading import grade
from harness.prompts import PromptStyle
from harness.stages.base import Record, StageContext, StageInput, StageOutput
from harness.stages.generation import Malformed, raise_if_partial, run_generation
from harness.stages.teacher import chat, teacher_job

KIND = "refine"
VERSION = 1
READS = ("prompt", "draft", "critique", "reference")
WRITES = ("refined", "refined_correct")


def verified_answer(field: str):
    """A parser that keeps the text and grades it against the reference answer."""

    def parse(rec: Record, result) -> dict:
        text = result.text.strip()
        if result.finish_reasons[:1] == ["length"]:
            raise Malformed("cut off at max_tokens")
        correct = grade(text, rec["reference"]) if rec.get("reference") else None
        return {field: text, f"{field}_correct": correct}

    return parse


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    style = PromptStyle.from_params(ctx.params["style"])
    todo = [r for r in inputs["critique"].records if r.get("status") == "ok"]
    generation = ctx.params["teacher"]["generation"]
    job = teacher_job(
        ctx, lambda rec: chat(style.refine_messages(rec["prompt"], rec["draft"], rec["critique"]), generation),
        verified_answer("refined"),
    )
    out, stats = run_generation(ctx, todo, job, "refine (teacher)")
    raise_if_partial(ctx.name, stats, job.max_failed, job.budget_key)
    graded = [r for r in out if r.get("refined_correct") is not None]
    stats["verified"] = sum(1 for r in graded if r["refined_correct"])
    stats["unverified"] = len(graded) - stats["verified"]
    return StageOutput(records=out, info=stats)
