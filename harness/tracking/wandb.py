"""Weights & Biases: one run per recipe, named after it and grouped by the matrix's base name.

Per stage the summary holds `stages/<stage>/{records,cost_usd,status,...}` (every number the stage's info has:
requests, ok, failed, tokens, retries, failure reasons, the verdict mix of a critique stage); at the end the run
gets `cost_usd`, the `stages_table`, every evaluation row (`results_table`), the comparison table
(`comparison_table`, and its cells as `table/<row>/<column>` numbers) and, for a matrix member, the matrix's
pivot (`matrix_table`).
`mode`: the recipe's, else WANDB_MODE, else online. The API key only ever comes from W&B's own login/environment.
"""

from __future__ import annotations

import os
from typing import Any

from harness.tracking import RunInfo, StageEvent, cell, columns_of, require


def resolve_mode(spec: Any) -> str:
    return getattr(spec, "mode", None) or os.environ.get("WANDB_MODE") or "online"


class WandbTracker:
    label = "W&B"

    def __init__(self, run: RunInfo) -> None:
        wandb = require("wandb", "W&B")
        self._wandb = wandb
        spec = run.spec
        settings = wandb.Settings(silent=True, console="off", disable_git=True, save_code=False,
                                  x_disable_stats=True, disable_job_creation=True)
        self.run = wandb.init(project=spec.project, entity=spec.entity, name=run.name, group=run.group,
                              job_type="cgd-run", mode=resolve_mode(spec), config=run.config,
                              dir=os.environ.get("WANDB_DIR") or None, settings=settings, reinit="create_new",
                              tags=["matrix"] if run.matrix else None)
        self.matrix = run.matrix
        self._stages: dict[str, StageEvent] = {}

    def stage(self, event: StageEvent) -> None:
        self._stages[event.stage] = event
        prefix = f"stages/{event.stage}"
        values: dict[str, Any] = {f"{prefix}/records": event.records, f"{prefix}/cost_usd": event.cost_usd,
                                  f"{prefix}/status": event.status}
        values |= {f"{prefix}/{k}": v for k, v in event.info.items() if k not in ("cost_usd",)}
        values["cost_usd"] = round(sum(e.cost_usd for e in self._stages.values()), 6)
        for status in ("done", "cached", "partial", "blocked"):
            values[f"stages_{status}"] = sum(1 for e in self._stages.values() if e.status == status)
        self.run.summary.update(values)

    def _table(self, rows: list[dict[str, Any]]) -> Any:
        cols = columns_of(rows)
        return self._wandb.Table(columns=cols, data=[[cell(r.get(c)) for c in cols] for r in rows],
                                 allow_mixed_types=True)

    def finish(self, summary: dict[str, Any], results: list[dict[str, Any]], table: list[dict[str, Any]],
               matrix_table: list[dict[str, Any]] | None) -> None:
        stage_rows = [{"stage": e.stage, "kind": e.kind, "status": e.status, "records": e.records,
                       "cost_usd": e.cost_usd, "tokens": e.info.get("tokens"), "failed": e.info.get("failed"),
                       "seconds": e.info.get("seconds")} for e in self._stages.values()]
        logged: dict[str, Any] = {}
        if stage_rows:
            logged["stages_table"] = self._table(stage_rows)
        if results:
            logged["results_table"] = self._table(results)
        if table:
            logged["comparison_table"] = self._table(table)
        if matrix_table:
            logged["matrix_table"] = self._table(matrix_table)
        if logged:
            self.run.log(logged)
        self.run.summary.update({"cost_usd": summary.get("cost_usd", 0.0), "results_rows": len(results),
                                 **{f"table/{r['row']}/{r['column']}": float(r["mean"]) for r in table
                                    if r.get("mean") not in (None, "")}})
        self.run.finish(exit_code=0)

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "done" else 1)


def open_tracker(run: RunInfo) -> WandbTracker:
    return WandbTracker(run)
