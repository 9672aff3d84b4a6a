"""The package without its checkout: a wheel built from the checkout's sdist, installed in a fresh virtual environment
outside the checkout, runs the shipped tiny recipe from an empty folder (prompts, suites, recipes, fixtures and the
tiny world's data come from the package), keeps every shipped recipe's stage fingerprints, and lets the working
folder's recipes and prompt styles win over the shipped ones.

The new environment borrows this one's installed dependencies through a .pth line (nothing is downloaded or
reinstalled); the checkout's editable install is not among them (its finder is only installed by this
environment's own .pth processing), which the tests check by where `harness` is imported from.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
PINNED = CHECKOUT / "tests" / "data" / "recipe_fingerprints.json"
SKIP = {".git", ".venv", "runs", "build", "dist", ".pytest_cache", ".ruff_cache", "__pycache__", ".whl"}

pytestmark = pytest.mark.slow


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "CGD_RUNS_DIR")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled",
               OMP_NUM_THREADS="1", HF_HOME=str(tmp / "hf"), XDG_CACHE_HOME=str(tmp / "xdg"),
               PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (f"{proc.args}\n--- stdout ---\n{proc.stdout[-3000:]}\n"
                                  f"--- stderr ---\n{proc.stderr[-3000:]}")
    return proc


def _source_copy(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked and untracked, not ignored); a plain copy without git."""
    listed = subprocess.run(["git", "-C", str(CHECKOUT), "ls-files", "-co", "--exclude-standard", "-z"],
                            capture_output=True, timeout=60)
    if listed.returncode == 0 and shutil.which("git"):
        for name in filter(None, listed.stdout.decode().split("\0")):
            src = CHECKOUT / name
            if src.is_file() and not SKIP & set(Path(name).parts):
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:
        shutil.copytree(CHECKOUT, dest, ignore=shutil.ignore_patterns(*SKIP, "*.egg-info"), dirs_exist_ok=True)
    return dest


def _venv(path: Path, env: dict[str, str]) -> Path:
    """A fresh environment without pip whose site-packages also reads this environment's (the dependencies)."""
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", path], path.parent, env))
    python = path / "bin" / "python"
    site = Path(_ok(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         path.parent, env)).stdout.strip())
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_cgd_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))  # paths only: no .pth runs there
    return python


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    env = _env(tmp)
    src = _source_copy(tmp / "src")
    dist = tmp / "dist"
    _ok(_run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"],
             src, env, timeout=120))
    [sdist] = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "unpacked", filter="data")
    [unpacked] = (tmp / "unpacked").iterdir()
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist,
              unpacked], tmp, env, timeout=180))
    [wheel] = dist.glob("*.whl")
    python = _venv(tmp / "venv", env)
    _ok(_run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel], tmp, env,
             timeout=180))
    return {"tmp": tmp, "src": src, "sdist": sdist, "wheel": wheel, "python": python,
            "cgd": tmp / "venv" / "bin" / "cgd"}


def _empty(built: dict[str, Path], name: str) -> Path:
    folder = built["tmp"] / name
    folder.mkdir()
    return folder


def test_the_sdist_and_the_wheel_carry_the_data_folders(built):
    with zipfile.ZipFile(built["wheel"]) as whl:
        names = set(whl.namelist())
    for shipped in ("recipes/tiny.yaml", "prompts/paper.yaml", "eval_suites/tiny.yaml",
                    "eval_suites/tasks/tiny_arith", "eval_suites/chat_templates/templates.yaml", "eval_suites/fixtures",
                    "data/tiny/train.jsonl", "data/tiny/warmup.jsonl", "data/paper_results",
                    "data/grader_disagreements.jsonl"):
        assert any(n.startswith(f"harness/_bundled/{shipped}") for n in names), shipped
    for folder in ("recipes", "prompts", "eval_suites", "data"):  # every file of the checkout's folder, no more
        ours = {str(p.relative_to(CHECKOUT)) for p in (CHECKOUT / folder).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
        tracked = {str(p.relative_to(built["src"])) for p in (built["src"] / folder).rglob("*") if p.is_file()}
        bundled = {n.removeprefix("harness/_bundled/") for n in names if n.startswith(f"harness/_bundled/{folder}/")}
        assert bundled == tracked and tracked <= ours, folder
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    with tarfile.open(built["sdist"]) as tar:
        members = tar.getnames()
    for shipped in ("setup.py", "MANIFEST.in", "recipes/tiny.yaml", "data/tiny/train.jsonl", "prompts/paper.yaml"):
        assert any(m.endswith(f"/{shipped}") for m in members), shipped


def test_an_installed_wheel_runs_the_tiny_recipe_from_an_empty_folder(built):
    here, runs = _empty(built, "empty"), built["tmp"] / "runs"
    env = _env(built["tmp"])
    where = json.loads(_ok(_run([built["python"], "-c", "import json, harness, harness.paths as p; print(json.dumps("
                                 "[harness.__file__, str(p.CHECKOUT), str(p.RESOURCE_ROOT)]))"], here, env)).stdout)
    venv = str(built["tmp"] / "venv")
    assert where[0].startswith(venv) and where[1] == "None" and where[2].startswith(venv), where
    proc = _ok(_run([built["cgd"], "run", "recipes/tiny.yaml", "--until", "export", "--set",
                     "student.tiny.warmup_steps=0", "--runs-dir", runs, "--json"], here, env, timeout=600))
    assert "using the shipped recipe" in proc.stderr
    out = json.loads(proc.stdout)
    assert sorted(out["datasets"]) == sorted(["sft", "distilled_sft", "cft", "cgd"])
    for path in out["datasets"].values():
        assert Path(path).is_file() and Path(path).stat().st_size > 0 and Path(path).is_relative_to(runs)
    assert all(out["stages"][s]["status"] == "done" for s in ("data", "student", "probe", "critique", "refine"))
    assert sorted(p.name for p in here.iterdir()) == []  # nothing written to the working folder


def test_an_installed_wheel_keeps_every_shipped_recipes_fingerprints(built):
    script = (
        "import json, sys, tempfile\n"
        "from pathlib import Path\n"
        "from harness.paths import RECIPES_DIR\n"
        "from harness.pipeline import build_graph\n"
        "from harness.recipe import load_recipes\n"
        "from harness.store import RunStore\n"
        "out = {}\n"
        "with tempfile.TemporaryDirectory() as runs:\n"
        "    for path in sorted(RECIPES_DIR.glob('*.yaml')):\n"
        "        for recipe in load_recipes(path):\n"
        "            graph = build_graph(recipe, RunStore(Path(runs)), require_data=False)\n"
        "            out[recipe.name] = {n: s.fingerprint[:16] for n, s in graph.stages.items()}\n"
        "print(json.dumps(out))\n")
    proc = _ok(_run([built["python"], "-c", script], _empty(built, "fingerprints"), _env(built["tmp"])))
    assert json.loads(proc.stdout.splitlines()[-1]) == json.loads(PINNED.read_text())


def test_the_working_folders_recipes_and_prompt_styles_come_first(built):
    here, env = _empty(built, "user"), _env(built["tmp"])
    (here / "prompts").mkdir()
    (here / "recipes").mkdir()
    shipped = (CHECKOUT / "prompts" / "paper.yaml").read_text()
    (here / "prompts" / "paper.yaml").write_text(shipped + "\n# the user's own copy\nmarker: users-paper\n")
    (here / "prompts" / "mine.yaml").write_text("extends: generic\nmarker: users-mine\n")
    tiny = (CHECKOUT / "recipes" / "tiny.yaml").read_text()
    assert "\nname: tiny\n" in tiny
    (here / "recipes" / "tiny.yaml").write_text(tiny.replace("\nname: tiny\n", "\nname: users-tiny\n"))
    (here / "recipes" / "x.yaml").write_text("extends: tiny-ablation.yaml\nname: users-x\n"
                                             "critique: {style: mine}\n")
    styles = json.loads(_ok(_run([built["python"], "-c", "import json; from harness.prompts import available_styles, "
                                  "load_style as s; print(json.dumps([s('paper').spec.get('marker'), "
                                  "s('mine').spec.get('marker'), 'critique' in s('mine').spec, available_styles()]))"],
                                 here, env)).stdout)
    assert styles[:3] == ["users-paper", "users-mine", True] and {"paper", "generic", "mine"} <= set(styles[3])
    plan = json.loads(_ok(_run([built["cgd"], "plan", "recipes/tiny.yaml", "--json", "--runs-dir", here / "runs"],
                               here, env)).stdout)
    assert {s["recipe"] for s in plan["stages"]} == {"users-tiny"}
    # a user's recipe extends a shipped one by name (which extends its shipped sibling) and uses a user's style
    proc = _ok(_run([built["cgd"], "validate", "recipes/x.yaml", "--runs-dir", here / "runs"], here, env))
    assert "recipes/x.yaml: ok" in proc.stdout, proc.stdout
    missing = _run([built["cgd"], "run", "recipes/nope.yaml", "--runs-dir", here / "runs"], here, env)
    assert missing.returncode == 2 and "no such recipe file" in missing.stderr and "recipes/tiny.yaml" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_an_editable_install_reads_the_source_folders_directly(built):
    tmp, env = built["tmp"], _env(built["tmp"])
    python = _venv(tmp / "venv-editable", env)
    _ok(_run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-build-isolation",
              "--no-index", "-e", built["src"]], tmp, env, timeout=180))
    proc = _ok(_run([python, "-c", "import json, harness, harness.paths as p; print(json.dumps([harness.__file__, "
                     "str(p.CHECKOUT), str(p.RECIPES_DIR)]))"], _empty(built, "editable"), env))
    src = built["src"].resolve()
    assert json.loads(proc.stdout) == [str(src / "harness" / "__init__.py"), str(src), str(src / "recipes")]
    assert not (src / "harness" / "_bundled").exists()
