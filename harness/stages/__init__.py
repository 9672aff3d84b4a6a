"""One small module per stage; the pipeline looks them up here by kind."""

from __future__ import annotations

from types import ModuleType

from harness.stages import answer, critique, data, evaluate, export, probe, refine, student, train

STAGES: dict[str, ModuleType] = {m.KIND: m for m in (data, student, probe, critique, refine, answer, export, train,
                                                      evaluate)}
