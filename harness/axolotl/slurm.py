"""`cgd train --emit-slurm`: an sbatch script that trains a recipe's models on a Slurm cluster.

One node: the script runs `cgd train` there (the train stage starts torchrun/accelerate with the recipe's
processes). Several nodes (`train.launcher.num_machines`): the stages before training run once on the first node;
then, for each model, `srun` starts `cgd train --node-rank $SLURM_NODEID` on every node, whose processes meet at
the first node of the allocation, and the first node records the finished model (LoRA merge, checkpoint selection)
without training again.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from harness.paths import CHECKOUT, resolve_recipe


def _q(parts: list[str]) -> str:
    return " ".join(shlex.quote(p) for p in parts)


def render_sbatch(recipe: Any, *, recipe_path: Path, jobs: list[tuple[str, int]], runs_dir: Path,
                  overrides: list[str] | None = None, python: str | None = None,
                  project_root: Path | None = None) -> str:
    """The script text. `jobs`: the (variant, seed) models to train, in order; paths are made absolute (the
    cluster's nodes are assumed to share the file system). The script starts in `project_root`: by default the
    checkout the harness runs from, else (an installed wheel) the working folder, where relative paths were written."""
    project_root = project_root or CHECKOUT or Path.cwd()
    launcher = recipe.train.launcher
    nodes, gpus = launcher.num_machines, launcher.num_processes
    cgd = [python or sys.executable, "-m", "harness.cli"]
    common = [str(resolve_recipe(recipe_path, announce=False).resolve()), "--runs-dir", str(Path(runs_dir).resolve())]
    for text in overrides or []:
        common += ["--set", text]
    name = recipe.name.split("__")[0]
    lines = [
        "#!/bin/bash",
        f"# Written by `cgd train --emit-slurm` for recipe {name}: {nodes} node(s) x {gpus} GPU(s), launcher "
        f"{launcher.kind}.",
        "# Submit with `sbatch THIS_FILE`; add your cluster's partition, account and time limit below.",
        f"#SBATCH --job-name=cgd-train-{name}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={gpus}",
        "#SBATCH --exclusive",
        "#SBATCH --output=cgd-train-%j.out",
        "set -euo pipefail",
        f"cd {shlex.quote(str(project_root))}",
        "export AXOLOTL_DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false",
        "",
        "# Data, drafts, critiques, refinements and exports: once, before any GPU process starts.",
        _q([*cgd, "run", common[0], "--until", "export", *common[1:]]),
        "",
    ]
    if nodes == 1:
        lines.append("# Each model: the train stage starts its processes on this node.")
        for variant, seed in jobs:
            lines.append(_q([*cgd, "train", *common, "--variant", variant, "--seed", str(seed)]))
        return "\n".join([*lines, *_epilogue(cgd, common)]) + "\n"
    node_cmd = _q(["exec", *cgd, "train", *common]) + (
        ' --variant "$VARIANT" --seed "$SEED" --node-rank "$SLURM_NODEID" --main-process-ip "$MAIN_IP"'
        ' --main-process-port "$MAIN_PORT"')
    lines += [
        "# The first node of the allocation is machine rank 0, where the processes meet.",
        'mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")  # (no `| head`: SIGPIPE + pipefail)',
        'MAIN_IP=${NODES[0]}',
        f"MAIN_PORT={launcher.main_process_port}",
        "export MAIN_IP MAIN_PORT",
        "",
        "# Each model: every node starts its share; then the first node records the finished model.",
        f"for JOB in {' '.join(shlex.quote(f'{v} {s}') for v, s in jobs)}; do",
        '  read -r VARIANT SEED <<< "$JOB"',
        "  export VARIANT SEED",
        f"  srun --nodes={nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c {shlex.quote(node_cmd)}",
        "  " + _q([*cgd, "train", *common]) + ' --variant "$VARIANT" --seed "$SEED"',
        "done",
    ]
    return "\n".join([*lines, *_epilogue(cgd, common)]) + "\n"


def _epilogue(cgd: list[str], common: list[str]) -> list[str]:
    return ["", "# Evaluation and the report (on this node) once every model is trained; uncomment to run them here:",
            "# " + _q([*cgd, "run", *common])]
