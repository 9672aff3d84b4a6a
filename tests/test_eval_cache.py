"""Eval results are cached by (model content hash, suite settings hash), not by path: a copy reuses its scores, a
model retrained in place is scored again, also when the pipeline would otherwise reuse a finished evaluate stage."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from harness.evaluation import EvalBackend, load_suite, model_content_hash
from harness.paths import PROJECT_ROOT
from harness.stages import evaluate
from tests.helpers.tiny_model import build_random_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_random_tiny_model(tmp_path_factory.mktemp("m") / "model")


def _rewrite_weights_in_place(folder: Path) -> None:
    """Change the weights' bytes but keep their size and modification time (what a path/stat key would miss)."""
    weights = folder / "model.safetensors"
    st = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture()
def fake_run_suite(monkeypatch):
    calls = []

    def fake(suite, *, model_path, out_dir, limit, batch_size, console, backend=None, launch=None):
        calls.append((suite["name"], model_path))
        return [{"benchmark": "b", "task": "t", "metric": "exact_match", "value": 0.5, "stderr": None, "n": 2,
                 "primary": True, "suite": suite["name"], "suite_hash": suite["hash"], "samples": None,
                 "results_file": None, "backend": "fake"}]

    monkeypatch.setattr(evaluate, "run_suite", fake)
    return calls


def test_content_hash_follows_content_not_path(model, tmp_path, monkeypatch):
    monkeypatch.setenv("CGD_CACHE_DIR", str(tmp_path / "memo"))
    h = model_content_hash(str(model))
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    (copy / "trainer_log.txt").write_text("not part of the model")
    assert model_content_hash(str(copy)) == h
    os.utime(copy / "model.safetensors")  # touched, same bytes
    assert model_content_hash(str(copy)) == h
    (copy / "chat_template.jinja").write_text((copy / "chat_template.jinja").read_text() + " ")
    assert model_content_hash(str(copy)) != h  # the tokenizer's template is part of the model
    _rewrite_weights_in_place(copy)
    assert model_content_hash(str(copy)) not in (h,)
    assert model_content_hash("org/not-downloaded") == model_content_hash("org/not-downloaded")


def test_score_model_reuses_by_content(model, tmp_path, monkeypatch, fake_run_suite):
    monkeypatch.setenv("CGD_CACHE_DIR", str(tmp_path / "memo"))
    suites = [load_suite("tiny")]
    kwargs = {"store_root": tmp_path / "runs", "limit": 2, "batch_size": 1, "backend": EvalBackend(),
              "console": Console()}
    rows, h = evaluate.score_model(str(model), suites, **kwargs)
    assert len(fake_run_suite) == 1 and rows[0]["model_hash"] == h
    copy = tmp_path / "elsewhere"
    shutil.copytree(model, copy)
    rows2, h2 = evaluate.score_model(str(copy), suites, **kwargs)
    assert h2 == h and len(fake_run_suite) == 1 and rows2 == rows  # same weights: scores reused
    evaluate.score_model(str(copy), suites, **{**kwargs, "limit": 3})
    assert len(fake_run_suite) == 2  # another item limit is another result
    evaluate.score_model(str(copy), [load_suite("tiny", max_gen_toks=7)], **kwargs)
    assert len(fake_run_suite) == 3  # other suite settings: another hash
    _rewrite_weights_in_place(copy)
    _, h3 = evaluate.score_model(str(copy), suites, **kwargs)
    assert h3 != h and len(fake_run_suite) == 4  # retrained in place: scored again


def test_pipeline_rescoring_a_model_changed_in_place(model, tmp_path, monkeypatch, fake_run_suite):
    from harness.pipeline import Pipeline
    from harness.recipe import load_recipes
    from harness.store import RunStore

    monkeypatch.setenv("CGD_CACHE_DIR", str(tmp_path / "memo"))
    student = tmp_path / "student"
    shutil.copytree(model, student)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""\
name: evalcache
data: {{path: {PROJECT_ROOT / "data" / "tiny" / "train.jsonl"}, prompt_field: question, answer_field: answer,
        limit: 4}}
student: {{model: {student}, backend: hf}}
teacher: {{provider: oracle, model: oracle}}
variants: [base]
eval: {{suites: [tiny], limit: 2}}
""")

    def run() -> list[dict]:
        store = RunStore(tmp_path / "runs")
        try:
            summary = Pipeline(load_recipes(recipe), store, Console(quiet=True)).run()[0]
        finally:
            store.close()
        return [line for line in Path(summary["results"]).read_text().splitlines() if line]

    first = run()
    assert len(fake_run_suite) == 1 and first
    assert run() == first and len(fake_run_suite) == 1  # nothing changed: the finished stage is reused
    _rewrite_weights_in_place(student)
    again = run()
    assert len(fake_run_suite) == 2 and again != first  # same path, size and mtime, new bytes: scored again
