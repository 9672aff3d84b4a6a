"""The tiny student builds byte-identically on machines that differ in thread count, CPU instruction set and hash
seed (issue 10: the same recipe and seed gave other scores on another machine).

Two "machines" are simulated by the build's caller: one single-threaded with torch's scalar kernels
(ATEN_CPU_CAPABILITY=default), one with two threads and the best kernels of this CPU (AVX2 or AVX-512). Before the
build pinned its numerics, these two gave different model.safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from harness.tiny.student import BUILD_ENV, X86_BUILD_ENV, build_env, build_tiny_student, cpu_numerics_env

ROOT = Path(__file__).resolve().parent.parent
X86 = platform.machine().lower() in ("x86_64", "amd64")

# The student stage's call (harness/stages/student.py), with a smaller model and a few warm-up steps: the same
# code path (tokenizer, model, plain and refine batches, save) in seconds.
DRIVER = """
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[2]))
from harness.pipeline import TINY_WARMUP_DATA
from harness.prompts import load_style
from harness.store import read_jsonl
from harness.tiny.student import build_tiny_student
corpus = []
for style in sorted({"paper", "generic"}):
    corpus += load_style(style).corpus()
steps = []
stats = build_tiny_student(Path(sys.argv[1]), train_rows=read_jsonl(TINY_WARMUP_DATA)[:600], extra_corpus=corpus,
                           warmup_steps=6, hidden_size=64, num_layers=2, seed=0,
                           on_step=lambda step, loss: steps.append(step))
print(json.dumps({"stats": stats, "steps": steps}))
"""


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _build_on(machine: dict[str, str], threads: int, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {*BUILD_ENV, *X86_BUILD_ENV}}
    env.update(machine)
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(out), str(threads)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not X86, reason="the build pins x86-64 kernels; other CPUs are reproducible only among themselves")
def test_two_machines_build_byte_identical_students(tmp_path):
    a = _build_on({"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default", "PYTHONHASHSEED": "1"}, 1,
                  tmp_path / "machine-a" / "model")
    b = _build_on({"OMP_NUM_THREADS": "2", "PYTHONHASHSEED": "2"}, 2, tmp_path / "elsewhere" / "b" / "model")
    ha, hb = _hashes(tmp_path / "machine-a" / "model"), _hashes(tmp_path / "elsewhere" / "b" / "model")
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json"} <= set(ha)
    assert ha == hb
    assert a["steps"] == b["steps"] == [1, 2, 3, 4, 5, 6]
    assert a["stats"]["final_loss"] == b["stats"]["final_loss"]
    assert a["stats"]["threads"] == 1 and a["stats"]["cpu_capability"] == "AVX2"
    # nothing but the model folder is left next to it (no .partial, no build scratch)
    assert sorted(p.name for p in (tmp_path / "machine-a").iterdir()) == ["model"]


def test_build_env_pins_threads_and_kernels():
    env = build_env({"OMP_NUM_THREADS": "16", "ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO",
                     "HF_HUB_OFFLINE": "1"}, machine="x86_64")
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_CBWR"] == "COMPATIBLE"
    assert env["PYTHONHASHSEED"] == "0" and env["HF_HUB_OFFLINE"] == "1"
    arm = build_env({"OMP_NUM_THREADS": "16"}, machine="aarch64")
    assert arm["OMP_NUM_THREADS"] == "1" and "ATEN_CPU_CAPABILITY" not in arm and "MKL_CBWR" not in arm


def test_a_failed_build_says_why_and_leaves_nothing(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError, match="(?s)building the tiny student failed.*KeyError"):
        build_tiny_student(out, train_rows=[{"prompt": "no question field"}], extra_corpus=[], warmup_steps=0)
    assert list(tmp_path.iterdir()) == []


def test_make_demo_pins_the_same_cpu_numerics_as_the_build():
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(row for row in text.splitlines() if row.startswith("DEMO_ENV :="))
    demo_env = dict(item.split("=", 1) for item in line.split(":=", 1)[1].split())
    assert demo_env == cpu_numerics_env(machine="x86_64")
    assert "env $(DEMO_ENV) $(VENV)/bin/cgd run recipes/tiny.yaml" in text
