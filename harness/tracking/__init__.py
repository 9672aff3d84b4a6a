"""Experiment tracking: every stage of a `cgd run` (cached ones too), the evaluation rows and the final table, sent
to the trackers a recipe's `tracking:` block names (one module per tracker: wandb.py, mlflow.py).

One tracker run per recipe, named after it (a matrix member's name, `base__key=value`), grouped by the base name.
Tracking is never part of a fingerprint: the hooks only read what the pipeline already produced. A tracker that
fails (library missing, server down) prints one warning line and is dropped; the run goes on without it.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape

TRACKERS = {"wandb": "harness.tracking.wandb", "mlflow": "harness.tracking.mlflow"}
"""Tracker name (the key under `tracking:`) -> its module; each module has `open_tracker(run: RunInfo)`."""
EXTRA_HINT = "pip install 'cgd-harness[tracking]'"
VERDICT_KINDS = ("critique", "self_critique")
SECRET_KEY = re.compile(r"key|token|secret|password|passwd|credential", re.IGNORECASE)


class TrackerUnavailable(RuntimeError):
    """A tracker that cannot start here (its library is missing); the message names the extra to install."""


@dataclass
class StageEvent:
    recipe: str
    stage: str  # the stage's name in this recipe's graph (data, critique, train:cgd:0, ...)
    kind: str
    status: str  # done | cached | partial | blocked
    records: int
    cost_usd: float
    info: dict[str, Any]  # what the stage wrote, flattened to numbers (counts, tokens, failures, verdict mix)


@dataclass
class RunInfo:
    """What a tracker needs to open its run."""

    name: str  # the recipe (matrix member) name: the run's name
    group: str  # the matrix's base name (the recipe's own name when it is not a matrix member)
    matrix: bool
    spec: Any  # the tracker's block of `tracking:`
    config: dict[str, Any]  # the recipe, without anything that looks like a secret
    runs_root: Path


class Tracker(Protocol):
    label: str

    def stage(self, event: StageEvent) -> None: ...

    def finish(self, summary: dict[str, Any], results: list[dict[str, Any]], table: list[dict[str, Any]],
               matrix_table: list[dict[str, Any]] | None) -> None: ...

    def close(self, status: str) -> None: ...


def enabled(recipe: Any) -> list[str]:
    """The tracker names a recipe turns on."""
    spec = getattr(recipe, "tracking", None)
    return [name for name in TRACKERS if spec is not None and getattr(spec, name, None) is not None]


def group_of(recipe_name: str) -> str:
    return recipe_name.split("__")[0]


def trackers_for(recipe: Any, runs_root: Path, *, matrix: bool = False, names: list[str] | None = None
                 ) -> list[Tracker]:
    """One tracker per tracker the recipe's `tracking:` block names (or only `names`); raises TrackerUnavailable
    or the tracker's own error (TrackingSession turns those into one warning line)."""
    from harness.recipe import recipe_to_dict

    out = []
    for name in enabled(recipe):
        if names is None or name in names:
            run = RunInfo(recipe.name, group_of(recipe.name), matrix, getattr(recipe.tracking, name),
                          scrub(recipe_to_dict(recipe)), Path(runs_root))
            out.append(importlib.import_module(TRACKERS[name]).open_tracker(run))
    return out


def require(module: str, label: str) -> Any:
    """Import a tracker's library, or say which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TrackerUnavailable(f"{label} tracking needs the `{module}` package ({exc}); {EXTRA_HINT}") from None


# --- what gets logged ---------------------------------------------------------------------------------------


def scrub(data: Any) -> Any:
    """The recipe config without secrets: environment maps (`env:`) and keys that look like credentials keep
    their names, never their values. (API keys are never in a recipe; only the names of their variables.)"""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if key == "env" and isinstance(value, dict):
                out[key] = dict.fromkeys(value, "<redacted>")
            elif SECRET_KEY.search(str(key)) and not str(key).endswith("_env") and isinstance(value, str):
                out[key] = "<redacted>"
            else:
                out[key] = scrub(value)
        return out
    if isinstance(data, list):
        return [scrub(v) for v in data]
    return data


def numbers(data: Any, prefix: str = "", depth: int = 3) -> dict[str, float]:
    """The numeric leaves of a stage's info (counts, tokens, cost, failure reasons), keys joined with '/'."""
    out: dict[str, float] = {}
    if not isinstance(data, dict) or depth < 0:
        return out
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, int | float):  # bool too (as 0/1)
            out[name] = float(value)
        elif isinstance(value, dict):
            out.update(numbers(value, f"{name}/", depth - 1))
    return out


def verdict_mix(records: list[dict[str, Any]]) -> dict[str, float]:
    """Counts of the teacher's verdicts on the ok records of a critique stage: right, wrong, none."""
    mix = {"right": 0.0, "wrong": 0.0, "none": 0.0}
    for r in records:
        if r.get("status", "ok") != "ok":
            continue
        verdict = r.get("verdict")
        mix[verdict if verdict in ("right", "wrong") else "none"] += 1
    return mix


def table_rows(run_dir: Path, title: str) -> list[dict[str, Any]]:
    """The comparison table of a run (or matrix) folder as rows: one per (row, column) cell, as `cgd report
    --format csv` writes it."""
    import csv
    import io

    from harness.report.render import to_csv
    from harness.report.runs import load_runs
    from harness.report.table import build_table

    runs, _ = load_runs([run_dir])
    runs = [r for r in runs if r.rows]
    if not runs:
        return []
    return [{k: _number(v) for k, v in row.items()}
            for row in csv.DictReader(io.StringIO(to_csv(build_table(runs, title))))]


def _number(text: str) -> Any:
    """A CSV cell back as a number where it is one ('' -> None)."""
    if text == "":
        return None
    try:
        value = int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def result_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    path = summary.get("results")
    if not path or not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for row in rows:
        cols.update(dict.fromkeys(row))
    return list(cols)


def cell(value: Any) -> Any:
    """A table cell a tracker accepts: numbers and strings as they are, anything else as JSON text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, default=str, sort_keys=True)


# --- the session the pipeline talks to ----------------------------------------------------------------------


@dataclass
class TrackingSession:
    """The trackers of every recipe of one `cgd run`; opened lazily on the first event (a plan opens nothing)."""

    graphs: list[Any]
    runs_root: Path
    console: Console
    _trackers: dict[str, list[Tracker]] | None = None
    _where: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # fingerprint -> (recipe, stage name)
    _finished: bool = False

    @property
    def active(self) -> bool:
        return any(enabled(g.recipe) for g in self.graphs)

    def _open(self) -> dict[str, list[Tracker]]:
        if self._trackers is None:
            self._trackers = {}
            matrix = len(self.graphs) > 1 or any("__" in g.recipe.name for g in self.graphs)
            for graph in self.graphs:
                recipe = graph.recipe
                if not enabled(recipe):
                    continue
                for name, stage in graph.stages.items():
                    self._where.setdefault(stage.fingerprint, []).append((recipe.name, name))
                opened = []
                for tracker_name in enabled(recipe):
                    with self._guard(tracker_name, None):
                        opened += trackers_for(recipe, self.runs_root, matrix=matrix, names=[tracker_name])
                self._trackers[recipe.name] = opened
            if any(self._trackers.values()):
                atexit.register(self.close, "failed")
        return self._trackers

    @contextlib.contextmanager
    def _guard(self, label: str, tracker: Tracker | None):
        try:
            yield
        except Exception as exc:  # a tracker never fails the run: one line, then go on without it
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.console.print(f"[yellow]tracking:[/yellow] {escape(label)} is off for this run "
                               f"({escape(type(exc).__name__)}: {escape(message[:300])})")
            if tracker is not None and self._trackers:
                for trackers in self._trackers.values():
                    if tracker in trackers:
                        trackers.remove(tracker)
                with contextlib.suppress(Exception):
                    tracker.close("failed")

    def stage(self, planned: Any, result: Any) -> None:
        """After each stage of the run (done, cached, partial or blocked): its counts, cost, failures and, for a
        critique stage, the verdict mix; sent to every recipe whose graph holds the stage."""
        if not self.active:
            return
        trackers = self._open()
        info = numbers({k: v for k, v in (result.info or {}).items() if k != "failures"})
        if planned.kind in VERDICT_KINDS and result.status in ("done", "cached"):
            with contextlib.suppress(Exception):
                info.update({f"verdict/{k}": v for k, v in verdict_mix(planned.dir.read_records()).items()})
        for recipe_name, stage_name in self._where.get(planned.fingerprint, []):
            event = StageEvent(recipe_name, stage_name, planned.kind, result.status, int(result.records or 0),
                               float(result.cost_usd or 0.0), info)
            for tracker in list(trackers.get(recipe_name, [])):
                with self._guard(tracker.label, tracker):
                    tracker.stage(event)

    def finish(self, summaries: list[dict[str, Any]], matrix: dict[str, Any] | None = None) -> None:
        """After the reports are written: every evaluation row and the final table per recipe (and a matrix's
        pivot), then close the runs."""
        if not self.active or self._finished:
            return
        trackers = self._open()
        matrix_table = None
        if matrix:
            with contextlib.suppress(Exception):
                matrix_table = table_rows(Path(matrix["dir"]), group_of(summaries[0]["recipe"]))
        for summary in summaries:
            todo = list(trackers.get(summary["recipe"], []))
            if not todo:
                continue
            results, table = result_rows(summary), []
            if results:
                with contextlib.suppress(Exception):
                    table = table_rows(Path(summary["run_dir"]), summary["recipe"])
            for tracker in todo:
                with self._guard(tracker.label, tracker):
                    tracker.finish(summary, results, table, matrix_table)
        self._finished = True
        self._trackers = {}

    def close(self, status: str = "failed") -> None:
        """End runs that did not reach `finish` (a failed stage, an interrupted run)."""
        if self._finished or not self._trackers:
            return
        for trackers in self._trackers.values():
            for tracker in trackers:
                with contextlib.suppress(Exception):
                    tracker.close(status)
        self._trackers = {}
        self._finished = True


def session_for(graphs: list[Any], runs_root: Path, console: Console) -> TrackingSession:
    return TrackingSession(graphs, Path(runs_root), console)
