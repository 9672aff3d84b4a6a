"""The student answers each prompt alone: the draft y'.

The request is the prompt as the only user turn, as in the official code (CapitalOne-Research/
Critique-Guided-Distillation, src/cgd_pipeline.py, `PromptFormatter.for_probing`); a student whose tokenizer has
no chat template gets it as the plain completion "Question: {q}\\n\\nAnswer:" (`VLLMClient._to_prompt`), which
the hf back-end does (harness/llm/hf.py). With `student.parser` the draft is the parsed text (`draft_raw` and
`drafts_raw` keep the raw ones when the parser changed them), as the official probe step parses S1.1 drafts at
the `answer\\s+Answer` marker.
"""

from __future__ import annotations

from harness.parsers import parsed_fields, parsed_list
from harness.stages.base import StageContext, StageFailed, StageInput, StageOutput
from harness.stages.generation import raise_if_partial, run_generation
from harness.stages.student_gen import probe_parser, student_job
from harness.stages.teacher import chat

KIND = "probe"
VERSION = 1
READS = ("id", "prompt")
WRITES = ("draft", "drafts")


def draft_fields(texts: list[str], parser: str = "none") -> dict:
    """`draft` (the first sample) and `drafts` (all), parsed, with their raw texts when the parser changed them."""
    return {**parsed_fields("draft", texts[0] if texts else "", parser), **parsed_list("drafts", texts, parser)}


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    records = inputs["data"].records
    generation = ctx.params["generation"]
    parser = probe_parser(ctx)
    job = student_job(ctx, inputs["student"].info["model_path"],
                      lambda rec: chat([{"role": "user", "content": rec["prompt"]}], generation),
                      lambda rec, result: draft_fields(result.texts, parser))
    out, stats = run_generation(ctx, records, job, "probe (student drafts)")
    raise_if_partial(ctx.name, stats, job.max_failed)
    if stats["ok"] == 0:
        raise StageFailed(ctx.name, f"no draft could be generated: {stats['failures'][:3]}")
    if parser != "none":
        stats["parser"] = parser
        stats["parsed"] = sum(1 for r in out if "draft_raw" in r)
    return StageOutput(records=out, info=stats)
