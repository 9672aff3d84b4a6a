"""Preflight: what the stages that will run need from this machine, checked before anything is sent.

Only stages that are not done in the store count (a cached stage needs nothing). For each one:
- the environment variable named by `api_key_env` of the back-end it sends with (student for the probe, teacher
  for critique, refine and answer) is set and non-empty;
- the server command (`vllm`, or `transformers` for `flavor: transformers`) is found where a stage starts a
  server (back-end `vllm` for drafts or teacher requests, eval back-end `vllm` for evaluate);
- the GPUs asked for are visible: the training launcher's processes on this machine (one GPU each; one process
  runs on the CPU), and a vLLM server's tensor x data parallel size.

Problems are strings `FILE:LINE:COL: key: message. Fix: ...`, one per problem, never holding a secret's value.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.llm import canonical, names_with
from harness.pipeline import STUDENT_KINDS, TEACHER_KINDS, Pipeline, PlannedStage


@dataclass
class _Need:
    recipe: Any
    where: tuple[str, ...]
    stages: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


def visible_gpus() -> int:
    """GPUs a process started here can use: `nvidia-smi -L` (MIG devices when there are any), cut down by
    CUDA_VISIBLE_DEVICES as CUDA reads it (up to the first invalid entry). Without nvidia-smi (another vendor's
    GPUs, a container without the tool), what torch sees, as the train stage counts them."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return _torch_gpus()
    physical = 0
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20).stdout
        lines = [line.strip() for line in out.splitlines()]
        mig = [line for line in lines if line.startswith("MIG ")]
        physical = len(mig) or sum(line.startswith("GPU ") for line in lines)
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is None:
        return physical
    entries = []
    for entry in cvd.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-"):
            break
        entries.append(entry)
    return min(len(entries), physical)


def _torch_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # no torch, or a broken driver: no usable GPU
        return 0


def _server_command(serve: dict[str, Any]) -> tuple[str, bool]:
    """(the command's first word, whether it is found) the way harness.llm.server.ServerLauncher looks it up."""
    flavor = serve.get("flavor") or "vllm"
    cmd = list(serve.get("command") or (["vllm", "serve"] if flavor == "vllm" else ["transformers", "serve"]))
    exe = cmd[0]
    found = shutil.which(exe) is not None or (Path(sys.executable).parent / exe).exists()
    return exe, found


def _serve_dict(spec: Any) -> dict[str, Any]:
    return spec.model_dump() if spec is not None else {}


def _fixed_critiques(stage: PlannedStage) -> bool:
    from harness.prompts import load_style

    try:
        return bool(load_style(stage.recipe.critique.style).fixed_critiques)
    except Exception:  # an unknown style is the recipe check's business
        return False


def _stages_text(names: list[str], verb: str = "") -> str:
    """'stage a' / 'stages a, b', with the verb agreeing ('stage a starts', 'stages a, b start')."""
    one = len(names) == 1
    text = ("stage " if one else "stages ") + ", ".join(names)
    return f"{text} {verb}{'s' if one else ''}" if verb else text


def preflight(pipe: Pipeline, until: str | None = None) -> list[str]:
    """Every missing prerequisite of the stages of `pipe` that will run (up to kind `until`), one line each."""
    # Keyed by the recipe file (a matrix's members share one line per problem) and what is needed.
    keys: dict[tuple, _Need] = {}
    servers: dict[tuple, _Need] = {}
    trains: dict[tuple, _Need] = {}
    for stage in pipe.unique_stages(until):
        if stage.dir.is_done():
            continue
        recipe = stage.recipe
        if stage.kind in STUDENT_KINDS:
            _sender(keys, servers, stage, "student", recipe.student, canonical(recipe.student.backend), "backend")
        elif stage.kind in TEACHER_KINDS:
            if stage.kind == "critique" and _fixed_critiques(stage):
                continue
            _sender(keys, servers, stage, "teacher", recipe.teacher, canonical(recipe.teacher.provider), "provider")
        elif stage.kind == "evaluate":
            backend = stage.runtime.get("backend") or {}
            if backend.get("kind") == "vllm":
                where = ("eval", "backend") if recipe.eval.backend == "vllm" else ("student", "backend")
                serve = backend.get("serve") or {}
                if serve.get("command"):
                    where = ("student", "vllm", "command")
                _add(servers, (_origin(recipe), where, *_serve_key(serve)), recipe, where, stage.name, serve=serve,
                     block="student")  # evaluate serves with the student's launch settings
        elif stage.kind == "train":
            launch = recipe.train.launcher
            if "num_processes" in launch.model_fields_set:
                where = ("train", "launcher", "num_processes")
            elif recipe.train.num_processes is not None:
                where = ("train", "num_processes")
            else:
                where = ("train", "launcher")
            _add(trains, (_origin(recipe), where, launch.num_processes, recipe.train.deepspeed), recipe, where,
                 stage.name,
                 processes=launch.num_processes, deepspeed=recipe.train.deepspeed)
    gpus = _lazy(visible_gpus)
    found: list[tuple[Any, tuple[str, ...], str]] = []
    for (_, _, env), need in keys.items():  # never the value: only whether it is there
        value = os.environ.get(env)
        if not value or not value.strip():
            state = "is not set" if value is None else "is empty"
            found.append((need.recipe, need.where,
                          f"environment variable {env} {state} (named by api_key_env; {_stages_text(need.stages)} "
                          f"will send to {need.detail['backend']} with it). Fix: export {env}=<your key>"))
    for need in servers.values():
        serve = need.detail["serve"]
        flavor = serve.get("flavor") or "vllm"
        exe, ok = _server_command(serve)
        if not ok:
            block = f"{need.detail['block']}.vllm.command"
            hint = ("install vLLM (in its own environment if need be) and put `vllm` on PATH, or point "
                    f"{block} at it, e.g. [/opt/vllm-env/bin/vllm, serve]" if flavor == "vllm"
                    else f"install transformers' `transformers` command, or point {block} at it")
            found.append((need.recipe, need.where,
                          f"{_stages_text(need.stages, 'start')} a {flavor} server, but command '{exe}' not found on "
                          f"PATH. Fix: {hint}"))
        wanted = int(serve.get("tensor_parallel_size") or 1) * int(serve.get("data_parallel_size") or 1)
        if flavor == "vllm" and wanted > 1 and wanted > gpus():
            found.append((need.recipe, need.where,
                          f"{_stages_text(need.stages, 'serve')} with vLLM on {wanted} GPUs (tensor_parallel_size x "
                          f"data_parallel_size), but this machine shows {_gpus_text(gpus())}. Fix: lower them in "
                          f"{need.detail['block']}.vllm, or run on a machine with {wanted} GPUs"))
    for need in trains.values():
        processes = need.detail["processes"]
        if processes > 1 and processes > gpus():
            found.append((need.recipe, need.where,
                          f"the training launcher asks for {processes} GPUs ({processes} processes on this machine, "
                          f"one GPU each; {_stages_text(need.stages)}), but this machine shows {_gpus_text(gpus())}. "
                          f"Fix: set train.launcher.num_processes to at most {max(gpus(), 1)}"
                          f"{' (one process runs on the CPU)' if gpus() == 0 else ''}, or run on a machine with "
                          f"{processes} GPUs"))
        if need.detail["deepspeed"] and gpus() > 0 and not _has_module("deepspeed"):
            found.append((need.recipe, ("train", "deepspeed"),
                          "DeepSpeed is not installed here. Fix: pip install 'axolotl[deepspeed]' "
                          "--no-build-isolation"))
    return _located(found)


def _gpus_text(n: int) -> str:
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen = "none" if n == 0 else f"{n}"
    return seen + (f" (CUDA_VISIBLE_DEVICES={cvd})" if cvd is not None else "")


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _lazy(fn: Callable[[], int]) -> Callable[[], int]:
    box: list[int] = []

    def get() -> int:
        if not box:
            box.append(fn())
        return box[0]

    return get


def _add(table: dict, key: tuple, recipe: Any, where: tuple[str, ...], stage: str, **detail: Any) -> None:
    need = table.setdefault(key, _Need(recipe, where, detail=detail))
    if stage not in need.stages:
        need.stages.append(stage)


def _sender(keys: dict, servers: dict, stage: PlannedStage, role: str, spec: Any, backend: str,
            backend_key: str) -> None:
    recipe = stage.recipe
    if spec.api_key_env and backend not in names_with("in_process"):  # in-process: nothing goes over the network
        _add(keys, (_origin(recipe), role, spec.api_key_env), recipe, (role, "api_key_env"), stage.name,
             backend=backend)
    if backend == "vllm":
        serve = _serve_dict(spec.vllm)
        where = (role, "vllm", "command") if serve.get("command") else (role, backend_key)
        _add(servers, (_origin(recipe), where, *_serve_key(serve)), recipe, where, stage.name, serve=serve,
             block=role)


def _origin(recipe: Any) -> Any:
    """The recipe file a (matrix member) recipe came from; a recipe without one is its own origin."""
    return recipe.source_path or id(recipe)


def _serve_key(serve: dict[str, Any]) -> tuple:
    return (serve.get("flavor") or "vllm", tuple(serve.get("command") or ()),
            int(serve.get("tensor_parallel_size") or 1) * int(serve.get("data_parallel_size") or 1))


def _located(found: list[tuple[Any, tuple[str, ...], str]]) -> list[str]:
    """FILE:LINE:COL: key: message, through the recipe loader's positions; the same line once (matrix members)."""
    from harness.axolotl.check import locate

    out: list[str] = []
    for recipe, where, message in found:
        try:
            [problem] = locate(recipe, [(where, message)])
            line = str(problem)
        except Exception:  # a position we cannot find is no reason to hide the problem
            line = f"{recipe.source_path or '<recipe>'}: {'.'.join(where)}: {message}"
        if line not in out:
            out.append(line)
    return out
