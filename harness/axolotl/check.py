"""Check a recipe's training against Axolotl's own config validation and this machine, and point every problem at
the recipe line it comes from (`FILE:LINE:COL: message`, exit code 2), before anything is launched.

A key the user passed through `train.axolotl` is reported at that key; a rendered key at the recipe field it is
rendered from (learning_rate at train.learning_rate, base_model at student.model, ...).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import Problem, RecipeError

RENDERED_FROM = {
    "base_model": "student.model", "tokenizer_config": "student.model", "learning_rate": "train.learning_rate",
    "num_epochs": "train.epochs", "micro_batch_size": "train.micro_batch_size",
    "gradient_accumulation_steps": "train.global_batch_size", "sequence_len": "train.sequence_len",
    "warmup_ratio": "train.warmup_ratio", "lr_scheduler": "train.lr_scheduler",
    "sample_packing": "train.sample_packing", "pad_to_sequence_len": "train.sample_packing",
    "deepspeed": "train.deepspeed", "fsdp_version": "train.fsdp", "fsdp_config": "train.fsdp",
    "adapter": "train.method", "save_steps": "train.select_checkpoint", "save_total_limit": "train.select_checkpoint",
}
_KEY_RE = re.compile(r"^[A-Za-z_][\w.]*$")
_SINK = open(os.devnull, "w")  # noqa: SIM115 - never closed: a handler created while quiet may keep writing here


def _seed_path(recipe: Any) -> str:
    return "seeds" if recipe.seeds else "seed"


def recipe_path(recipe: Any, key: str | None, message: str = "") -> tuple[str | int, ...]:
    """The recipe path an Axolotl key (dotted, as Axolotl reports it) comes from."""
    passthrough = recipe.train.axolotl
    if key is None:  # a whole-config error: blame a passed-through key it names, else the train block
        named = [k for k in passthrough if re.search(rf"\b{re.escape(k)}\b", message)]
        return ("train", "axolotl", named[0]) if named else ("train",)
    parts = key.split(".")
    if parts[0] in passthrough:
        path: list[str | int] = ["train", "axolotl", parts[0]]
        node = passthrough[parts[0]]
        for part in parts[1:]:
            if isinstance(node, dict) and part in node:
                node = node[part]
                path.append(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                path.append(int(part))
            else:
                break
        return tuple(path)
    if parts[0] == "seed":
        return (_seed_path(recipe),)
    if parts[0].startswith("lora_"):
        return ("train", "method")
    dotted = RENDERED_FROM.get(parts[0])
    return tuple(dotted.split(".")) if dotted else ("train",)


def locate(recipe: Any, problems: list[tuple[tuple[str | int, ...], str]]) -> list[Problem]:
    """(recipe path, message) pairs -> FILE:LINE:COL problems, through the positions the loader kept for the recipe:
    a value from a file at its line there, one from a `--set` at `--set:N:COL`."""
    from harness.recipe.loader import locate as locate_in_recipe

    return [locate_in_recipe(recipe, p, f"{'.'.join(map(str, p))}: {m}") for p, m in problems]


def _split(problem: str, cfg: dict) -> tuple[str | None, str]:
    key, sep, _ = problem.partition(": ")
    if sep and _KEY_RE.match(key) and key.split(".")[0] in cfg:
        return key, problem
    return None, problem


def axolotl_problems(recipe: Any, cfg: dict, found: list[str]) -> list[Problem]:
    """Axolotl's validation messages for a config rendered from `recipe`, located in the recipe."""
    pairs = []
    for problem in found:
        key, message = _split(problem, cfg)
        path = recipe_path(recipe, key, message)
        if key is not None and path[:2] == ("train", "axolotl"):
            message = message.split(": ", 1)[1]  # the recipe path already names the key
        pairs.append((path, f"Axolotl rejects it: {message}"))
    return locate(recipe, pairs)


@contextlib.contextmanager
def quiet_axolotl() -> Iterator[None]:
    """Axolotl's import-time and validation chatter (GPU kernels that fail to load, warnings) off stderr."""
    names = ("axolotl", "torchao", "transformers", "bitsandbytes", "torch.utils._pytree", "root")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(_SINK), contextlib.redirect_stdout(_SINK):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def wants_gpu(train: Any) -> bool:
    """Whether a train block can only run on GPUs (several processes, DeepSpeed or FSDP)."""
    return train.world_size > 1 or bool(train.deepspeed) or train.fsdp is not None


def validate_recipe_training(recipe: Any) -> list[Problem]:
    """What `cgd validate` adds for training: the DeepSpeed file exists, and keys passed through `train.axolotl`
    pass Axolotl's schema (a config for the machine the recipe asks for; nothing is loaded). Recipes without
    `train.axolotl` keys skip importing Axolotl (seconds)."""
    from harness.axolotl.config import ConfigError, render_axolotl_config, resolve_deepspeed

    train = recipe.train
    recipe_dir = Path(recipe.source_path).parent if recipe.source_path else None
    if train.deepspeed:
        try:
            resolve_deepspeed(train.deepspeed, recipe_dir)
        except ConfigError as exc:
            return locate(recipe, [(("train", "deepspeed"), str(exc).removeprefix("train.deepspeed: "))])
    if not train.axolotl:
        return []
    from harness.axolotl.config import assumed_gpu_capabilities, cpu_capabilities, validate_config

    on_gpu = wants_gpu(train)
    here = Path("/cgd-validate")
    try:
        cfg = render_axolotl_config(train, base_model=recipe.student.model, dataset_path=here / "dataset.jsonl",
                                    output_dir=here / "model", prepared_dir=here / "prepared", seed=recipe.seed,
                                    on_gpu=on_gpu, recipe_dir=recipe_dir)
    except ConfigError as exc:
        return locate(recipe, [(("train",), str(exc))])
    with quiet_axolotl():
        caps = assumed_gpu_capabilities(train.launcher.num_processes) if on_gpu else cpu_capabilities()
        found = validate_config(cfg, capabilities=caps, normalize=False, check_capabilities=False)
    return axolotl_problems(recipe, cfg, found)


def machine_problems(recipe: Any, cfg: dict, *, gpus: int, launch: Any) -> list[Problem]:
    """Can this machine start the run: enough GPUs for the processes, DeepSpeed installed when asked for."""
    import importlib.util

    problems: list[tuple[tuple[str | int, ...], str]] = []
    where = ("train", "launcher", "num_processes") if "num_processes" in recipe.train.launcher.model_fields_set \
        else ("train", "launcher")
    if launch.num_processes > 1 and gpus == 0:
        problems.append((where, f"{launch.num_processes} training processes need {launch.num_processes} GPUs, and "
                                "this machine has none (Axolotl pins each process to cuda:LOCAL_RANK); use one "
                                "process on the CPU"))
    elif launch.num_processes > max(gpus, 1):
        problems.append((where, f"{launch.num_processes} processes on this machine, but it has {gpus} GPU(s)"))
    if cfg.get("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        problems.append((("train", "deepspeed"), "DeepSpeed is not installed here: "
                                                 "pip install 'axolotl[deepspeed]' --no-build-isolation"))
    return locate(recipe, problems)


def check_before_launch(recipe: Any, cfg: dict, *, gpus: int, launch: Any) -> None:
    """Axolotl's full validation (this machine's capabilities; loads the base model's config) and the machine
    checks; raises RecipeError with every problem located in the recipe."""
    from harness.axolotl.config import validate_config

    with quiet_axolotl():
        found = validate_config(cfg)
    problems = axolotl_problems(recipe, cfg, found) + machine_problems(recipe, cfg, gpus=gpus, launch=launch)
    if problems:
        raise RecipeError(problems)
