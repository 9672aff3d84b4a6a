"""The student answers each prompt alone: the draft y'."""

from __future__ import annotations

from harness.llm import canonical, make_backend
from harness.pricing import price_for
from harness.stages.base import StageContext, StageFailed, StageInput, StageOutput
from harness.stages.generation import GenerationJob, raise_if_partial, run_generation
from harness.stages.teacher import chat

KIND = "probe"
VERSION = 1
READS = ("id", "prompt")
WRITES = ("draft", "drafts")


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    records = inputs["data"].records
    model_path = inputs["student"].info["model_path"]
    spec = ctx.recipe.student
    generation = ctx.params["generation"]
    backend_name = canonical(ctx.params["backend"])
    # The student takes the teacher's connection keys: drafts can come from hf in-process, a served model
    # (openai_compat at base_url, or vllm started here) or a paid API.
    job = GenerationJob(
        backend=make_backend(backend_name, spec, model_path, workdir=ctx.path), backend_name=backend_name,
        price=price_for(backend_name, model_path), build=lambda rec: chat([{"role": "user", "content": rec["prompt"]}],
                                                                          generation),
        parse=lambda rec, result: {"draft": result.text, "drafts": result.texts}, max_malformed_retries=0,
        allow_empty=True, max_failed=spec.max_failed,
    )
    out, stats = run_generation(ctx, records, job, "probe (student drafts)")
    raise_if_partial(ctx.name, stats, job.max_failed)
    if stats["ok"] == 0:
        raise StageFailed(ctx.name, f"no draft could be generated: {stats['failures'][:3]}")
    return StageOutput(records=out, info=stats)
