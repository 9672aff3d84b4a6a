"""MLflow: one run per recipe in one experiment (default: the base name), named after the recipe; a matrix's
members are children (`mlflow.parentRunId`) of a run named after the base name, which gets the matrix's pivot.

Params: the recipe, flattened (and as `recipe.json`). Metrics per stage: `stages/<stage>/{records,cost_usd,...}`
(every number of the stage's info, the verdict mix of a critique stage), its status as the tag
`stage/<stage>/status`; at the end `cost_usd`, `results_rows`, the table's cells as `table/<row>/<column>`, and the
`stages_table.json`, `results_table.json` (every evaluation row) and `comparison_table.json` artifacts (MLflow
tables: `mlflow.load_table`).
The tracking URI: the recipe's, else MLFLOW_TRACKING_URI, else `file:RUNS_DIR/mlruns`. A local file store needs
only `mlflow-skinny` (MLflow 3 asks for MLFLOW_ALLOW_FILE_STORE=true, which is set for file URIs); SQLite needs
the full `mlflow` package.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from harness.tracking import RunInfo, StageEvent, cell, columns_of, require

ACTIVE: dict[str, str] = {}
"""Recipe name -> the MLflow run id this process logs it to (the training runs Axolotl starts nest under it)."""
_PARENTS: dict[tuple[str, str, str], str] = {}  # (uri, experiment id, group) -> the matrix's parent run id
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_\-. :/]")


def resolve_uri(spec: Any, runs_root: Path) -> str:
    uri = getattr(spec, "tracking_uri", None) or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or (Path(runs_root) / "mlruns").absolute().as_uri()


def is_file_store(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri and not uri.startswith(("sqlite:", "databricks"))


def key(name: str) -> str:
    """A metric/param/tag name MLflow accepts (alphanumerics, `_ - . : /` and spaces)."""
    return _BAD_CHARS.sub("_", name)[:250]


def _flat(data: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}{k}."))
    else:
        out[prefix.rstrip(".")] = str(data)[:6000]
    return out


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    cols = columns_of(rows)
    return {c: [_text_or_number(r.get(c)) for r in rows] for c in cols}


def _text_or_number(value: Any) -> Any:
    value = cell(value)
    return "" if value is None else value


class MlflowTracker:
    label = "MLflow"

    def __init__(self, run: RunInfo) -> None:
        mlflow = require("mlflow", "MLflow")
        self._entities = require("mlflow.entities", "MLflow")
        spec = run.spec
        self.uri = resolve_uri(spec, run.runs_root)
        if is_file_store(self.uri):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        # A server that is down costs seconds, not MLflow's default minutes of retries (a value set wins).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
        self.client = mlflow.MlflowClient(self.uri)
        name = spec.experiment or run.group
        experiment = self.client.get_experiment_by_name(name)
        self.experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        tags = {"cgd.recipe": run.name, "cgd.group": run.group}
        self.parent: str | None = None
        if run.matrix:
            slot = (self.uri, self.experiment_id, run.group)
            if slot not in _PARENTS:
                parent = self.client.create_run(self.experiment_id, run_name=run.group,
                                                tags={"cgd.group": run.group, "cgd.matrix": "true"})
                _PARENTS[slot] = parent.info.run_id
            self.parent = _PARENTS[slot]
            tags["mlflow.parentRunId"] = self.parent
        self.run_id = self.client.create_run(self.experiment_id, run_name=run.name, tags=tags).info.run_id
        ACTIVE[run.name] = self.run_id
        self.name = run.name
        params = [self._entities.Param(key(k), v) for k, v in _flat(run.config).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        self.client.log_dict(self.run_id, run.config, "recipe.json")
        self._stages: dict[str, StageEvent] = {}

    def _metrics(self, values: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        metrics = [self._entities.Metric(key(k), float(v), now, 0) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def stage(self, event: StageEvent) -> None:
        self._stages[event.stage] = event
        prefix = f"stages/{event.stage}"
        self._metrics({f"{prefix}/records": event.records, f"{prefix}/cost_usd": event.cost_usd,
                       **{f"{prefix}/{k}": v for k, v in event.info.items() if k != "cost_usd"}})
        self.client.set_tag(self.run_id, key(f"stage/{event.stage}/status"), event.status)

    def finish(self, summary: dict[str, Any], results: list[dict[str, Any]], table: list[dict[str, Any]],
               matrix_table: list[dict[str, Any]] | None) -> None:
        stage_rows = [{"stage": e.stage, "kind": e.kind, "status": e.status, "records": e.records,
                       "cost_usd": e.cost_usd, "tokens": e.info.get("tokens"), "failed": e.info.get("failed"),
                       "seconds": e.info.get("seconds")} for e in self._stages.values()]
        for rows, artifact in ((stage_rows, "stages_table.json"), (results, "results_table.json"),
                               (table, "comparison_table.json")):
            if rows:
                self.client.log_table(self.run_id, _columns(rows), artifact)
        self._metrics({"cost_usd": summary.get("cost_usd", 0.0), "results_rows": len(results),
                       **{f"table/{r['row']}/{r['column']}": float(r["mean"]) for r in table
                          if r.get("mean") not in (None, "")}})
        if matrix_table and self.parent:
            self.client.log_table(self.parent, _columns(matrix_table), "matrix_table.json")
        self._end("FINISHED")

    def _end(self, status: str) -> None:
        ACTIVE.pop(self.name, None)
        self.client.set_terminated(self.run_id, status)
        if self.parent:
            self.client.set_terminated(self.parent, status)

    def close(self, status: str) -> None:
        self._end("FINISHED" if status == "done" else "FAILED")


def open_tracker(run: RunInfo) -> MlflowTracker:
    return MlflowTracker(run)
