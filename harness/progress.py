"""Progress for long stages: counts, throughput, tokens, failures and cost so far (rich)."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class StageProgress:
    def __init__(self, console: Console, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.cached = 0
        self.failed = 0
        self.retries = 0
        self.sent = 0  # requests actually sent to the back-end (not served from journal or cache)
        self.tokens = 0
        self.cost_usd = 0.0
        self._start = time.monotonic()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=console, transient=False,
            disable=not console.is_terminal and total == 0,
        )
        self._task = self._progress.add_task(label, total=total, stats="")

    def __enter__(self) -> StageProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._refresh()
        self._progress.stop()

    def advance(self, n: int = 1, *, cached: int = 0, failed: int = 0, tokens: int = 0, cost_usd: float = 0.0,
                retries: int = 0) -> None:
        self.done += n
        self.cached += cached
        self.failed += failed
        self.tokens += tokens
        self.cost_usd += cost_usd
        self.retries += retries
        self._refresh()

    def _refresh(self) -> None:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        fresh = self.done - self.cached
        stats = f"{fresh / elapsed:.1f} req/s  {self.tokens:,} tok  ${self.cost_usd:.4f}"
        if self.cached:
            stats += f"  cached {self.cached}"
        if self.retries:
            stats += f"  retries {self.retries}"
        if self.failed:
            stats += f"  [red]failed {self.failed}[/red]"
        self._progress.update(self._task, completed=self.done, stats=stats)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._start
