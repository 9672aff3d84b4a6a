"""Where the project's data folders live: prompts/, eval_suites/, recipes/ and data/.

One resource root: the checkout when the harness runs from it (an editable install: edits show up at once), else the
copy shipped inside the installed package (`harness/_bundled/`, written by setup.py's build_py into every wheel).
Nothing else derives a path from the source tree. Recipes and prompt styles in the working folder come first
(`./recipes/NAME.yaml`, `./prompts/STYLE.yaml`), the shipped ones after; a stage fingerprint never depends on where
the resources lie (files are hashed by content, suite include paths are made relative).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

RESOURCE_FOLDERS = ("prompts", "eval_suites", "recipes", "data")
_PACKAGE = Path(__file__).resolve().parent
BUNDLED_ROOT = _PACKAGE / "_bundled"


def _checkout() -> Path | None:
    """The source checkout the package is imported from (editable install or a plain clone on sys.path); None for
    an installed wheel."""
    root = _PACKAGE.parent
    if (root / "pyproject.toml").is_file() and all((root / name).is_dir() for name in RESOURCE_FOLDERS):
        return root
    return None


CHECKOUT: Path | None = _checkout()
"""The checkout the harness runs from, or None (an installed wheel: no git, no docs/, no tests/)."""
RESOURCE_ROOT: Path = CHECKOUT or BUNDLED_ROOT
"""The folder holding prompts/, eval_suites/, recipes/ and data/: the checkout's, else the shipped copy."""
PROJECT_ROOT = RESOURCE_ROOT  # the historical name: relative recipe paths (data.path) also resolve against it
PROMPTS_DIR = RESOURCE_ROOT / "prompts"
EVAL_SUITES_DIR = RESOURCE_ROOT / "eval_suites"
RECIPES_DIR = RESOURCE_ROOT / "recipes"
DATA_DIR = RESOURCE_ROOT / "data"


def default_runs_dir() -> Path:
    """RUNS_DIR: `--runs-dir`, else $CGD_RUNS_DIR, else ./runs."""
    return Path(os.environ.get("CGD_RUNS_DIR", "runs"))


def _unique(folders: list[Path]) -> list[Path]:
    out: list[Path] = []
    for folder in folders:
        if folder.is_dir() and all(folder.resolve() != o.resolve() for o in out):
            out.append(folder)
    return out


def prompt_dirs() -> list[Path]:
    """Where prompt styles are looked up, first match wins: ./prompts, then the shipped prompts/."""
    return _unique([Path.cwd() / "prompts", PROMPTS_DIR]) or [PROMPTS_DIR]


def shipped_recipes() -> list[str]:
    """The shipped recipes, as `recipes/NAME.yaml`."""
    return sorted(f"recipes/{p.name}" for p in RECIPES_DIR.glob("*.yaml"))


def shipped_recipe(raw: str | Path) -> Path | None:
    """The shipped recipe a relative path names (`recipes/tiny.yaml` or `tiny.yaml`), or None."""
    path = Path(raw)
    if path.is_absolute():
        return None
    for candidate in (RESOURCE_ROOT / path, RECIPES_DIR / path):
        if candidate.is_file() and candidate.resolve().is_relative_to(RECIPES_DIR.resolve()):
            return candidate
    return None


def resolve_recipe(raw: str | Path, *, announce: bool = True) -> Path:
    """A recipe argument: the file as given (relative to the working folder) when it exists, else the shipped
    recipe of that name (said on stderr when `announce`). A path that is neither comes back unchanged, for the
    loader's "no such recipe file" (see `missing_recipe_message`)."""
    path = Path(raw)
    if path.exists():
        return path
    shipped = shipped_recipe(path)
    if shipped is None:
        return path
    if announce:
        print(f"{raw}: not in the working folder; using the shipped recipe {shipped}", file=sys.stderr)
    return shipped


def missing_recipe_message(raw: str | Path) -> str:
    """What to say about a recipe file that is neither in the working folder nor shipped."""
    return f"no such recipe file (shipped recipes: {', '.join(shipped_recipes()) or 'none'})"
