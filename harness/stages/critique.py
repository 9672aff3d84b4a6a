"""The teacher critiques each (prompt, draft) and ends with a verdict line ("Conclusion: right|wrong")."""

from __future__ import annotations

from harness.grading import verdict_of
from harness.prompts import PromptStyle
from harness.stages.base import Record, StageContext, StageInput, StageOutput
from harness.stages.generation import Malformed, raise_if_partial, run_generation
from harness.stages.teacher import chat, teacher_job

KIND = "critique"
VERSION = 1
READS = ("prompt", "draft")
WRITES = ("critique", "verdict")


def _parse(rec: Record, result) -> dict:
    text = result.text.strip()
    verdict = verdict_of(text)
    if verdict is None:
        cut = " (cut off at max_tokens)" if result.finish_reasons[:1] == ["length"] else ""
        raise Malformed(f"no 'Conclusion: right|wrong' line{cut}")
    return {"critique": text, "verdict": verdict}


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    style = PromptStyle.from_params(ctx.params["style"])
    drafts = [r for r in inputs["probe"].records if r.get("status") == "ok"]
    if style.fixed_critiques:
        # A boilerplate style: no teacher call, the same kind of text for every problem (no verdict to parse).
        fixed = style.fixed_critiques
        out = [{**r, "critique": fixed[i % len(fixed)], "verdict": None, "status": "ok"} for i, r in enumerate(drafts)]
        return StageOutput(records=out, info={"requests": 0, "ok": len(out), "failed": 0, "cost_usd": 0.0})
    generation = ctx.params["teacher"]["generation"]
    job = teacher_job(ctx, lambda rec: chat(style.critique_messages(rec["prompt"], rec["draft"]), generation), _parse)
    out, stats = run_generation(ctx, drafts, job, "critique (teacher)")
    raise_if_partial(ctx.name, stats, job.max_failed, job.budget_key)
    return StageOutput(records=out, info=stats)
