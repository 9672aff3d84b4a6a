"""harness.provenance: what a run manifest records to explain a difference between machines."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from harness import provenance as prov

TOP_KEYS = {"harness", "python", "packages", "platform", "cpu", "gpu", "torch_threads", "cpu_numerics_pinned"}
REQUIRED_PACKAGES = {"torch", "transformers", "axolotl", "lm_eval", "evalplus", "vllm"}


def test_keys_present_and_json_ready():
    p = prov.provenance()
    assert set(p) >= TOP_KEYS
    assert set(p["packages"]) >= REQUIRED_PACKAGES
    assert p["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert {"model", "cores", "usable_cores", "flags"} <= set(p["cpu"])
    assert p["cpu"]["cores"] == os.cpu_count()
    assert {"kind", "count", "driver"} <= set(p["gpu"])
    assert json.loads(json.dumps(p)) == p


def test_versions_match_installed_metadata():
    packages = prov.provenance()["packages"]
    for name, version in packages.items():
        try:
            expected = metadata.version(name)
        except metadata.PackageNotFoundError:
            expected = None
        assert version == expected, name
    assert packages["torch"] is not None  # a core dependency: installed wherever the tests run


def test_fast_and_imports_nothing_heavy():
    code = ("import sys, time; t = time.monotonic(); from harness.provenance import provenance; provenance(); "
            "print(time.monotonic() - t); print(sorted(m for m in ('torch', 'transformers', 'lm_eval', 'axolotl', "
            "'evalplus', 'vllm', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout.splitlines()
    assert float(out[0]) < 1.0
    assert out[1] == "[]"
    start = time.monotonic()
    prov.provenance()
    assert time.monotonic() - start < 1.0


def test_no_environment_values_leak(monkeypatch):
    secrets = {"CGD_FAKE_SECRET": "sk-fake-5d1f0c9e7a3b4e21", "ANTHROPIC_API_KEY": "sk-ant-fake-93e1a0b7c2",
               "HF_TOKEN": "hf_fakeTOKENvalue1234567", "OPENAI_API_KEY": "sk-proj-fake-0c4d7e"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    text = json.dumps(prov.provenance())
    for name, value in secrets.items():
        assert value not in text
        assert name not in text


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                   check=True, capture_output=True)


def test_harness_commit_of_a_checkout_and_of_a_plain_folder(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert prov.harness_commit(plain) is None
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert prov.harness_commit(repo) == {"commit": head, "dirty": False}
    (repo / "untracked.txt").write_text("runs and scratch files do not make a checkout dirty\n")
    assert prov.harness_commit(repo)["dirty"] is False
    (repo / "a.txt").write_text("two\n")
    assert prov.harness_commit(repo) == {"commit": head, "dirty": True}
    inner = repo / "sub"
    inner.mkdir()
    (inner / ".git").write_text("gitdir: nowhere\n")  # a folder inside another repository is not its checkout
    assert prov.harness_commit(inner) is None


def _fake_nvidia_smi(folder: Path, output: str, code: int = 0) -> None:
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\nprintf '{output}'\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(("output", "code", "expected"), [
    ("NVIDIA H100 80GB HBM3, 550.54.15\\nNVIDIA H100 80GB HBM3, 550.54.15\\n", 0,
     {"kind": "NVIDIA H100 80GB HBM3", "count": 2, "driver": "550.54.15"}),
    ("", 9, {"kind": None, "count": 0, "driver": None}),
])
def test_gpu_info_from_nvidia_smi(tmp_path, monkeypatch, output, code, expected):
    _fake_nvidia_smi(tmp_path / "bin", output, code)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    assert prov.gpu_info() == expected


def test_gpu_info_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert prov.gpu_info() == {"kind": None, "count": 0, "driver": None}


def test_records_whether_cpu_numerics_are_pinned(monkeypatch):
    from harness.tiny.student import cpu_numerics_env

    pinned = cpu_numerics_env()
    for name in pinned:
        monkeypatch.delenv(name, raising=False)
    assert prov.provenance()["cpu_numerics_pinned"] is False
    for name, value in pinned.items():
        monkeypatch.setenv(name, value)
    assert prov.provenance()["cpu_numerics_pinned"] is True
