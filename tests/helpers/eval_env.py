"""Shared set-up of the evaluation tests: a private datasets/EvalPlus cache seeded from the shipped fixtures, and
one tiny local model. A test module asks for them with `pytest_plugins = ["tests.helpers.eval_env"]`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.tiny_model import build_random_tiny_model


@dataclass
class EvalEnv:
    root: Path
    hf_home: Path
    datasets_cache: Path
    xdg: Path
    seeded: list


@pytest.fixture(scope="session")
def eval_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvalEnv]:
    """HF_HOME / HF_DATASETS_CACHE / XDG_CACHE_HOME in a temporary folder for the whole session, seeded offline."""
    import datasets.config

    from harness.datasets_seed import seed_all

    root = tmp_path_factory.mktemp("eval-env")
    hf_home, xdg = root / "hf", root / "xdg"
    cache = hf_home / "datasets"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(hf_home))
        mp.setenv("HF_DATASETS_CACHE", str(cache))
        mp.setenv("XDG_CACHE_HOME", str(xdg))
        mp.setenv("CGD_CACHE_DIR", str(root / "cgd-cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        mp.setenv("LMEVAL_LOG_LEVEL", "WARNING")
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
        seeded = seed_all()
        yield EvalEnv(root, hf_home, cache, xdg, seeded)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Qwen2-style model with a ChatML template (its outputs are garbage; plumbing only)."""
    return build_random_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")
