"""The stage contract, checked: every stage declares the record fields it reads (READS) and adds (WRITES).

Before anything runs, a graph whose stage reads a field that nothing upstream of it writes is refused (an export
stage reads what its variant declares). After a stage runs, records that lack a field it declared are a failed
stage, never a silently thinner dataset downstream.
"""

from __future__ import annotations

from typing import Any

from harness.stages.base import StageFailed
from harness.variants import get_variant


def reads_of(stage: Any) -> tuple[str, ...]:
    if stage.kind == "export":
        return get_variant(stage.params["variant"]).reads
    return tuple(stage.module.READS)


def upstream_writes(graph: Any, stage: Any) -> set[str]:
    """Every field written by the stages `stage` reads from, directly or further up."""
    fields: set[str] = set()
    todo, seen = list(stage.inputs.values()), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        upstream = graph.stages[name]
        fields |= set(upstream.module.WRITES)
        todo += upstream.inputs.values()
    return fields


def graph_problems(graph: Any) -> list[str]:
    """One line per stage field that no upstream stage writes, naming the variant that put the stage there."""
    problems = []
    for stage in graph.stages.values():
        missing = [f for f in reads_of(stage) if f not in upstream_writes(graph, stage)]
        if missing:
            why = f"variant '{stage.params['variant']}': " if stage.kind == "export" else ""
            problems.append(f"{why}stage {stage.name} reads {', '.join(repr(f) for f in missing)}, which no stage "
                            f"upstream of it writes (upstream: {', '.join(_upstream_names(graph, stage)) or 'none'})")
    return problems


def _upstream_names(graph: Any, stage: Any) -> list[str]:
    names, todo = [], list(stage.inputs.values())
    while todo:
        name = todo.pop(0)
        if name not in names:
            names.append(name)
            todo += graph.stages[name].inputs.values()
    return names


def check_output(stage: str, writes: tuple[str, ...], records: list[dict[str, Any]]) -> None:
    """Refuse records (those that succeeded) lacking a field the stage declares it writes."""
    for rec in records:
        if rec.get("status", "ok") != "ok":
            continue
        missing = [f for f in writes if f not in rec]
        if missing:
            raise StageFailed(stage, f"record {rec.get('id')!r} lacks {', '.join(missing)}, which the stage declares "
                                     "it writes (WRITES); a stage must write what it declares")
