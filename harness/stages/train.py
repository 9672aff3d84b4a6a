"""Fine-tune the student on one exported dataset with Axolotl (`axolotl train`): one model per variant and seed.

Before launching, the Axolotl config is rendered into the stage folder (`axolotl.yaml`) and checked by Axolotl's
own validation and against this machine; a problem stops the stage before launch, reported at the recipe line it
comes from (exit 2). While training, the log streams to `train.log` and a progress bar shows the step, loss,
learning rate and tokens/s. A re-run resumes from the newest checkpoint; a finished training is never run twice.
Afterwards a LoRA adapter is merged, checkpoints are scored on held-out prompts when `train.select_checkpoint` is
set, and the model is recorded as a plain Hugging Face folder with the hash of the config that trained it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.stages.base import StageContext, StageFailed, StageInput, StageOutput
from harness.store import atomic_write_json, atomic_write_text, read_jsonl

KIND = "train"
VERSION = 2
READS: tuple[str, ...] = ()  # trains on its export stage's dataset file, not on records
WRITES: tuple[str, ...] = ()
HOLDOUT_SALT = "cgd-holdout"
DONE_MARKER = "trained.json"
RUNTIME_LAUNCH_KEYS = ("machine_rank", "main_process_ip", "main_process_port")
# What a checkpoint holds only to resume training; removed once the stage is done (the weights stay).
TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "rng_state*.pth", "global_step*", "zero_to_fp32.py", "latest")
MODEL_FILES_SKIP = (*TRAINING_STATE, "trainer_state.json", "training_args.bin", "tokens_state.json")
TOKENIZER_FILES = ("tokenizer", "special_tokens_map", "chat_template", "vocab", "merges", "added_tokens",
                   "generation_config")


# --- wiring (pipeline.build_graph) --------------------------------------------------------------------------


def stage_params(recipe: Any, seed: int) -> dict[str, Any]:
    """What a trained model depends on: the train block (without where the processes meet), the seed, and the
    content of the DeepSpeed config it names."""
    from harness.formats import DEFAULTS as FORMAT_DEFAULTS

    train = recipe.train.model_dump(mode="json")
    for key in RUNTIME_LAUNCH_KEYS:
        train["launcher"].pop(key, None)
    for key, default in FORMAT_DEFAULTS.items():  # train.format/chat_template/overlong count only when set
        if train.get(key) == default:
            train.pop(key, None)
    params: dict[str, Any] = {"train": train, "seed": seed}
    if recipe.train.deepspeed:
        from harness.axolotl.config import ConfigError, resolve_deepspeed

        recipe_dir = Path(recipe.source_path).parent if recipe.source_path else None
        with contextlib.suppress(ConfigError, OSError, ValueError):
            params["deepspeed_config"] = json.loads(resolve_deepspeed(recipe.train.deepspeed, recipe_dir).read_text())
    return params


def stage_inputs(recipe: Any, variant: str) -> dict[str, str]:
    inputs = {f"export:{variant}": f"export:{variant}", "student": "student"}
    if recipe.train.select_checkpoint is not None:
        inputs["data"] = "data"  # the held-out prompts and their reference answers
    return inputs


# --- held-out prompts ---------------------------------------------------------------------------------------


def _holdout_rank(record_id: str) -> str:
    return hashlib.sha256(f"{HOLDOUT_SALT}:{record_id}".encode()).hexdigest()


def holdout_records(records: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The `n` prompts with a reference answer that every variant and seed holds out: ranked by a hash of the id,
    so the choice depends on nothing but the ids."""
    usable = [r for r in records if r.get("reference") and r.get("prompt")]
    return sorted(usable, key=lambda r: _holdout_rank(str(r["id"])))[:n]


def write_without(dataset: Path, drop_ids: set[str], dest: Path) -> tuple[int, int]:
    """Copy the exported rows minus the held-out ids to `dest`; (kept, dropped)."""
    rows = read_jsonl(dataset)
    kept = [r for r in rows if str(r.get("id")) not in drop_ids]
    atomic_write_text(dest, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    return len(kept), len(rows) - len(kept)


# --- progress -----------------------------------------------------------------------------------------------


class TrainProgress:
    """Step, loss, learning rate and tokens/s from the Trainer's log dicts: a live bar on a terminal, else a plain
    line every `log_every_s` seconds and at the end."""

    def __init__(self, console: Console, label: str, *, world_size: int = 1, log_every_s: float = 30.0) -> None:
        self.console = console
        self.label = label
        self.world_size = world_size
        self.step = 0
        self.total: int | None = None
        self.loss: float | None = None
        self.lr: float | None = None
        self.tokens_per_s: float | None = None
        self._last_tokens: tuple[float, float] | None = None  # (time, tokens/total)
        self._log_every_s = log_every_s
        self._last_log = time.monotonic()
        self._live = console.is_terminal
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=console,
                                  disable=not self._live)
        self._task = self._progress.add_task(label, total=None, stats="")

    def __enter__(self) -> TrainProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
        if not self._live and self.step:
            self.console.print(f"  {self.line()}", highlight=False)

    def update(self, entry: dict[str, Any]) -> None:
        if "loss" not in entry:
            return
        now = time.monotonic()
        self.step = int(entry.get("step") or self.step)
        self.total = entry.get("total_steps") or self.total
        self.loss = _float(entry.get("loss"), self.loss)
        self.lr = _float(entry.get("learning_rate"), self.lr)
        per_gpu = _float(entry.get("tokens/train_per_sec_per_gpu"), None)
        total_tokens = _float(entry.get("tokens/total"), None)
        if per_gpu is not None:
            self.tokens_per_s = per_gpu * self.world_size
        elif total_tokens is not None and self._last_tokens is not None and now > self._last_tokens[0]:
            self.tokens_per_s = (total_tokens - self._last_tokens[1]) / (now - self._last_tokens[0])
        if total_tokens is not None:
            self._last_tokens = (now, total_tokens)
        self._progress.update(self._task, completed=self.step, total=self.total, stats=self.stats())
        if not self._live and now - self._last_log >= self._log_every_s:
            self._last_log = now
            self.console.print(f"  {self.line()}", highlight=False)

    def stats(self) -> str:
        parts = []
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.lr is not None:
            parts.append(f"lr {self.lr:.3g}")
        if self.tokens_per_s is not None:
            parts.append(f"{self.tokens_per_s:,.0f} tok/s")
        return "  ".join(parts)

    def line(self) -> str:
        total = f"/{self.total}" if self.total else ""
        return f"{self.label}: step {self.step}{total}  {self.stats()}".rstrip()


def _float(value: Any, default: float | None) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


# --- the stage ----------------------------------------------------------------------------------------------


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _launch_of(ctx: StageContext, overrides: dict[str, Any] | None = None) -> Any:
    from harness.axolotl.launch import Launch

    return Launch.of(ctx.recipe.train.launcher, **(overrides or {}))


def _env() -> dict[str, str]:
    env = {**os.environ, "AXOLOTL_DO_NOT_TRACK": "1", "WANDB_MODE": os.environ.get("WANDB_MODE", "disabled")}
    if _gpu_count() == 0:  # CPU training reproduces on any machine of this kind only with its numerics pinned
        from harness.tiny.student import cpu_numerics_env

        env.update(cpu_numerics_env())
    return env


def prepare(ctx: StageContext, inputs: dict[str, StageInput], *, gpus: int,
            launch: Any) -> tuple[dict[str, Any], Path, str, dict[str, Any]]:
    """Render, check and write the Axolotl config; (config, its path, its hash, facts for the stage info).

    Raises RecipeError (the problems at their recipe lines) before anything is launched."""
    from harness.axolotl.check import check_before_launch, locate
    from harness.axolotl.config import ConfigError, cpu_omissions, render_axolotl_config, write_config
    from harness.errors import RecipeError

    recipe, train = ctx.recipe, ctx.recipe.train
    export = next(i for name, i in inputs.items() if name.startswith("export"))
    dataset = Path(export.info["dataset"])
    facts: dict[str, Any] = {"dataset": str(dataset)}
    if train.select_checkpoint is not None:
        held = holdout_records(inputs["data"].records, train.select_checkpoint.holdout)
        kept, dropped = write_without(dataset, {str(r["id"]) for r in held}, ctx.path / "train.jsonl")
        if not kept:
            raise StageFailed(ctx.name, f"holding out {len(held)} prompts leaves no training rows")
        dataset = ctx.path / "train.jsonl"
        facts.update(dataset=str(dataset), holdout_ids=[str(r["id"]) for r in held], holdout_dropped_rows=dropped)
    on_gpu = gpus > 0
    recipe_dir = Path(recipe.source_path).parent if recipe.source_path else None
    try:
        cfg = render_axolotl_config(train, base_model=inputs["student"].info["model_path"], dataset_path=dataset,
                                    output_dir=ctx.path / "model", prepared_dir=ctx.path / "prepared",
                                    seed=ctx.params["seed"], on_gpu=on_gpu, recipe_dir=recipe_dir)
    except ConfigError as exc:
        raise RecipeError(locate(recipe, [(("train",), str(exc))])) from None
    if not on_gpu and cpu_omissions(train):
        ctx.log(f"no GPU here: {' and '.join(cpu_omissions(train))} left out (GPU only)")
    from harness.tracking.axolotl import axolotl_keys  # training curves; outside the fingerprint and config hash

    for key, value in axolotl_keys(recipe, ctx.name, ctx.store.root).items():
        cfg.setdefault(key, value)  # a train.axolotl key the user set wins
    check_before_launch(recipe, cfg, gpus=gpus, launch=launch)
    config_path = ctx.path / "axolotl.yaml"
    return cfg, config_path, write_config(cfg, config_path), facts


def _finished(ctx: StageContext, config_hash: str) -> bool:
    marker = ctx.path / DONE_MARKER
    with contextlib.suppress(OSError, ValueError):
        return json.loads(marker.read_text()).get("config_hash") == config_hash
    return False


def _launch(ctx: StageContext, config_path: Path, launch: Any, log_name: str = "train.log") -> Any:
    from harness.axolotl.launch import TrainFailed, run_axolotl_train

    ctx.log(f"axolotl train {escape(str(config_path))} (launcher {launch.kind}, {launch.world_size} process(es))")
    with TrainProgress(ctx.console, ctx.name, world_size=launch.world_size) as progress:
        try:
            from harness.tracking.axolotl import training_env

            return run_axolotl_train(config_path, log_path=ctx.path / log_name, launcher=launch,
                                     env={**_env(), **training_env(ctx.recipe, ctx.store.root)},
                                     on_progress=progress.update)
        except TrainFailed as exc:
            raise StageFailed(ctx.name, f"{exc} (likely cause: {exc.likely_cause})", exc.log_tail) from None


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    train = ctx.recipe.train
    gpus = _gpu_count()
    launch = _launch_of(ctx)
    cfg, config_path, config_hash, facts = prepare(ctx, inputs, gpus=gpus, launch=launch)
    out_dir = Path(cfg["output_dir"])
    info: dict[str, Any] = {"config": str(config_path), "config_hash": config_hash, **facts}
    if _finished(ctx, config_hash):
        ctx.log(f"already trained with this config ({escape(str(out_dir))}); recording it")
        info.update(json.loads((ctx.path / DONE_MARKER).read_text()).get("result", {}))
    elif launch.num_machines > 1:
        raise StageFailed(ctx.name, f"a {launch.num_machines}-machine training starts on every machine: run "
                                    f"`cgd train RECIPE --variant V --seed S --node-rank R` on each (or the script "
                                    f"of `cgd train --emit-slurm RECIPE`), then this again to record the model")
    else:
        result = _launch(ctx, config_path, launch)
        info.update(_mark_finished(ctx, config_hash, result))
        ctx.log(f"trained in {result.seconds:.0f}s, {result.steps} steps, final loss {result.final_loss}")
    model_dir = out_dir
    if train.method == "lora":
        model_dir = merge_lora(ctx, config_path, out_dir, ctx.path / "merged")
    if train.select_checkpoint is not None:
        held_ids = set(facts["holdout_ids"])
        held = [r for r in inputs["data"].records if str(r["id"]) in held_ids]
        export = next(i for name, i in inputs.items() if name.startswith("export"))
        held_rows = [r for r in read_jsonl(Path(export.info["dataset"])) if str(r.get("id")) in held_ids]
        selection = select_checkpoint(ctx, config_path, config_hash, out_dir, final_model=model_dir, holdout=held,
                                      holdout_rows=held_rows, final_step=info.get("steps"))
        model_dir = Path(selection["model_path"])
        info["checkpoint_selection"] = selection
    prune_training_state(out_dir)
    info["model_path"] = str(model_dir)
    return StageOutput(info=info)


def _mark_finished(ctx: StageContext, config_hash: str, result: Any) -> dict[str, Any]:
    facts = {"seconds": round(result.seconds, 1), "steps": result.steps, "final_loss": result.final_loss,
             "resumed_from": result.resumed_from and str(result.resumed_from)}
    atomic_write_json(ctx.path / DONE_MARKER, {"config_hash": config_hash, "result": facts})
    return facts


def run_node(ctx: StageContext, inputs: dict[str, StageInput], launch_overrides: dict[str, Any]) -> None:
    """One machine's share of a multi-machine training (`cgd train --node-rank R`): every machine renders the
    same config, checks it, and starts its processes; rank 0 marks the training finished, so that recording
    the stage afterwards (`cgd train` without --node-rank) does not train again."""
    launch = _launch_of(ctx, launch_overrides)
    launch.check()
    _, config_path, config_hash, _ = prepare(ctx, inputs, gpus=_gpu_count(), launch=launch)
    if _finished(ctx, config_hash):
        ctx.log("already trained with this config; nothing to do")
        return
    result = _launch(ctx, config_path, launch, log_name=f"train.node{launch.machine_rank}.log")
    if launch.machine_rank == 0:
        _mark_finished(ctx, config_hash, result)


# --- after training -----------------------------------------------------------------------------------------


def merge_lora(ctx: StageContext, config_path: Path, adapter_dir: Path, dest: Path) -> Path:
    """`axolotl merge-lora`: the adapter in `adapter_dir` merged into the base model, at `dest`/merged."""
    from harness.axolotl.launch import axolotl_executable, diagnose

    merged = dest / "merged"
    if (merged / "config.json").is_file():
        return merged
    cmd = [axolotl_executable(), "merge-lora", str(config_path), "--lora-model-dir", str(adapter_dir),
           "--output-dir", str(dest)]
    ctx.log(f"merging the LoRA adapter: {escape(' '.join(cmd[1:]))}")
    log = ctx.path / "merge.log"
    with log.open("a", encoding="utf-8") as handle:
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env(),
                              check=False)
    if proc.returncode != 0 or not (merged / "config.json").is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        raise StageFailed(ctx.name, f"axolotl merge-lora exited with code {proc.returncode} (log: {log}; likely "
                                    f"cause: {diagnose(tail, proc.returncode)})", tail)
    return merged


def _checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    from harness.axolotl.launch import _checkpoint_step

    found = []
    for path in out_dir.iterdir() if out_dir.is_dir() else ():
        step = _checkpoint_step(path)
        if step is None or not path.is_dir():
            continue
        if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
            found.append((step, path))
    return sorted(found)


def select_checkpoint(ctx: StageContext, config_path: Path, config_hash: str, out_dir: Path, *, final_model: Path,
                      holdout: list[dict[str, Any]], holdout_rows: list[dict[str, Any]],
                      final_step: int | None) -> dict[str, Any]:
    """Score every checkpoint (and the final model when no checkpoint is at the last step) on the held-out
    prompts (harness/stages/selection.py) and keep the best."""
    from harness.stages.selection import pick

    candidates: list[tuple[int, str, Path]] = [(step, path.name, path) for step, path in _checkpoints(out_dir)]
    last = max((step for step, _, _ in candidates), default=-1)
    if final_step is None or final_step > last or not candidates:
        candidates.append((final_step or last + 1, "final", final_model))
    chosen = pick(ctx, config_hash, candidates, holdout, holdout_rows)
    best = chosen.pop("best")
    if best["checkpoint"] == "final" or best["step"] == final_step:
        model = final_model
    elif ctx.recipe.train.method == "lora":
        model = merge_lora(ctx, config_path, Path(best["path"]), ctx.path / f"merged-{best['checkpoint']}")
    else:
        model = copy_model_files(Path(best["path"]), ctx.path / "selected", fallback=out_dir)
    return {**chosen, "model_path": str(model)}


def _is_training_state(path: Path) -> bool:
    return any(path.match(pattern) for pattern in MODEL_FILES_SKIP)


def copy_model_files(checkpoint: Path, dest: Path, *, fallback: Path) -> Path:
    """A plain Hugging Face folder of a checkpoint's weights (hard links where possible) plus tokenizer files
    the checkpoint lacks (taken from the final output folder)."""
    if (dest / "config.json").is_file():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for source in (checkpoint, fallback):
        for path in source.iterdir():
            wanted = source is checkpoint or path.name.startswith(TOKENIZER_FILES)
            if wanted and path.is_file() and not _is_training_state(path) and not (tmp / path.name).exists():
                try:
                    os.link(path, tmp / path.name)
                except OSError:
                    shutil.copy2(path, tmp / path.name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def prune_training_state(out_dir: Path) -> None:
    """Delete what checkpoints keep only to resume (optimizer and scheduler states, RNG, DeepSpeed shards)."""
    for _, checkpoint in _checkpoints(out_dir):
        for path in checkpoint.iterdir():
            if any(path.match(pattern) for pattern in TRAINING_STATE):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
