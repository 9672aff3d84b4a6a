"""What the student-side generation stages share (probe, self_critique, self_refine): the student's back-end,
and the student's output parser (`student.parser`)."""

from __future__ import annotations

from typing import Any

from harness.errors import HarnessError
from harness.llm import canonical, make_backend
from harness.parsers import DEFAULT as DEFAULT_PARSER
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


def probe_params(recipe: Any) -> dict[str, Any]:
    """The probe's fingerprinted params: the student's back-end and sampling, and its parser when not `none`
    (so recipes without one keep their fingerprints). The self-critique and self-refine stages sit downstream of
    the probe, so the parser reaches their fingerprints through it."""
    s = recipe.student
    params: dict[str, Any] = {"backend": s.backend, "generation": s.generation.model_dump()}
    if s.parser != DEFAULT_PARSER:
        params["parser"] = s.parser
    return params


def probe_parser(ctx: StageContext) -> str:
    """The student's parser as the probe's params carry it. A recipe that names one the params do not carry
    would make a cached probe stale when the parser changes: refused, never applied unfingerprinted."""
    parser = ctx.params.get("parser", DEFAULT_PARSER)
    wanted = ctx.recipe.student.parser
    if wanted != parser:
        raise HarnessError(f"{ctx.name}: student.parser is '{wanted}' but the probe's fingerprinted params carry "
                           f"'{parser}'; the probe's params must come from harness.stages.student_gen.probe_params")
    return parser
