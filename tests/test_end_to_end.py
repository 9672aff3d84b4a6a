"""The whole spine on the embedded default: tiny student built and warmed up, oracle teacher, real `axolotl train`,
real lm-eval, the report. Shrunk with --set so it takes a few minutes on the CI box."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness.paths import RECIPES_DIR
from tests.test_pipeline import cgd

SMALL = ["--set", "data.limit=32", "--set", "student.tiny={warmup_steps: 150, hidden_size: 64, num_layers: 2}",
         "--set", "eval.limit=24", "--set", "train.global_batch_size=8"]
VARIANTS = ("base", "sft", "distilled_sft", "cft", "cgd")


def _weights_hash(model_dir: str) -> str:
    return hashlib.sha256((Path(model_dir) / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.slow
def test_tiny_recipe_end_to_end_then_fully_cached(tmp_path):
    runs = str(tmp_path / "runs")
    first = json.loads(cgd("run", str(RECIPES_DIR / "tiny.yaml"), *SMALL, "--json", "--runs-dir", runs).stdout)
    assert set(first["datasets"]) == set(VARIANTS) - {"base"}
    models = {v.split("@")[0]: path for v, path in first["models"].items()}
    assert set(models) == set(VARIANTS)
    base_hash = _weights_hash(models["base"])
    for variant in VARIANTS[1:]:  # every variant really trained: its weights moved away from the base model's
        assert _weights_hash(models[variant]) != base_hash, variant
        train_dir = Path(first["stages"][f"train:{variant}:0"]["path"])
        assert (train_dir / "axolotl.yaml").is_file() and (train_dir / "train.log").is_file()
    rows = [json.loads(line) for line in Path(first["results"]).read_text().splitlines()]
    scored = {r["variant"]: r for r in rows if r["benchmark"] == "tiny_arith" and r["metric"] == "exact_match"}
    assert set(scored) == set(VARIANTS)
    for row in scored.values():
        assert row["n"] == 24 and 0.0 <= row["value"] <= 1.0 and Path(row["samples"]).is_file()
    report = (Path(first["run_dir"]) / "report.md").read_text()
    for variant in VARIANTS:
        assert f"| {variant} |" in report
    # A second run finds every stage done and re-prints the same table.
    second = json.loads(cgd("run", str(RECIPES_DIR / "tiny.yaml"), *SMALL, "--json", "--runs-dir", runs).stdout)
    assert {s["status"] for s in second["stages"].values()} == {"cached"}
    assert (Path(second["run_dir"]) / "report.md").read_text() == report
