"""One small module per stage; the pipeline looks them up here by kind."""

from __future__ import annotations

from types import ModuleType

from harness.stages import (
    analysis,
    answer,
    critique,
    data,
    decontaminate,
    evaluate,
    export,
    probe,
    refine,
    self_critique,
    self_refine,
    student,
    train,
)

STAGES: dict[str, ModuleType] = {m.KIND: m for m in (data, decontaminate, student, probe, critique, refine, answer,
                                                      self_critique, self_refine, export, train, evaluate,
                                                      analysis)}
