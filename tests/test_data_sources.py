"""Data sources (issue 13): local json / parquet / csv files and `datasets` itself (`source: hf`, offline from a
seeded cache or local parquet files), a seeded shuffle, a limit and a filter; the revision and the content of what
was read enter the data stage's fingerprint and manifest."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from harness.data.sources import read_source
from harness.errors import HarnessError
from harness.paths import PROJECT_ROOT
from harness.pipeline import build_graph
from harness.recipe import load_recipes
from harness.stages import data
from harness.stages.base import StageContext
from harness.store import RunStore, read_jsonl

TINY_TRAIN = read_jsonl(PROJECT_ROOT / "data" / "tiny" / "train.jsonl")
PARAMS = {"prompt_field": "question", "answer_field": "answer", "id_field": None, "limit": None}


def webinstruct_rows(n: int = 12, answer: str | None = None) -> list[dict]:
    """Tiny-world problems in TIGER-Lab/WebInstructSub's schema (orig_question, orig_answer, question, answer,
    source, index), with the "Question: ... Answer:" wrapping the official processor removes."""
    return [{"orig_question": r["question"], "orig_answer": r["answer"],
             "question": f"Question: {r['question']} Answer: ", "answer": answer or r["answer"],
             "source": "socratic" if i % 3 else "mathstackexchange", "index": f"wi-{i}"}
            for i, r in enumerate(TINY_TRAIN[:n])]


def openmathreasoning_rows(n: int = 6) -> list[dict]:
    return [{"expected_answer": r["final"], "problem_type": "has_answer_extracted",
             "problem_source": "aops_c4_high_school_math" if i % 2 else "aops_c6_high_school_olympiads",
             "generation_model": "DeepSeek-R1", "pass_rate_72b_tir": "n/a", "problem": r["question"],
             "generated_solution": r["answer"], "inference_mode": "cot", "used_in_kaggle": False}
            for i, r in enumerate(TINY_TRAIN[:n])]


def metamathqa_rows(n: int = 5) -> list[dict]:
    return [{"query": r["question"], "response": f"{r['answer']}\nThe answer is: {r['final']}",
             "type": "MATH_Rephrased", "original_question": r["question"]} for r in TINY_TRAIN[:n]]


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """A `datasets` cache of this test's own, offline."""
    import datasets.config

    cache = tmp_path / "hf-datasets"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def seed_webinstruct(cache: Path, rows: list[dict]) -> None:
    from harness.datasets_seed import seed_dataset

    seed_dataset("TIGER-Lab/WebInstructSub", None, {"train": rows}, cache)


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def run_stage(tmp_path, **params):
    out = io.StringIO()
    store = RunStore(tmp_path / "runs")
    ctx = StageContext("data", {**PARAMS, **params}, {}, store.stage("data", "0" * 64), store,
                       Console(file=out, width=300), None)
    return data.run(ctx, {}), out.getvalue()


# --- local files ------------------------------------------------------------------------------------------------

def test_local_json_parquet_and_csv_read_the_same_rows(tmp_path):
    rows = metamathqa_rows()
    (tmp_path / "m.json").write_text(json.dumps(rows))
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": rows}))
    (tmp_path / "lines.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_parquet(tmp_path / "m.parquet", rows)
    with (tmp_path / "m.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    got = {}
    for name, source in [("m.json", "json"), ("wrapped.json", "json"), ("lines.json", "json"),
                         ("m.parquet", "parquet"), ("m.csv", "csv")]:
        result, _ = run_stage(tmp_path, source=source, path=str(tmp_path / name), processor="metamathqa")
        got[name] = [(r["id"], r["prompt"], r["reference"]) for r in result.records]
        assert result.info["rows"] == 5 and result.info["source"] == source
        assert len(result.info["content_sha256"]) == 64
    assert len({json.dumps(v) for v in got.values()}) == 1  # same rows, same ids, whatever the file kind
    assert got["m.json"][0][1] == TINY_TRAIN[0]["question"]


def test_a_parquet_file_that_is_not_parquet_is_refused(tmp_path):
    bad = tmp_path / "x.parquet"
    bad.write_text("not parquet")
    with pytest.raises(HarnessError, match=r"x.parquet: cannot read as parquet"):
        run_stage(tmp_path, source="parquet", path=str(bad))


def test_unknown_source_names_the_available_ones():
    with pytest.raises(HarnessError, match=r"unknown source 'x'; available: csv, hf, json, jsonl, parquet"):
        read_source({"source": "x", "path": "p"})


# --- shuffle, limit, filter ---------------------------------------------------------------------------------------

def test_shuffle_is_seeded_and_limit_takes_the_first_rows_after_it(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in TINY_TRAIN[:40]))
    plain, _ = run_stage(tmp_path, path=str(path), limit=10)
    assert [r["prompt"] for r in plain.records] == [r["question"] for r in TINY_TRAIN[:10]]
    a, _ = run_stage(tmp_path, path=str(path), limit=10, shuffle=1)
    b, _ = run_stage(tmp_path, path=str(path), limit=10, shuffle=1)
    c, _ = run_stage(tmp_path, path=str(path), limit=10, shuffle=2)
    assert [r["id"] for r in a.records] == [r["id"] for r in b.records]
    assert [r["id"] for r in a.records] != [r["id"] for r in plain.records]
    assert [r["id"] for r in a.records] != [r["id"] for r in c.records]
    assert {r["prompt"] for r in a.records} <= {r["question"] for r in TINY_TRAIN[:40]}


def test_filter_keeps_rows_whose_field_equals_or_is_in(tmp_path):
    path = write_parquet(tmp_path / "omr.parquet", openmathreasoning_rows())
    eq, _ = run_stage(tmp_path, source="parquet", path=str(path), processor="openmathreasoning",
                      filter={"problem_source": "aops_c4_high_school_math"})
    assert len(eq.records) == 3 and eq.info["filtered"] == 3
    both, _ = run_stage(tmp_path, source="parquet", path=str(path), processor="openmathreasoning",
                        filter={"problem_source": ["aops_c4_high_school_math", "aops_c6_high_school_olympiads"],
                                "used_in_kaggle": False})
    assert len(both.records) == 6 and both.records[0]["reference"] == TINY_TRAIN[0]["final"]
    with pytest.raises(HarnessError, match=r"data.filter .* kept none of 6 rows; fields of the first row: "
                                           r"expected_answer"):
        run_stage(tmp_path, source="parquet", path=str(path), filter={"problem_source": "nowhere"})


# --- source: hf ----------------------------------------------------------------------------------------------------

def test_hf_reads_a_seeded_hub_dataset_through_the_webinstruct_processor(tmp_path, hf_cache):
    seed_webinstruct(hf_cache, webinstruct_rows())
    result, _ = run_stage(tmp_path, source="hf", path="TIGER-Lab/WebInstructSub", split="train",
                          revision="main", processor="webinstruct_sub", limit=5)
    assert [r["prompt"] for r in result.records] == [r["question"] for r in TINY_TRAIN[:5]]
    assert [r["id"] for r in result.records] == [f"wi-{i}" for i in range(5)]
    assert result.info["revision"] == "main" and result.info["dataset_fingerprint"]
    assert result.info["source"] == "hf" and len(result.info["content_sha256"]) == 64
    streamed, _ = run_stage(tmp_path, source="hf", path="TIGER-Lab/WebInstructSub", split="train",
                            streaming=True, processor="webinstruct_sub", limit=5)
    assert streamed.records == result.records and "dataset_fingerprint" not in streamed.info


def test_hf_reads_local_parquet_files_through_a_builder(tmp_path, hf_cache):
    files = [write_parquet(tmp_path / f"additional_problems-0000{i}.parquet", openmathreasoning_rows()[i::2])
             for i in range(2)]
    result, _ = run_stage(tmp_path, source="hf", path="parquet", data_files=[str(f) for f in files],
                          split="train", processor="openmathreasoning")
    assert len(result.records) == 6
    assert {r["reference"] for r in result.records} == {r["final"] for r in TINY_TRAIN[:6]}


def test_an_absent_hf_dataset_is_one_line(tmp_path, hf_cache):
    with pytest.raises(HarnessError, match=r"^data.path 'nobody/nothing': datasets.load_dataset failed: "):
        run_stage(tmp_path, source="hf", path="nobody/nothing", split="train")


def _recipe(folder: Path, data_block: str, name: str = "t") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\ndata: {data_block}\nstudent: {{model: tiny}}\n"
                    "teacher: {provider: oracle, model: oracle}\nvariants: [base, cgd]\n")
    return path


def _data_fp(recipe: Path, runs: Path) -> tuple[str, dict]:
    stage = build_graph(load_recipes(recipe)[0], RunStore(runs)).stages["data"]
    return stage.fingerprint, stage.params


def test_the_data_fingerprint_follows_the_revision_and_the_content(tmp_path, hf_cache):
    seed_webinstruct(hf_cache, webinstruct_rows())
    block = "{{source: hf, path: TIGER-Lab/WebInstructSub, processor: webinstruct_sub, revision: {rev}}}"
    fp_a, params = _data_fp(_recipe(tmp_path, block.format(rev="aaa111")), tmp_path / "runs")
    assert params["revision"] == "aaa111" and params["dataset_fingerprint"]
    fp_a2, _ = _data_fp(_recipe(tmp_path, block.format(rev="aaa111")), tmp_path / "runs")
    fp_b, _ = _data_fp(_recipe(tmp_path, block.format(rev="bbb222")), tmp_path / "runs")
    assert fp_a == fp_a2 and fp_a != fp_b  # same revision: cached; another: a new stage
    seed_webinstruct(hf_cache, webinstruct_rows(answer="The answer is \\boxed{0}."))  # same revision, new content
    fp_c, _ = _data_fp(_recipe(tmp_path, block.format(rev="aaa111")), tmp_path / "runs")
    assert fp_c != fp_a
    # local data files: by their bytes
    path = write_parquet(tmp_path / "omr.parquet", openmathreasoning_rows())
    pq_block = f"{{source: hf, path: parquet, data_files: {path}, processor: openmathreasoning}}"
    fp_d, params = _data_fp(_recipe(tmp_path, pq_block), tmp_path / "runs")
    assert params["data_files_sha256"]
    write_parquet(path, openmathreasoning_rows()[:5])
    fp_e, _ = _data_fp(_recipe(tmp_path, pq_block), tmp_path / "runs")
    assert fp_d != fp_e


def test_new_keys_enter_a_jsonl_fingerprint_only_when_set(tmp_path):
    train = PROJECT_ROOT / "data" / "tiny" / "train.jsonl"
    _, plain = _data_fp(_recipe(tmp_path, f"{{path: {train}, limit: 10}}"), tmp_path / "runs")
    assert sorted(plain) == ["answer_field", "id_field", "limit", "prompt_field", "sha256"]
    fp1, shuffled = _data_fp(_recipe(tmp_path, f"{{path: {train}, limit: 10, shuffle: 3}}"), tmp_path / "runs")
    fp2, _ = _data_fp(_recipe(tmp_path, f"{{path: {train}, limit: 10, shuffle: 4}}"), tmp_path / "runs")
    assert shuffled["shuffle"] == 3 and fp1 != fp2


def test_a_recipe_with_source_hf_runs_until_export(tmp_path, hf_cache):
    from tests.helpers.tiny_model import build_random_tiny_model

    seed_webinstruct(hf_cache, webinstruct_rows(16))
    student = build_random_tiny_model(tmp_path / "student")
    recipe = tmp_path / "hf.yaml"
    recipe.write_text(f"""\
name: hf
seed: 0
data: {{source: hf, path: TIGER-Lab/WebInstructSub, split: train, revision: main, processor: webinstruct_sub,
        shuffle: 0, limit: 8}}
student: {{model: {student}, backend: hf, batch_size: 4, generation: {{temperature: 0.0, max_tokens: 24}}}}
teacher: {{provider: oracle, model: oracle, generation: {{max_tokens: 512}}}}
critique: {{style: paper, specificity: specific}}
variants: [base, sft, cgd]
train: {{method: full, learning_rate: 1.0e-3, epochs: 1, global_batch_size: 4, sequence_len: 1024}}
eval: {{suites: [tiny]}}
""")
    env = {**os.environ, "HF_DATASETS_CACHE": str(hf_cache), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "harness.cli", "run", str(recipe), "--until", "export", "--json",
           "--runs-dir", str(tmp_path / "runs")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert set(summary["datasets"]) == {"sft", "cgd"}
    manifest = json.loads((Path(summary["stages"]["data"]["path"]) / "done.json").read_text())
    info = manifest["info"]
    assert info["rows"] == 8 and info["revision"] == "main" and info["dataset_fingerprint"]
    prompts = {r["question"] for r in TINY_TRAIN[:16]}
    rows = [json.loads(line) for line in Path(summary["datasets"]["cgd"]).read_text().splitlines()]
    assert len(rows) == 8
    records = read_jsonl(Path(summary["stages"]["data"]["path"]) / "records.jsonl")
    assert {r["prompt"] for r in records} <= prompts  # "Question: " stripped, cut at " Answer:"
    by_id = {r["id"]: r["prompt"] for r in records}
    for row in rows:
        user = next(m for m in row["messages"] if m["role"] == "user")["content"]
        assert f"Question: {by_id[row['id']]}\n" in user
    sft = [json.loads(line) for line in Path(summary["datasets"]["sft"]).read_text().splitlines()]
    assert all(row["id"].startswith("wi-") for row in sft)
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=600)
    statuses = {v["status"] for v in json.loads(again.stdout)["stages"].values()} - {"skipped"}
    assert statuses == {"cached"}


def test_checkpoint_selection_is_checked_against_any_source(tmp_path, hf_cache):
    path = write_parquet(tmp_path / "m.parquet", metamathqa_rows())
    select = "\ntrain: {select_checkpoint: {holdout: 2, every_steps: 10}}\n"
    no_answers = _recipe(tmp_path, f"{{source: parquet, path: {path}, prompt_field: query}}", name="a")
    no_answers.write_text(no_answers.read_text() + select)
    with pytest.raises(HarnessError, match=r"train.select_checkpoint: the data has no reference answers"):
        _data_fp(no_answers, tmp_path / "runs")
    seed_webinstruct(hf_cache, webinstruct_rows())
    ok = _recipe(tmp_path, "{source: hf, path: TIGER-Lab/WebInstructSub, processor: webinstruct_sub}", name="b")
    ok.write_text(ok.read_text() + select)
    _data_fp(ok, tmp_path / "runs")  # the processor's references support it
