"""Fine-tune the student on one exported dataset with Axolotl (`axolotl train`), one model per seed."""

from __future__ import annotations

import os
from pathlib import Path

from harness.stages.base import StageContext, StageFailed, StageInput, StageOutput

KIND = "train"
VERSION = 1


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    from harness.axolotl.config import render_axolotl_config, write_config
    from harness.axolotl.launch import TrainFailed, run_axolotl_train

    export = next(i for name, i in inputs.items() if name.startswith("export"))
    base_model = inputs["student"].info["model_path"]
    out_dir = ctx.path / "model"
    cfg = render_axolotl_config(ctx.recipe.train, base_model=base_model, dataset_path=Path(export.info["dataset"]),
                                output_dir=out_dir, prepared_dir=ctx.path / "prepared", seed=ctx.params["seed"],
                                on_gpu=_on_gpu())
    config_path = ctx.path / "axolotl.yaml"
    config_hash = write_config(cfg, config_path)
    env = {**os.environ, "AXOLOTL_DO_NOT_TRACK": "1", "WANDB_MODE": os.environ.get("WANDB_MODE", "disabled")}
    ctx.log(f"axolotl train {config_path} (launcher {ctx.recipe.train.launcher})")
    last: dict = {}

    def on_progress(entry: dict) -> None:
        last.update(entry)

    try:
        result = run_axolotl_train(config_path, log_path=ctx.path / "train.log", launcher=ctx.recipe.train.launcher,
                                   num_processes=ctx.recipe.train.num_processes, env=env, on_progress=on_progress)
    except TrainFailed as exc:
        raise StageFailed(ctx.name, f"{exc} (likely cause: {exc.likely_cause})", exc.log_tail) from None
    ctx.log(f"trained in {result.seconds:.0f}s, {result.steps} steps, final loss {result.final_loss}")
    return StageOutput(info={"model_path": str(result.output_dir), "config": str(config_path),
                             "config_hash": config_hash, "seconds": round(result.seconds, 1),
                             "steps": result.steps, "final_loss": result.final_loss,
                             "resumed_from": result.resumed_from and str(result.resumed_from)})
