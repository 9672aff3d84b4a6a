"""What the student-side generation stages share (probe, self_critique, self_refine): the student's back-end."""

from __future__ import annotations

from typing import Any

from harness.llm import canonical, make_backend
from harness.pricing import price_for
from harness.stages.base import StageContext
from harness.stages.generation import GenerationJob, Parser


def student_job(ctx: StageContext, model_path: str, build: Any, parse: Parser, **kw: Any) -> GenerationJob:
    """The student takes the teacher's connection keys: it can be hf in-process, a served model (openai_compat at
    base_url, or vllm started here) or a paid API. Its empty answer is a (bad) answer, not a failure."""
    spec = ctx.recipe.student
    backend_name = canonical(ctx.params["backend"])
    return GenerationJob(backend=make_backend(backend_name, spec, model_path, workdir=ctx.path),
                         backend_name=backend_name, price=price_for(backend_name, model_path), build=build,
                         parse=parse, max_malformed_retries=0, allow_empty=True, max_failed=spec.max_failed, **kw)
