"""`cgd publish` through the real huggingface_hub client against a fake Hub over HTTP (tests/fakes/hf_hub.py): the
repositories, their visibility, the cards and files that arrive, where the token goes, and the failures users meet
(no token, a refused token) as one clear line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cards.artifacts import write_artifacts
from harness.paths import PROJECT_ROOT
from tests.fakes.hf_hub import FakeHub, Repo
from tests.test_cards import built_run, fake_trained_model

TOKEN = "hf_fake_publish_token_0123456789"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A copy of the shared `--until export` run, plus a trained cgd model with a score."""
    run = built_run(tmp_path_factory)
    runs = tmp_path_factory.mktemp("publish") / "runs"
    shutil.copytree(run["runs"], runs, symlinks=True)
    model = fake_trained_model({**run, "runs": runs}, "train-fedcba9876543210")
    summary = json.loads(json.dumps(run["summary"]).replace(str(run["runs"]), str(runs)))
    summary["models"] = {**summary["models"], "cgd@seed0": str(model)}
    rows = [{"variant": "cgd", "seed": 0, "benchmark": "tiny_arith", "metric": "exact_match", "value": 0.5,
             "stderr": 0.01, "n": 200, "primary": True}]
    write_artifacts(summary, None, runs, rows)
    return Path(summary["run_dir"])


def publish(run_dir: Path, *args: str, hub: FakeHub | None = None, token: str | None = TOKEN,
            home: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env |= {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url if hub else "http://127.0.0.1:9", "HF_HOME":
            str(home or run_dir.parent / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    if token is not None:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "harness.cli", "publish", str(run_dir), *args], capture_output=True,
                          text=True, env=env, cwd=PROJECT_ROOT, timeout=120)


def test_publish_pushes_cards_data_and_model_files_private(run_dir):
    with FakeHub() as hub:
        proc = publish(run_dir, "--to", "my-org/tiny-cgd", "--private", hub=hub)
        assert proc.returncode == 0, proc.stderr
        assert set(hub.repos) == {("dataset", f"my-org/tiny-cgd-{v}-data") for v in ("sft", "distilled_sft", "cft",
                                                                                      "cgd")} | {
            ("model", "my-org/tiny-cgd-cgd")}
        assert {r.visibility for r in hub.repos.values()} == {"private"}
        data = hub.repo("dataset", "my-org/tiny-cgd-cgd-data")
        assert set(data.files) == {"README.md", "data/train.jsonl"}
        assert data.files["data/train.jsonl"] == (run_dir / "datasets/cgd/data/train.jsonl").read_bytes()
        card = data.files["README.md"].decode()
        meta = yaml.safe_load(card.split("---\n")[1])
        assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "data/train.jsonl"}]
        assert 'load_dataset("my-org/tiny-cgd-cgd-data", split="train")' in card
        assert "| examples | 12 |" in card
        model = hub.repo("model", "my-org/tiny-cgd-cgd")
        assert {"README.md", "config.json", "model.safetensors"} <= set(model.files)
        assert "training_args.bin" not in model.files
        assert model.files["model.safetensors"] == (run_dir / "models/cgd/model.safetensors").read_bytes()
        model_card = model.files["README.md"].decode()
        assert yaml.safe_load(model_card.split("---\n")[1])["datasets"] == ["my-org/tiny-cgd-cgd-data"]
        assert f"({hub.url}/datasets/my-org/tiny-cgd-cgd-data)" in model_card
        assert "| tiny_arith | exact_match | 50.0 |" in model_card
        # the token went only as the Authorization header
        assert hub.requests
        for req in hub.requests:
            assert req.headers.get("authorization") == f"Bearer {TOKEN}"
            assert TOKEN not in req.path and TOKEN.encode() not in req.body
            assert not [k for k, v in req.headers.items() if TOKEN in v and k != "authorization"]
    assert TOKEN not in proc.stdout + proc.stderr
    for path in run_dir.parent.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 5_000_000:
            assert TOKEN.encode() not in path.read_bytes(), path
    # once more: the repositories exist (409 on create), a new commit goes on top
    with FakeHub() as hub:
        hub.repos[("dataset", "my-org/tiny-cgd-cgd-data")] = Repo("dataset", "my-org/tiny-cgd-cgd-data", "public")
        proc = publish(run_dir, "--to", "my-org/tiny-cgd", "--only", "datasets", hub=hub)
        assert proc.returncode == 0, proc.stderr
        assert ("model", "my-org/tiny-cgd-cgd") not in hub.repos
        assert hub.repo("dataset", "my-org/tiny-cgd-cgd-data").files["data/train.jsonl"]


def test_default_name_is_your_user_and_the_run(run_dir):
    with FakeHub(user="alice") as hub:
        proc = publish(run_dir, "--only", "models", hub=hub)
        assert proc.returncode == 0, proc.stderr
        assert set(hub.repos) == {("model", "alice/cards-cgd")}
        assert hub.repos[("model", "alice/cards-cgd")].visibility is None  # the Hub's default


def test_dry_run_sends_nothing(run_dir):
    with FakeHub() as hub:
        proc = publish(run_dir, "--to", "org/x", "--dry-run", hub=hub, token=None)
        assert proc.returncode == 0, proc.stderr
        assert hub.requests == []
    assert "would publish dataset org/x-cgd-data  <- datasets/cgd (2 files" in proc.stdout
    assert "would publish model   org/x-cgd  <- models/cgd" in proc.stdout


def test_no_token_in_the_environment_is_exit_2(run_dir, tmp_path):
    home = tmp_path / "hf-home"
    home.mkdir()
    (home / "token").write_text("hf_saved_login_token")  # a saved login is not used
    with FakeHub() as hub:
        proc = publish(run_dir, "--to", "org/x", hub=hub, token=None, home=home)
        assert hub.requests == []
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: no Hub token: set HF_TOKEN (or HUGGING_FACE_HUB_TOKEN) to a "
                                                "write token; `cgd publish` reads it from the environment only"]


@pytest.mark.parametrize(("status", "code", "words"), [(401, 2, "refused the token (401"),
                                                      (403, 2, "may not write there (403"),
                                                      (500, 1, "the Hub answered 500")])
def test_hub_errors_are_one_line(run_dir, status, code, words):
    with FakeHub() as hub:
        hub.fail_with = (status, "Invalid credentials in Authorization header")
        proc = publish(run_dir, "--to", "org/x", "--only", "datasets", hub=hub)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert TOKEN not in proc.stderr


def test_unreachable_hub_is_exit_1(run_dir):
    proc = publish(run_dir, "--to", "org/x", "--only", "datasets")  # nothing listens on port 9
    assert proc.returncode == 1, proc.stderr
    assert "cannot reach the Hub" in proc.stderr and "Traceback" not in proc.stderr


def test_not_a_run_folder_is_exit_2(tmp_path):
    proc = publish(tmp_path, "--to", "org/x")
    assert proc.returncode == 2 and "not a run folder" in proc.stderr
