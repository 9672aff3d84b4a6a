"""The teacher critiques each (prompt, draft) and ends with a verdict line ("Conclusion: right|wrong").

With `teacher.parser` the critique is the parsed text (the raw one kept as `critique_raw` when it differs) and the
verdict is read from it. With `teacher.reask: false` a critique is kept as generated, as in the official code
(CapitalOne-Research/Critique-Guided-Distillation, src/cgd_pipeline.py, `run_pipeline_step`, which keeps every
output of the critique step): no verdict line gives verdict None (`no_verdict` in the stage info), a critique cut
off at max_tokens is kept (`critique_cut_off`, counted `cut_off`).
"""

from __future__ import annotations

from harness.grading import verdict_of
from harness.parsers import parsed_fields
from harness.prompts import PromptStyle
from harness.stages.base import Record, StageContext, StageInput, StageOutput
from harness.stages.generation import Malformed, kept_as_generated, raise_if_partial, run_generation
from harness.stages.teacher import chat, teacher_job, teacher_parser, teacher_reask

KIND = "critique"
VERSION = 1
READS = ("prompt", "draft")
WRITES = ("critique", "verdict")


def make_parser(parser: str = "none", reask: bool = True):
    """The critique parser: the parsed text and its verdict; a missing verdict is re-asked (reask) or kept."""

    def parse(rec: Record, result) -> dict:
        fields = parsed_fields("critique", result.text.strip(), parser)
        verdict = verdict_of(fields["critique"])
        cut_off = result.finish_reasons[:1] == ["length"]
        if verdict is None and reask:
            cut = " (cut off at max_tokens)" if cut_off else ""
            raise Malformed(f"no 'Conclusion: right|wrong' line{cut}")
        if cut_off and not reask:
            fields["critique_cut_off"] = True
        return {**fields, "verdict": verdict}

    return parse


_parse = make_parser()  # today's behaviour: a verdict-less critique is re-asked


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    style = PromptStyle.from_params(ctx.params["style"])
    drafts = [r for r in inputs["probe"].records if r.get("status") == "ok"]
    if style.fixed_critiques:
        # A boilerplate style: no teacher call, the same kind of text for every problem (no verdict to parse).
        fixed = style.fixed_critiques
        out = [{**r, "critique": fixed[i % len(fixed)], "verdict": None, "status": "ok"} for i, r in enumerate(drafts)]
        return StageOutput(records=out, info={"requests": 0, "ok": len(out), "failed": 0, "cost_usd": 0.0})
    generation = ctx.params["teacher"]["generation"]
    reask = teacher_reask(ctx)
    job = teacher_job(ctx, lambda rec: chat(style.critique_messages(rec["prompt"], rec["draft"]), generation),
                      make_parser(teacher_parser(ctx), reask))
    out, stats = run_generation(ctx, drafts, job, "critique (teacher)")
    raise_if_partial(ctx.name, stats, job.max_failed, job.budget_key)
    if not reask:
        stats["no_verdict"] = sum(1 for r in out if r.get("status") == "ok" and r.get("verdict") is None)
        stats |= kept_as_generated(out, "critique")
    return StageOutput(records=out, info=stats)
