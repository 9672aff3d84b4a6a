"""Named, stable artifact folders with their cards (harness/cards): `cgd run --until export` on a random tiny student
and the oracle teacher writes RUNS_DIR/<recipe>/datasets/<variant>/ that `datasets.load_dataset` reads, with a card
that holds the counts, verdict mix, decontamination and licence; a trained model (here: a model folder in a train
stage folder) gets models/<variant>/ with its card, linked files, and scores."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from harness.cards.artifacts import write_artifacts
from harness.evaluation.model_hash import model_content_hash
from harness.paths import PROJECT_ROOT
from harness.store import read_jsonl, read_run_json
from tests.helpers.tiny_model import build_random_tiny_model
from tests.test_pipeline import cgd, write_recipe

SECRET = "sk-test-cards-0123456789abcdef"
ABSOLUTE = re.compile(r"(?<![\w.:/])/(?:tmp|home|root|work|Users|var|private|mnt|opt)/")


def built_run(tmp_path_factory) -> dict:
    """One `cgd run --until export` per test session (tests/test_publish.py copies its runs folder)."""
    folder = tmp_path_factory.getbasetemp() / "cards-run"
    marker = folder / "summary.json"
    if not marker.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        student = build_random_tiny_model(folder / "student")
        recipe = write_recipe(folder, student, name="cards", limit=12)
        proc = cgd("run", str(recipe), "--until", "export", "--json", "--runs-dir", str(folder / "runs"),
                   env={"HF_TOKEN": SECRET, "OPENAI_API_KEY": SECRET})
        marker.write_text(proc.stdout)
    summary = json.loads(marker.read_text())
    return {"summary": summary, "recipe": folder / "cards.yaml", "folder": folder, "runs": folder / "runs",
            "student": folder / "student"}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    return built_run(tmp_path_factory)


def front(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_until_export_writes_named_datasets_that_load_dataset_reads(run, tmp_path):
    import datasets

    summary, run_dir = run["summary"], Path(run["summary"]["run_dir"])
    assert set(summary["artifacts"]["datasets"]) == {"sft", "distilled_sft", "cft", "cgd"}
    assert summary["artifacts"]["models"] == {}
    for variant, stage_file in summary["datasets"].items():
        folder = run_dir / "datasets" / variant
        assert summary["artifacts"]["datasets"][variant] == str(folder)
        assert os.path.samefile(folder / "data" / "train.jsonl", stage_file)  # a hard link, not a second copy
        loaded = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf"))
        assert set(loaded) == {"train"}
        assert loaded["train"].num_rows == summary["dataset_sizes"][variant]["examples"] == len(read_jsonl(
            Path(stage_file)))
        meta = front((folder / "README.md").read_text())
        assert meta["configs"] == [{"config_name": "default",
                                    "data_files": [{"split": "train", "path": "data/train.jsonl"}]}]
        assert {"cgd-harness", "critique-guided-distillation"} <= set(meta["tags"])
        assert meta["license"] == "unknown"
    rows = loaded["train"]  # the last one: cgd
    assert rows[0]["messages"][-1]["training"] is True


def test_dataset_card_holds_counts_verdicts_decontamination_and_licence(run):
    run_dir = Path(run["summary"]["run_dir"])
    info = read_run_json(run_dir / "run.json")
    card = (run_dir / "datasets" / "cgd" / "README.md").read_text()
    verdicts: dict[str, int] = {}
    for rec in read_jsonl(Path(info["stages"]["refine"]["path"]) / "records.jsonl"):
        key = rec["verdict"] or "none"
        verdicts[key] = verdicts.get(key, 0) + 1
    mix = ", ".join(f"{v}: {n} ({100 * n / 12:.0f}%)" for v, n in sorted(verdicts.items()))
    assert f"| teacher verdicts on the drafts | {mix} |" in card
    assert "| examples | 12 |" in card and "| source records | 12 |" in card and "| left out | none |" in card
    decon = info["decontamination"]
    assert f"{decon['contaminated']} of {decon['prompts']} prompts matched" in card
    assert "| tiny_arith | 0 | 0 |" in card
    assert "| source licence | unknown (see the source) |" in card
    assert "| teacher | oracle / oracle |" in card
    assert "| critique style | paper, specificity specific |" in card
    assert "| source dataset | data/tiny/train.jsonl (jsonl; split train, limit 12) |" in card
    commit = (info["provenance"]["harness"] or {}).get("commit")
    if commit:
        assert commit[:12] in card
    sft = (run_dir / "datasets" / "sft" / "README.md").read_text()
    assert "| teacher verdicts on the drafts | not applicable" in sft


def _all_cards(run_dir: Path) -> list[Path]:
    return [*run_dir.glob("datasets/*/README.md"), *run_dir.glob("models/*/README.md"), run_dir / "artifacts.json"]


def test_cards_hold_no_absolute_path_and_no_secret(run):
    run_dir = Path(run["summary"]["run_dir"])
    for path in _all_cards(run_dir):
        text = path.read_text()
        assert SECRET not in text, path
        assert str(run["folder"]) not in text and str(PROJECT_ROOT) not in text, path
        assert not ABSOLUTE.search(text), (path, ABSOLUTE.search(text))
    assert "| student | student (a local path) (hf) |" in (run_dir / "datasets" / "cgd" / "README.md").read_text()


def fake_trained_model(run: dict, name: str = "train-0123456789abcdef") -> Path:
    """A model folder where a train stage leaves one (with training state beside the weights)."""
    model = run["runs"] / "stages" / name / "model"
    if not model.exists():
        shutil.copytree(run["student"], model)
        (model / "training_args.bin").write_bytes(b"paths of the machine")
    return model


def test_model_card_links_the_model_files_and_shows_scores(run, tmp_path):
    run_dir = Path(run["summary"]["run_dir"])
    model = fake_trained_model(run)
    before = {p.name: p.stat().st_mtime_ns for p in model.parent.rglob("*")}
    hash_before = model_content_hash(str(model), memo_path=tmp_path / "memo.json")
    summary = {**run["summary"], "models": {**run["summary"]["models"], "cgd@seed0": str(model)}}
    rows = [{"variant": "cgd", "seed": 0, "benchmark": "tiny_arith", "metric": "exact_match", "value": 0.625,
             "stderr": 0.03, "n": 200, "primary": True},
            {"variant": "cgd", "seed": 0, "benchmark": "tiny_arith", "metric": "other", "value": 0.1, "n": 200},
            {"variant": "base", "seed": 0, "benchmark": "tiny_arith", "metric": "exact_match", "value": 0.2}]
    out = write_artifacts(summary, None, run["runs"], rows)
    folder = run_dir / "models" / "cgd"
    assert out["models"] == {"cgd": str(folder)}
    card = (folder / "README.md").read_text()
    assert "| tiny_arith | exact_match | 62.5 | 3.0 | 200 |" in card and "other" not in card
    assert "[datasets/cgd](../../datasets/cgd/README.md)" in card
    assert (folder / "../../datasets/cgd/README.md").resolve().is_file()
    meta = front(card)
    assert "base_model" not in meta  # a local student is no Hub id
    assert {"cgd-harness", "critique-guided-distillation"} <= set(meta["tags"])
    linked = sorted(p.name for p in folder.iterdir() if p.is_symlink())
    assert "model.safetensors" in linked and "config.json" in linked and "training_args.bin" not in linked
    for name in linked:
        assert not os.readlink(folder / name).startswith("/")  # relative: the runs folder may move
        assert (folder / name).resolve() == (model / name).resolve()
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(str(folder)).model_type
    # nothing was written into the trained model's own folder: its content hash (evaluation cache) is unchanged
    assert {p.name: p.stat().st_mtime_ns for p in model.parent.rglob("*")} == before
    assert model_content_hash(str(model), memo_path=tmp_path / "memo2.json") == hash_before
    # without report rows: not evaluated
    write_artifacts(summary, None, run["runs"], [])
    assert "Not evaluated" in (folder / "README.md").read_text()
    for path in _all_cards(run_dir):
        assert not ABSOLUTE.search(path.read_text()), path


def test_several_seeds_name_models_by_seed(run, tmp_path):
    model = fake_trained_model(run)
    info = read_run_json(Path(run["summary"]["run_dir"]) / "run.json")
    config = {**info["recipe_config"], "seeds": [0, 1]}
    summary = {**run["summary"], "models": {"cgd@seed0": str(model), "cgd@seed1": str(model)}}
    out = write_artifacts(summary, config, run["runs"], None)
    assert set(out["models"]) == {"cgd@seed0", "cgd@seed1"}
    assert "seed 1" in (Path(out["models"]["cgd@seed1"]) / "README.md").read_text()


def test_rerun_is_idempotent_and_replaces_stale_files(run):
    run_dir = Path(run["summary"]["run_dir"])
    folder = run_dir / "datasets" / "cgd"
    again = json.loads(cgd("run", str(run["recipe"]), "--until", "export", "--json", "--runs-dir",
                           str(run["runs"])).stdout)
    assert again["artifacts"] == run["summary"]["artifacts"]
    card = (folder / "README.md").read_bytes()
    assert b"| recipe file | cards.yaml (a local path) (sha256 " in card
    write_artifacts(again, None, run["runs"])  # without the recipe object (as cgd publish): the same card
    assert (folder / "README.md").read_bytes() == card
    stage_file = Path(again["datasets"]["cgd"])
    # stale: a file the harness did not write, and a train.jsonl that is no longer the stage's dataset
    (folder / "notes.txt").write_text("stale")
    data = folder / "data" / "train.jsonl"
    data.unlink()
    data.write_text('{"id": "old", "messages": []}\n')
    write_artifacts(again, None, run["runs"])
    assert not (folder / "notes.txt").exists()
    assert os.path.samefile(data, stage_file)
    assert (folder / "README.md").read_bytes() == card
    assert sorted(p.name for p in folder.rglob("*")) == ["README.md", "data", "train.jsonl"]
