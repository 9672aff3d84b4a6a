"""Resolve the student model: build the tiny one locally, or point at a local folder or a served model name."""

from __future__ import annotations

from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.stages.base import StageContext, StageInput, StageOutput

KIND = "student"
VERSION = 3  # 3: the tiny build pins its CPU numerics (another machine, the same bits)
READS: tuple[str, ...] = ()
WRITES: tuple[str, ...] = ()


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    p = ctx.params
    if p.get("model") != "tiny":
        return StageOutput(info={"model_path": ctx.runtime.get("model", p.get("model")), "built": False})
    from harness.prompts import load_style
    from harness.store import read_jsonl
    from harness.tiny.student import build_tiny_student

    out = ctx.path / "model"
    if not (out / "config.json").exists():
        tiny = p["tiny"]
        ctx.log(f"building the tiny student ({tiny['warmup_steps']} warm-up steps)")
        corpus = []
        for style in p["styles"]:
            corpus += load_style(style).corpus()
        with Progress(TextColumn("[bold]warm-up"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=ctx.console) as bar:
            task = bar.add_task("warm-up", total=tiny["warmup_steps"], loss="")

            def on_step(step: int, loss: float) -> None:
                bar.update(task, completed=step, loss=f"loss {loss:.3f}")

            stats = build_tiny_student(out, train_rows=read_jsonl(Path(ctx.runtime["train_path"])), extra_corpus=corpus,
                                       warmup_steps=tiny["warmup_steps"], hidden_size=tiny["hidden_size"],
                                       num_layers=tiny["num_layers"], seed=p["seed"],
                                       on_step=on_step)
        ctx.log(f"built: {stats}")
    return StageOutput(info={"model_path": str(out), "built": True})
