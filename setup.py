"""Ships the project's data folders inside the package: every wheel (`pip install .`, `pip wheel .`) carries
prompts/, eval_suites/, recipes/ and data/ as harness/_bundled/, where harness.paths finds them when the harness
does not run from its checkout. An editable install (`pip install -e .`) copies nothing: it reads the checkout's
folders directly, so edits show up at once. Everything else about the package is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RESOURCE_FOLDERS = ("prompts", "eval_suites", "recipes", "data")  # keep in step with harness/paths.py
HERE = Path(__file__).resolve().parent


class BuildPyWithResources(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "harness" / "_bundled"
        shutil.rmtree(target, ignore_errors=True)  # a stale copy from an earlier build must not linger
        for name in RESOURCE_FOLDERS:
            shutil.copytree(HERE / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithResources})
