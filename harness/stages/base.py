"""What every stage gets and gives.

A stage module exposes `KIND`, `VERSION`, `READS`/`WRITES` (the record columns it reads and adds) and
`run(ctx, inputs) -> StageOutput`. Everything a stage's output depends on is in `ctx.params` (hashed into the
fingerprint); `ctx.runtime` holds settings that change speed, not results (concurrency, batch sizes, budgets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from harness.store import RunStore, StageDir

if TYPE_CHECKING:  # the recipe package imports the variants, which import stage helpers: type only
    from harness.recipe import Recipe

Record = dict[str, Any]


@dataclass
class StageOutput:
    records: list[Record] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. path of a dataset or model, cost, counts


@dataclass
class StageInput:
    """An upstream stage's finished output."""

    name: str
    records: list[Record]
    info: dict[str, Any]


@dataclass
class StageContext:
    name: str
    params: dict[str, Any]
    runtime: dict[str, Any]
    stage_dir: StageDir
    store: RunStore
    console: Console
    recipe: Recipe  # for connection settings that are not part of the fingerprint

    @property
    def path(self) -> Path:
        return self.stage_dir.path

    def log(self, message: str) -> None:
        self.console.print(f"  [dim]{self.name}:[/dim] {message}")


class StageFailed(Exception):
    """A stage could not finish; the CLI shows the message and the log tail and exits 1."""

    def __init__(self, stage: str, message: str, log_tail: str = "") -> None:
        super().__init__(f"stage {stage} failed: {message}")
        self.stage = stage
        self.log_tail = log_tail


class StagePartial(StageFailed):
    """A stage ended with more failed or unsent records than its recipe allows. Its good records stay in the
    journal and the request cache; it is not committed as done, so the next run sends only what is missing."""

    def __init__(self, stage: str, message: str, failed: int, unsent: int, total: int) -> None:
        super().__init__(stage, message)
        self.failed, self.unsent, self.total = failed, unsent, total


class RunPartial(StageFailed):
    """A run that ended with partial stages: exit 1, with the run summaries (stage statuses) it wrote."""

    def __init__(self, stage: str, message: str, summaries: list[dict[str, Any]]) -> None:
        super().__init__(stage, message)
        self.summaries = summaries
