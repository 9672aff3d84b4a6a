"""Where the project's data folders live (the harness is installed editable from its checkout)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROMPTS_DIR = PROJECT_ROOT / "prompts"
EVAL_SUITES_DIR = PROJECT_ROOT / "eval_suites"
RECIPES_DIR = PROJECT_ROOT / "recipes"


def default_runs_dir() -> Path:
    """RUNS_DIR: `--runs-dir`, else $CGD_RUNS_DIR, else ./runs."""
    return Path(os.environ.get("CGD_RUNS_DIR", "runs"))
