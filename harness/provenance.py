"""What a run manifest records so that a difference in numbers between two machines can be explained: the
harness commit, the Python and package versions, the CPU and the GPUs.

Fast (well under a second) and light: package versions come from installed metadata (`importlib.metadata`), never
from importing torch or lm-eval; the CPU from /proc/cpuinfo; the GPUs from `nvidia-smi` when it is on PATH. No
environment variable's value is ever recorded (only whether the reproducible CPU settings are in force), so no
secret can end up in a manifest.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

HARNESS_ROOT = Path(__file__).resolve().parent.parent  # site-packages in a wheel: no .git, so no commit recorded
PACKAGES = ("torch", "transformers", "tokenizers", "accelerate", "datasets", "safetensors", "axolotl", "lm_eval",
            "evalplus", "vllm", "deepspeed", "peft", "numpy")
"""Distributions whose version is recorded (None when not installed)."""
CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "neon", "asimd")
"""Instruction-set extensions that select different float kernels (so they can change low-order bits)."""
_TIMEOUT_S = 3.0
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_CEILING_DIRECTORIES")


def provenance() -> dict[str, Any]:
    """Harness commit, Python, package versions, platform, CPU and GPU facts, as a JSON-ready dict."""
    return {
        "harness": harness_commit(),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "packages": package_versions(),
        "platform": {"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
                     "libc": "-".join(platform.libc_ver()) or None},
        "cpu": cpu_info(),
        "gpu": gpu_info(),
        "torch_threads": _torch_threads(),
        "cpu_numerics_pinned": cpu_numerics_pinned(),
    }


def cpu_numerics_pinned() -> bool:
    """Whether this process runs with the reproducible CPU settings (harness.tiny.student.cpu_numerics_env): a
    yes/no, never the variables' values."""
    from harness.tiny.student import cpu_numerics_env

    return all(os.environ.get(name) == value for name, value in cpu_numerics_env().items())


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(root: Path, *args: str) -> str | None:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env["GIT_OPTIONAL_LOCKS"] = "0"  # `git status` must not take the index lock of a checkout someone is using
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=_TIMEOUT_S, env=env, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def harness_commit(root: Path | None = None) -> dict[str, Any] | None:
    """{"commit": HEAD, "dirty": tracked files changed} of the harness checkout; None when the harness is not run
    from its own git checkout (an installed wheel, a tarball, or a folder inside some other repository)."""
    root = Path(root) if root is not None else HARNESS_ROOT
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return None
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def cpu_info() -> dict[str, Any]:
    model: str | None = None
    flags: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if model is None and key in ("model name", "hardware", "cpu model"):
                model = value.strip() or None
            elif not flags and key in ("flags", "features"):
                flags = set(value.split())
            if model is not None and flags:
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"model": model or platform.processor() or None, "cores": os.cpu_count(), "usable_cores": usable,
            "flags": [f for f in CPU_FLAGS if f in flags]}


def gpu_info() -> dict[str, Any]:
    """{"kind": the GPU name (names joined with ' + ' when they differ), "count", "driver"}; kind None and count 0
    without nvidia-smi or without NVIDIA GPUs."""
    none: dict[str, Any] = {"kind": None, "count": 0, "driver": None}
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return none
    try:
        proc = subprocess.run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=_TIMEOUT_S, stdin=subprocess.DEVNULL,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return none
    if proc.returncode != 0:
        return none
    rows = [[part.strip() for part in line.split(",")] for line in proc.stdout.splitlines() if line.strip()]
    if not rows:
        return none
    names = list(dict.fromkeys(row[0] for row in rows))
    drivers = list(dict.fromkeys(row[1] for row in rows if len(row) > 1))
    return {"kind": " + ".join(names), "count": len(rows), "driver": drivers[0] if drivers else None}


def _torch_threads() -> int | None:
    """torch's intra-op thread count when torch is already imported (never imported here just to ask)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return int(torch.get_num_threads())
    except Exception:  # a half-imported torch must not break a manifest
        return None
