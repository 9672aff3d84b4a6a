"""Progress for long stages: done/total, requests per second, tokens, retries, failures and cost so far (rich).

On a terminal the bar redraws in place; elsewhere (CI logs, `--json` runs writing to a pipe) a plain line is
printed every `log_every_s` seconds and once at the end, so a long stage is never silent.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class StageProgress:
    def __init__(self, console: Console, label: str, total: int, *, log_every_s: float = 30.0) -> None:
        self.console = console
        self.label = label
        self.total = total
        self.done = 0
        self.cached = 0
        self.failed = 0
        self.unsent = 0
        self.retries = 0
        self.sent = 0  # requests actually sent to the back-end (not served from journal or cache)
        self.tokens = 0
        self.cost_usd = 0.0
        self.status = ""  # free text, e.g. the state of a provider batch
        self._start = time.monotonic()
        self._last_log = self._start
        self._log_every_s = log_every_s
        self._live = console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=console, transient=False,
            disable=not self._live,
        )
        self._task = self._progress.add_task(label, total=total, stats="")

    def __enter__(self) -> StageProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._refresh()
        self._progress.stop()
        if not self._live and self.total:
            self.console.print(f"  {self.line()}", highlight=False)

    def advance(self, n: int = 1, *, cached: int = 0, failed: int = 0, unsent: int = 0, tokens: int = 0,
                cost_usd: float = 0.0, retries: int = 0) -> None:
        """`n` records reached their final state (`failed` and `unsent` count those of them that are not ok)."""
        self.done += n
        self.cached += cached
        self.failed += failed
        self.unsent += unsent
        self.tokens += tokens
        self.cost_usd += cost_usd
        self.retries += retries
        self._refresh()

    def stats(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        fresh = self.done - self.cached
        text = f"{fresh / elapsed:.1f} req/s  {self.tokens:,} tok  ${self.cost_usd:.4f}"
        if self.cached:
            text += f"  cached {self.cached}"
        if self.retries:
            text += f"  retries {self.retries}"
        if self.failed:
            text += f"  failed {self.failed}"
        if self.unsent:
            text += f"  unsent {self.unsent}"
        if self.status:
            text += f"  {self.status}"
        return text

    def line(self) -> str:
        return f"{self.label}: {self.done}/{self.total}  {self.stats()}  {self.seconds:.0f}s"

    def _refresh(self) -> None:
        if self._live:
            stats = self.stats().replace(f"failed {self.failed}", f"[red]failed {self.failed}[/red]")
            self._progress.update(self._task, completed=self.done, stats=stats)
            return
        now = time.monotonic()
        if now - self._last_log >= self._log_every_s:
            self._last_log = now
            self.console.print(f"  {self.line()}", highlight=False)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._start
