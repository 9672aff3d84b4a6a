"""Training curves through Axolotl's own integrations: the W&B and MLflow keys of the rendered Axolotl config, and
the environment of the `axolotl train` process (run group, parent run, file-store opt-in).

These keys never reach a fingerprint: the train stage adds them after rendering, and the config hash it keeps
(harness.axolotl.config.config_hash) leaves them out, so turning tracking on neither re-trains nor re-resumes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from harness.tracking import group_of


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run_name(recipe: Any, stage_name: str) -> str:
    return f"{recipe.name}/{stage_name}"


def axolotl_keys(recipe: Any, stage_name: str, runs_root: Path) -> dict[str, Any]:
    """`wandb_*` / `use_mlflow` + `mlflow_*` keys for one training (none without tracking or with
    `tracking.training_curves: false`; none for a tracker whose library is not installed)."""
    tracking = getattr(recipe, "tracking", None)
    if tracking is None or not tracking.training_curves:
        return {}
    name = run_name(recipe, stage_name)
    keys: dict[str, Any] = {}
    if tracking.wandb is not None and _has("wandb"):
        from harness.tracking.wandb import resolve_mode

        keys |= {"wandb_project": tracking.wandb.project, "wandb_name": name,
                 "wandb_mode": resolve_mode(tracking.wandb)}
        if tracking.wandb.entity:
            keys["wandb_entity"] = tracking.wandb.entity
    if tracking.mlflow is not None and _has("mlflow"):
        from harness.tracking.mlflow import resolve_uri

        keys |= {"use_mlflow": True, "mlflow_tracking_uri": resolve_uri(tracking.mlflow, runs_root),
                 "mlflow_experiment_name": tracking.mlflow.experiment or group_of(recipe.name),
                 "mlflow_run_name": name}
    return keys


def training_env(recipe: Any, runs_root: Path) -> dict[str, str]:
    """Environment for `axolotl train`: the W&B group and job type; the MLflow tags that file the training under
    the recipe's run (when this process has one open)."""
    tracking = getattr(recipe, "tracking", None)
    if tracking is None or not tracking.training_curves:
        return {}
    env: dict[str, str] = {}
    if tracking.wandb is not None:
        from harness.tracking.wandb import resolve_mode

        env |= {"WANDB_RUN_GROUP": group_of(recipe.name), "WANDB_JOB_TYPE": "train",
                "WANDB_MODE": resolve_mode(tracking.wandb), "WANDB_SILENT": "true"}
    if tracking.mlflow is not None and _has("mlflow"):
        from harness.tracking.mlflow import ACTIVE, is_file_store, resolve_uri

        tags = {"cgd.recipe": recipe.name, "cgd.group": group_of(recipe.name), "cgd.stage": "train"}
        if recipe.name in ACTIVE:
            tags["mlflow.parentRunId"] = ACTIVE[recipe.name]
        env["MLFLOW_TAGS"] = json.dumps(tags)
        if is_file_store(resolve_uri(tracking.mlflow, runs_root)):
            env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    return env
