"""`tracking:` (W&B offline, MLflow on a local file store; both real libraries, no network): every stage's counts,
cost and verdict mix, the evaluation rows and the final table reach the trackers; the block never reaches a
fingerprint, so turning it on after a run re-runs nothing; a tracker that fails only warns."""

from __future__ import annotations

import glob
import json
import struct
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from harness.paths import RECIPES_DIR
from harness.pipeline import build_graph
from harness.recipe import load_recipes
from harness.recipe.schema import Recipe, TrackingSpec
from harness.store import RunStore
from harness.tracking import TrackerUnavailable, TrackingSession, trackers_for
from tests.helpers.tiny_model import build_random_tiny_model
from tests.test_pipeline import cgd, write_recipe
from tests.test_report import PAPER_LLAMA
from tests.test_report import result_rows as paper_rows

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("wandb")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """W&B offline under tmp_path; MLflow's file store allowed; nothing reaches the network."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "wandb").mkdir()
    return {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb"), "WANDB_SILENT": "true",
            "MLFLOW_ALLOW_FILE_STORE": "true"}


# --- reading back what the trackers wrote ------------------------------------------------------------------


def wandb_records(run_file: str):
    """The protobuf records of an offline `run-*.wandb` file (W&B's LevelDB-style log: 7-byte header, then 32 KiB
    blocks of chunks with a 7-byte header each: crc32, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(run_file).read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):  # a chunk still being written
            return
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf + chunk if kind == 4 else chunk)
            buf = b""
            yield record
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk


def wandb_runs(wandb_dir: Path) -> dict[str, dict]:
    """Offline runs by display name: group, job type, the final summary, and the tables logged (files)."""
    runs = {}
    for run_file in sorted(glob.glob(str(wandb_dir / "wandb" / "offline-run-*" / "run-*.wandb"))):  # newest wins
        info: dict = {"summary": {}, "dir": Path(run_file).parent}
        for _ in range(300):  # W&B's service writes the file behind `run.finish()`: wait for its exit record
            records = list(wandb_records(run_file))
            if any(r.WhichOneof("record_type") == "exit" for r in records):
                break
            time.sleep(0.1)
        for record in records:
            kind = record.WhichOneof("record_type")
            if kind == "run":
                info |= {"name": record.run.display_name, "group": record.run.run_group,
                         "job_type": record.run.job_type, "project": record.run.project}
            elif kind == "summary":
                for item in record.summary.update:
                    name = item.key or "/".join(item.nested_key)
                    info["summary"][name] = json.loads(item.value_json)
        runs[info["name"]] = info
    return runs


def wandb_table(run: dict, name: str) -> list[dict]:
    [path] = glob.glob(str(run["dir"] / "files" / "media" / "table" / f"{name}_*.table.json"))
    table = json.loads(Path(path).read_text())
    return [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]


def mlflow_runs(uri: str, experiment: str) -> dict[str, object]:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return {r.info.run_name: r for r in reversed(client.search_runs([exp.experiment_id]))}  # newest wins


def mlflow_table(uri: str, run_id: str, artifact: str) -> list[dict]:
    from mlflow.artifacts import download_artifacts

    path = download_artifacts(run_id=run_id, artifact_path=artifact, tracking_uri=uri)
    data = json.loads(Path(path).read_text())
    return [dict(zip(data["columns"], row, strict=True)) for row in data["data"]]


# --- fingerprints ------------------------------------------------------------------------------------------


def test_tracking_never_changes_a_stage_fingerprint(tmp_path):
    tracking = TrackingSpec.model_validate({"wandb": {"project": "p", "entity": "e", "mode": "offline"},
                                            "mlflow": {"tracking_uri": "file:/x", "experiment": "x"}})
    for path in sorted(RECIPES_DIR.glob("*.yaml")):  # every shipped recipe and matrix member
        for recipe in load_recipes(path):
            tracked = recipe.model_copy(update={"tracking": tracking})
            plain = build_graph(recipe, RunStore(tmp_path), require_data=False)
            with_tracking = build_graph(tracked, RunStore(tmp_path), require_data=False)
            assert {n: s.fingerprint for n, s in plain.stages.items()} == \
                   {n: s.fingerprint for n, s in with_tracking.stages.items()}, recipe.name


def test_tracking_block_is_strict():
    with pytest.raises(ValueError, match="extra"):
        TrackingSpec.model_validate({"wandb": {"project": "p", "api_key": "nope"}})
    with pytest.raises(ValueError):
        TrackingSpec.model_validate({"wandb": {"project": "p", "mode": "sometimes"}})


def test_axolotl_keys_go_to_the_config_not_its_hash(tmp_path, monkeypatch):
    from harness.axolotl.config import config_hash, render_axolotl_config, validate_config
    from harness.tracking.axolotl import axolotl_keys, training_env

    monkeypatch.delenv("WANDB_MODE", raising=False)
    recipe = _recipe("abl__critique.specificity=generic", tmp_path, wandb={"project": "p", "entity": "team"},
                     mlflow={"tracking_uri": (tmp_path / "ml").as_uri()})
    cfg = render_axolotl_config(recipe.train, base_model="/m", dataset_path=tmp_path / "d.jsonl",
                                output_dir=tmp_path / "o", prepared_dir=tmp_path / "p", seed=0, on_gpu=False)
    before = config_hash(cfg)
    keys = axolotl_keys(recipe, "train:cgd:0", tmp_path)
    assert keys == {"wandb_project": "p", "wandb_entity": "team", "wandb_mode": "online",
                    "wandb_name": "abl__critique.specificity=generic/train:cgd:0", "use_mlflow": True,
                    "mlflow_tracking_uri": (tmp_path / "ml").as_uri(), "mlflow_experiment_name": "abl",
                    "mlflow_run_name": "abl__critique.specificity=generic/train:cgd:0"}
    assert config_hash({**cfg, **keys}) == before
    assert not [p for p in validate_config({**cfg, **keys}, normalize=False) if p.split(":")[0] in keys]
    env = training_env(recipe, tmp_path)
    assert env["WANDB_RUN_GROUP"] == "abl" and env["WANDB_JOB_TYPE"] == "train"
    assert json.loads(env["MLFLOW_TAGS"])["cgd.group"] == "abl" and env["MLFLOW_ALLOW_FILE_STORE"] == "true"
    monkeypatch.setenv("WANDB_MODE", "offline")  # the environment's mode when the recipe sets none
    assert axolotl_keys(recipe, "train:cgd:0", tmp_path)["wandb_mode"] == "offline"
    off = recipe.model_copy(update={"tracking": TrackingSpec(training_curves=False)})
    assert axolotl_keys(off, "train:cgd:0", tmp_path) == {} and training_env(off, tmp_path) == {}


# --- a real run, turned on afterwards ----------------------------------------------------------------------


def test_turning_tracking_on_after_a_run_reruns_nothing_and_logs_every_stage(tmp_path, offline):
    student = build_random_tiny_model(tmp_path / "student")
    runs = str(tmp_path / "runs")
    first = json.loads(cgd("run", str(write_recipe(tmp_path, student, limit=8, variants="[base, cgd]")),
                           "--until", "critique", "--json", "--runs-dir", runs).stdout)
    uri = (tmp_path / "mlruns").as_uri()
    tracked_dir = tmp_path / "tracked"
    tracked_dir.mkdir()
    tracked = write_recipe(tracked_dir, student, limit=8, variants="[base, cgd]", extra=(
        f"tracking: {{wandb: {{project: cgd-test, mode: offline}}, mlflow: {{tracking_uri: '{uri}', "
        "experiment: cgd-test}}\n"))
    again = json.loads(cgd("run", str(tracked), "--until", "critique", "--json", "--runs-dir", runs,
                           env=offline).stdout)
    ran = {k: v["status"] for k, v in again["stages"].items() if v["status"] != "skipped"}
    assert ran and set(ran.values()) == {"cached"}
    assert {k: v["path"] for k, v in again["stages"].items()} == {k: v["path"] for k, v in first["stages"].items()}

    [run] = wandb_runs(tmp_path / "wandb").values()
    assert (run["name"], run["group"], run["project"]) == ("t", "t", "cgd-test")
    summary = run["summary"]
    for stage in ran:
        assert summary[f"stages/{stage}/status"] == "cached"
        assert summary[f"stages/{stage}/records"] == again["stages"][stage]["records"]
    assert summary["stages/critique/records"] == 8 and summary["stages/critique/requests"] == 8
    assert summary["stages/critique/verdict/right"] + summary["stages/critique/verdict/wrong"] == 8
    assert summary["stages/critique/tokens"] > 0 and summary["stages/critique/failed"] == 0
    assert summary["cost_usd"] == again["cost_usd"] and summary["stages_cached"] == len(ran)
    stages = {r["stage"]: r for r in wandb_table(run, "stages_table")}
    assert set(stages) == set(ran) and stages["critique"]["records"] == 8
    config = json.dumps(wandb_config_text(run))
    assert "oracle" in config  # the recipe is the run's config

    mruns = mlflow_runs(uri, "cgd-test")
    assert set(mruns) == {"t"}
    mrun = mruns["t"]
    assert mrun.info.status == "FINISHED" and mrun.data.tags["cgd.group"] == "t"
    assert mrun.data.metrics["stages/critique/records"] == 8
    assert mrun.data.metrics["stages/critique/verdict/right"] + mrun.data.metrics["stages/critique/verdict/wrong"] == 8
    assert mrun.data.metrics["cost_usd"] == again["cost_usd"]
    assert mrun.data.tags["stage/critique/status"] == "cached"
    assert mrun.data.params["teacher.provider"] == "oracle"
    assert {r["stage"] for r in mlflow_table(uri, mrun.info.run_id, "stages_table.json")} == set(ran)


def wandb_config_text(run: dict) -> str:
    return "".join(str(r.run.config) for r in wandb_records(next(iter(glob.glob(str(run["dir"] / "run-*.wandb")))))
                   if r.WhichOneof("record_type") == "run")


# --- finish: every evaluation row and the final table (a matrix of two members) ----------------------------


def _recipe(name: str, tmp_path: Path, **tracking) -> Recipe:
    return Recipe.model_validate({"name": name, "data": {"path": str(tmp_path / "d.jsonl")},
                                  "student": {"model": "tiny", "vllm": None},
                                  "teacher": {"provider": "oracle", "model": "oracle"},
                                  "tracking": tracking})


def _member(tmp_path: Path, name: str, scale: float) -> tuple[dict, int]:
    run_dir = tmp_path / "runs" / name
    run_dir.mkdir(parents=True)
    rows = paper_rows({v: [x * scale for x in values] for v, values in PAPER_LLAMA.items()})
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"recipe": name, "run_dir": str(run_dir), "results": str(run_dir / "results.jsonl"), "cost_usd": 1.25,
            "stages": {}}, len(rows)


def test_finish_logs_every_evaluation_row_and_the_table_of_a_matrix(tmp_path, offline):
    from harness.report.runs import varied_settings, write_matrix_manifest

    uri = (tmp_path / "mlruns").as_uri()
    names = ["m__train.learning_rate=1e-6", "m__train.learning_rate=1e-5"]
    recipes = [_recipe(n, tmp_path, wandb={"project": "cgd-test"}, mlflow={"tracking_uri": uri}) for n in names]
    (a, n_rows), (b, _) = _member(tmp_path, names[0], 1.0), _member(tmp_path, names[1], 0.9)
    matrix_dir = tmp_path / "runs" / "m"
    write_matrix_manifest(matrix_dir, "m", [(n, Path(s["run_dir"])) for n, s in zip(names, (a, b), strict=True)],
                          varied_settings([None, None], names))
    planned = SimpleNamespace(fingerprint="f1", kind="critique", dir=SimpleNamespace(read_records=lambda: [
        {"status": "ok", "verdict": "right"}, {"status": "ok", "verdict": "wrong"}, {"status": "failed"}]))
    graphs = [SimpleNamespace(recipe=r, stages={"critique": planned}) for r in recipes]
    session = TrackingSession(graphs, tmp_path / "runs", Console(file=sys.stderr))
    session.stage(planned, SimpleNamespace(status="done", records=3, cost_usd=1.25, info={
        "requests": 3, "ok": 2, "failed": 1, "tokens": 900, "cost_usd": 1.25, "failure_reasons": {"timeout": 1},
        "failures": [{"id": "x", "reason": "timeout"}]}))
    session.finish([a, b], {"dir": str(matrix_dir)})

    runs = wandb_runs(tmp_path / "wandb")
    assert set(runs) == set(names) and {r["group"] for r in runs.values()} == {"m"}
    run = runs[names[0]]
    s = run["summary"]
    assert s["stages/critique/records"] == 3 and s["stages/critique/failed"] == 1
    assert s["stages/critique/failure_reasons/timeout"] == 1 and s["stages/critique/verdict/right"] == 1
    assert s["cost_usd"] == 1.25 and s["results_rows"] == n_rows
    assert s["table/cgd/math500"] == pytest.approx(54.2)
    assert len(wandb_table(run, "results_table")) == n_rows
    table = wandb_table(run, "comparison_table")
    assert {r["row"] for r in table} == set(PAPER_LLAMA) and "math500" in {r["column"] for r in table}
    assert len({r["row"] for r in wandb_table(run, "matrix_table")}) == 2 * len(PAPER_LLAMA)  # one per member

    mruns = mlflow_runs(uri, "m")
    assert set(mruns) == {*names, "m"}
    parent = mruns["m"].info.run_id
    member = mruns[names[1]]
    assert member.data.tags["mlflow.parentRunId"] == parent and member.info.status == "FINISHED"
    assert member.data.metrics["cost_usd"] == 1.25 and member.data.metrics["stages/critique/tokens"] == 900
    assert member.data.metrics["table/cgd/math500"] == pytest.approx(54.2 * 0.9)
    assert len(mlflow_table(uri, member.info.run_id, "results_table.json")) == n_rows
    assert {r["row"] for r in mlflow_table(uri, member.info.run_id, "comparison_table.json")} == set(PAPER_LLAMA)
    assert mlflow_table(uri, parent, "matrix_table.json")
    assert mruns[names[0]].data.params["teacher.api_key_env"] == "None"  # names of variables, never keys


def test_secrets_never_reach_a_tracker():
    from harness.tracking import scrub

    config = {"student": {"api_key_env": "OPENAI_API_KEY", "vllm": {"env": {"HF_TOKEN": "hf_secret"}}},
              "x": {"auth_token": "tok", "tokens": 3}}
    assert scrub(config) == {"student": {"api_key_env": "OPENAI_API_KEY", "vllm": {"env": {"HF_TOKEN": "<redacted>"}}},
                             "x": {"auth_token": "<redacted>", "tokens": 3}}


# --- a tracker that fails never fails the run --------------------------------------------------------------


def test_a_missing_library_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(TrackerUnavailable, match=r"cgd-harness\[tracking\]"):
        trackers_for(_recipe("x", tmp_path, wandb={"project": "p"}), tmp_path)


def test_a_failing_tracker_warns_once_and_the_others_go_on(tmp_path, offline, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    uri = (tmp_path / "mlruns").as_uri()
    recipe = _recipe("x", tmp_path, wandb={"project": "p"}, mlflow={"tracking_uri": uri})
    planned = SimpleNamespace(fingerprint="f", kind="data", dir=None)
    out = tmp_path / "console.txt"
    with out.open("w") as handle:
        session = TrackingSession([SimpleNamespace(recipe=recipe, stages={"data": planned})], tmp_path, Console(
            file=handle, width=1000))
        for _ in range(2):
            session.stage(planned, SimpleNamespace(status="cached", records=5, cost_usd=0.0, info={}))
        session.finish([{"recipe": "x", "run_dir": str(tmp_path), "results": None, "cost_usd": 0.0}])
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and "wandb" in lines[0]
    assert "cgd-harness[tracking]" in lines[0]
    assert mlflow_runs(uri, "x")["x"].data.metrics["stages/data/records"] == 5


def test_a_tracking_server_that_is_down_only_warns(tmp_path, offline, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    recipe = _recipe("down", tmp_path, wandb={"project": "p"}, mlflow={"tracking_uri": "http://127.0.0.1:9"})
    planned = SimpleNamespace(fingerprint="f", kind="data", dir=None)
    out = tmp_path / "console.txt"
    with out.open("w") as handle:
        session = TrackingSession([SimpleNamespace(recipe=recipe, stages={"data": planned})], tmp_path, Console(
            file=handle, width=1000))
        session.stage(planned, SimpleNamespace(status="done", records=5, cost_usd=0.0, info={}))
        session.finish([{"recipe": "down", "run_dir": str(tmp_path), "results": None, "cost_usd": 0.0}])
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tracking: mlflow is off for this run")
    assert wandb_runs(tmp_path / "wandb")["down"]["summary"]["stages/data/records"] == 5
