"""Decontamination: training prompts checked against the recipe's benchmarks before any request is sent.

The acceptance test plants 5 problems of the tiny suite's benchmark (data/tiny/test.jsonl, what tiny_arith scores
on) among 500 training prompts, verbatim and lightly reworded (case, punctuation, spacing, LaTeX dollars, wrapped in
an instruction): `report` finds and lists them, `drop` removes them before the teacher sees a prompt, and the counts
appear in `cgd plan` (before and after the run) and in the report. Student: a random tiny model; teacher: the oracle.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from harness.decontam import NOT_CHECKED, Benchmark, load_benchmarks, normalize, scan
from harness.paths import PROJECT_ROOT
from harness.store import read_jsonl
from tests.helpers.tiny_model import build_random_tiny_model
from tests.test_pipeline import cgd

TINY = PROJECT_ROOT / "data" / "tiny"
PLANTED_AT = (50, 150, 250, 350, 450)


def _plain(text: str) -> str:  # independent of the module under test
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _reworded(k: int, question: str) -> str:
    return [
        question,  # verbatim
        "  " + question.upper().replace(", ", " ,  ").replace(". ", "; "),  # case, punctuation and spacing
        f"Solve the following problem. {question} Show your work step by step.",  # wrapped in an instruction
        re.sub(r"(\d+)", r"$\1$", question),  # LaTeX dollars around the numbers
        question.replace("What is the result?", "what is the result ??").replace(",", " -"),
    ][k]


def planted_data(folder: Path) -> tuple[Path, dict[str, str]]:
    """500 prompts: 495 tiny-world training problems that are no benchmark problem, and 5 planted ones."""
    test = read_jsonl(TINY / "test.jsonl")
    bench = {_plain(r["question"]) for r in test}
    fillers, seen = [], set()
    for row in read_jsonl(TINY / "train.jsonl") + read_jsonl(TINY / "warmup.jsonl"):
        key = _plain(row["question"])
        if key in bench or key in seen or any(b in key for b in bench):
            continue
        seen.add(key)
        fillers.append({"id": row["id"], "question": row["question"], "answer": row["answer"]})
        if len(fillers) == 495:
            break
    rows, planted = list(fillers), {}
    for k, at in enumerate(PLANTED_AT):
        src = test[7 + 31 * k]
        pid = f"planted-{k}"
        rows.insert(at, {"id": pid, "question": _reworded(k, src["question"]), "answer": src["answer"]})
        planted[pid] = src["question"]
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(rows) == 500
    return path, planted


def write_recipe(folder: Path, student: Path, data: Path, mode: str, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"""\
name: {name}
seed: 0
data: {{source: jsonl, path: {data}, prompt_field: question, answer_field: answer, id_field: id,
        decontaminate: {mode}}}
student: {{model: {student}, backend: hf, batch_size: 4, generation: {{temperature: 0.0, max_tokens: 24}}}}
teacher: {{provider: oracle, model: oracle, max_concurrency: 16, generation: {{max_tokens: 512}}}}
critique: {{style: paper, specificity: specific}}
variants: [base, sft, distilled_sft]
train: {{method: full, learning_rate: 1.0e-3, epochs: 1, global_batch_size: 4, sequence_len: 1024}}
eval: {{suites: [tiny]}}
""")
    return path


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return build_random_tiny_model(tmp_path_factory.mktemp("student") / "model")


def _plan_json(recipe: Path, runs: Path) -> dict:
    rows = json.loads(cgd("plan", str(recipe), "--json", "--runs-dir", str(runs)).stdout)["stages"]
    return next(r for r in rows if r["kind"] == "decontaminate")


def test_report_finds_and_lists_the_planted_problems(tmp_path, student):
    data, planted = planted_data(tmp_path)
    recipe = write_recipe(tmp_path, student, data, "report", "dc-report")
    runs = tmp_path / "runs"
    # cgd plan, before anything ran: counted at plan time
    before = _plan_json(recipe, runs)
    assert before["status"] == "will run"
    found = before["decontamination"]
    assert (found["prompts"], found["contaminated"], found["duplicates"]) == (500, 5, 0)
    tiny = found["benchmarks"]["tiny_arith"]
    assert tiny["hits"] == 5 and tiny["exact"] == 4  # and one contained in a longer prompt
    shown = cgd("plan", str(recipe), "--runs-dir", str(runs)).stdout
    assert "5 of 500 prompts match a benchmark" in " ".join(shown.split())

    summary = json.loads(cgd("run", str(recipe), "--until", "export", "--json", "--runs-dir", str(runs)).stdout)
    stage = summary["stages"]["decontaminate"]
    assert stage["records"] == 5
    hits = read_jsonl(Path(stage["path"]) / "records.jsonl")
    assert {h["id"] for h in hits} == set(planted)
    assert all(h["hits"][0]["benchmark"] == "tiny_arith" for h in hits)
    # report only: every prompt still reaches the teacher and the datasets
    sft = Path(summary["datasets"]["sft"]).read_text().splitlines()
    assert len(sft) == 500
    run_json = json.loads((Path(summary["run_dir"]) / "run.json").read_text())
    assert run_json["decontamination"]["contaminated"] == 5
    assert len(run_json["decontamination"]["benchmarks"]["tiny_arith"]["examples"]) >= 1

    # cgd plan after the run: the stage is cached and its counts come from its manifest
    after = _plan_json(recipe, runs)
    assert after["status"] == "cached" and after["decontamination"]["contaminated"] == 5

    # the report's notes carry the counts (an evaluate row stands in for the evaluation not run here)
    row = {"benchmark": "tiny_arith", "metric": "exact_match", "value": 0.155, "stderr": None, "n": 200,
           "suite": "tiny", "suite_hash": "h", "samples": None, "variant": "base", "seed": None, "model": "m",
           "primary": True}
    (Path(summary["run_dir"]) / "results.jsonl").write_text(json.dumps(row) + "\n")
    report = " ".join(cgd("report", summary["run_dir"], "--format", "md").stdout.split())
    assert "decontamination in dc-report: 5 of 500 prompts match a benchmark" in report
    assert "tiny_arith 5" in report


def test_drop_removes_them_before_the_teacher_sees_them(tmp_path, student):
    data, planted = planted_data(tmp_path)
    recipe = write_recipe(tmp_path, student, data, "drop", "dc-drop")
    runs = tmp_path / "runs"
    summary = json.loads(cgd("run", str(recipe), "--until", "export", "--json", "--runs-dir", str(runs)).stdout)
    assert summary["stages"]["data"]["records"] == 500
    assert summary["stages"]["decontaminate"]["records"] == 495
    for variant in ("sft", "distilled_sft"):
        ids = {json.loads(line)["id"] for line in Path(summary["datasets"][variant]).read_text().splitlines()}
        assert len(ids) == 495 and not ids & set(planted), variant
    answered = {r["id"] for r in read_jsonl(Path(summary["stages"]["answer"]["path"]) / "records.jsonl")}
    assert len(answered) == 495 and not answered & set(planted)  # the teacher never saw a planted problem
    found = json.loads((Path(summary["run_dir"]) / "run.json").read_text())["decontamination"]
    assert found["mode"] == "drop" and found["dropped"] == 5
    assert set(found["dropped_ids"]["contaminated"]) == set(planted)
    shown = " ".join(cgd("plan", str(recipe), "--runs-dir", str(runs)).stdout.split())
    assert "5 of 500 prompts match a benchmark" in shown and "dropped" in shown


# --- the matcher itself ------------------------------------------------------------------------------------------

def test_normalization_ignores_case_punctuation_spacing_and_latex_spacing():
    assert normalize("  What is $2\\,+\\,2$?\n\nAnswer:  \\left( x \\right)") == "what is 2 2 answer x"


def test_ngram_overlap_catches_a_reworded_long_problem_and_the_length_is_configurable():
    problem = ("Let $f(x) = 3x^2 - 5x + 2$. Find the sum of all real numbers $x$ such that $f(f(x)) = 2$, and "
               "give your answer as a common fraction.")
    bench = [Benchmark("math500", "fixture", [problem])]
    reworded = ("Consider the function $f(x)=3x^2-5x+2$ . Find the sum of all real numbers x such that "
                "f(f(x))=2, and write the answer as a fraction.")
    unrelated = "Let $g(x) = x + 1$. Find g(2)."
    hit = scan([reworded, unrelated], bench, 13)
    assert hit["contaminated"] == [0] and hit["hits"][0].match == "ngram"
    assert scan([reworded], bench, 30)["contaminated"] == []  # a longer n-gram: the rewording no longer overlaps


def test_duplicates_after_normalization_are_counted():
    result = scan(["What is 2+2?", "what is 2 + 2", "What is 3+3?"], [], 13)
    assert result["duplicates"] == [1] and result["summary"]["duplicates"] == 1


def test_a_benchmark_without_a_local_copy_is_not_checked(tmp_path, monkeypatch):
    from harness.evaluation import load_suite

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    benchmarks = {b.name: b for b in load_benchmarks([load_suite("math"), load_suite("code")])}
    assert benchmarks["math500"].status == NOT_CHECKED and benchmarks["humaneval"].status == NOT_CHECKED
    summary = scan(["Find x."], list(benchmarks.values()), 13)["summary"]
    assert summary["benchmarks"]["gsm8k"]["status"] == NOT_CHECKED and summary["contaminated"] == 0


def test_a_seeded_benchmark_is_read_from_the_datasets_cache(tmp_path, monkeypatch):
    from harness.datasets_seed import FIXTURES_DIR, seed_dataset
    from harness.evaluation import load_suite

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    src = FIXTURES_DIR / "hf" / "HuggingFaceH4__MATH-500" / "default" / "test.jsonl"
    seed_dataset("HuggingFaceH4/MATH-500", "default", {"test": src})
    problems = [r["problem"] for r in read_jsonl(src)]
    math500 = next(b for b in load_benchmarks([load_suite("math")]) if b.name == "math500")
    assert math500.texts == problems
    found = scan(["Please help: " + problems[0], "Unrelated question about cats."], [math500], 13)
    assert found["contaminated"] == [0]


def test_twenty_thousand_prompts_take_seconds():
    import random

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(5000)]
    bench = [Benchmark("b", "synthetic", [" ".join(rng.choices(vocab, k=60)) for _ in range(500)])]
    prompts = [" ".join(rng.choices(vocab, k=60)) for _ in range(20_000)]
    start = time.perf_counter()
    scan(prompts, bench, 13)
    assert time.perf_counter() - start < 20  # about a second on one core; minutes would be a regression
