"""The upstream work stages a variant can train on, declared once: their kind, inputs and recipe params.

A variant names its `source` (a work stage, or `data`); the pipeline adds that stage and, through `inputs`, every
stage it needs, in declaration order. A plugin adds a work stage with `register_work(WorkStage(...))` (its kind must
be a stage module in harness/stages or registered there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ParamsOf = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class WorkStage:
    name: str
    """The stage's name in the graph (also what a variant's `source` says)."""
    kind: str
    """Its stage module (harness/stages/<kind>.py)."""
    inputs: dict[str, str]
    """Input key -> upstream stage name (data and student are always in the graph)."""
    params: ParamsOf
    """recipe -> the stage's fingerprinted params."""
    runtime: ParamsOf = field(default=lambda recipe: {})
    """recipe -> settings that change speed, never results (not fingerprinted)."""


def style_params(recipe: Any) -> dict[str, Any]:
    from harness.prompts import load_style

    return {"name": recipe.critique.style, "spec": load_style(recipe.critique.style).spec}


def _teacher_stage(recipe: Any) -> dict[str, Any]:
    from harness.stages.teacher import teacher_params

    return {"style": style_params(recipe), "teacher": teacher_params(recipe)}


def _probe(recipe: Any) -> dict[str, Any]:
    from harness.stages.student_gen import probe_params

    return probe_params(recipe)


_WORK: dict[str, WorkStage] = {}


def register_work(stage: WorkStage) -> WorkStage:
    if stage.name in _WORK and _WORK[stage.name] is not stage:
        raise ValueError(f"work stage '{stage.name}' registered twice")
    _WORK[stage.name] = stage
    return stage


for _stage in (
    WorkStage("probe", "probe", {"data": "data", "student": "student"}, _probe,
              lambda recipe: {"batch_size": recipe.student.batch_size}),
    WorkStage("critique", "critique", {"probe": "probe"}, _teacher_stage),
    WorkStage("refine", "refine", {"critique": "critique"}, _teacher_stage),
    WorkStage("answer", "answer", {"data": "data"}, _teacher_stage),
):
    register_work(_stage)

ALWAYS = ("data", "student")  # in every graph, built by the pipeline itself


def work_for(sources: set[str]) -> list[WorkStage]:
    """The work stages `sources` need, with everything upstream of them, in declaration order."""
    needed: set[str] = set()
    todo = [s for s in sources if s not in ALWAYS]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        if name not in _WORK:
            raise KeyError(f"no work stage '{name}'; available: {', '.join(_WORK)}")
        needed.add(name)
        todo += [u for u in _WORK[name].inputs.values() if u not in ALWAYS]
    return [w for w in _WORK.values() if w.name in needed]
