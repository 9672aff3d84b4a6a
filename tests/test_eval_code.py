"""The code suite: EvalPlus scores local HumanEval+/MBPP+ files; the harness computes pass@k from the statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from harness.evaluation import load_suite, run_suite
from harness.evaluation.evalplus_run import dataset_file, evaluate_samples, scores_from_statuses
from harness.evaluation.passk import pass_at_k

pytest_plugins = ["tests.helpers.eval_env"]  # fixtures: eval_env, tiny


def test_pass_at_k_estimator():
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(4, 2, 1) == pytest.approx(0.5)
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)
    assert pass_at_k(16, 0, 8) == 0.0 and pass_at_k(16, 9, 8) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_scores_from_statuses():
    def s(base, plus):
        return {"base_status": base, "plus_status": plus}

    results = {"eval": {"HumanEval/0": [s("pass", "pass"), s("pass", "fail"), s("fail", "fail")],
                        "HumanEval/1": [s("pass", "pass"), s("pass", "pass"), s("timeout", "timeout")]}}
    scores = scores_from_statuses(results, ks=(1, 2))
    assert scores["base"]["pass@1"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert scores["plus"]["pass@1"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert scores["plus"]["pass@2"] == pytest.approx((pass_at_k(3, 1, 2) + pass_at_k(3, 2, 2)) / 2)
    assert scores["base"]["n"] == 2
    base_only = {"eval": {"HumanEval/0": [s("pass", None)]}}
    assert set(scores_from_statuses(base_only)) == {"base"}


HUMANEVAL_SAMPLES = [
    {"task_id": "HumanEval/0", "completion": "    return a + b\n"},  # right
    {"task_id": "HumanEval/1", "solution": "def reverse_words(s: str) -> str:\n    return ' '.join(s.split()[::-1])\n"},
    {"task_id": "HumanEval/2", "solution": "def mean(xs):\n    return sum(xs) // len(xs)\n"},  # integer division
]
MBPP_SAMPLES = [
    {"task_id": "Mbpp/3", "solution": "def is_not_prime(n):\n    return n < 2 or any(n % i == 0 for i in "
                                      "range(2, int(n ** 0.5) + 1))\n"},
    {"task_id": "Mbpp/17", "solution": "def square_perimeter(a):\n    return 4 * a + 1\n"},
]


@pytest.mark.parametrize(("dataset", "version", "samples", "base", "plus"), [
    # HE/1 and HE/2 pass the base tests but fail extra ones ("a  b" keeps two spaces; mean([0.1, 0.2, 0.3]))
    ("humaneval", "v0.1.10", HUMANEVAL_SAMPLES, 1.0, 1 / 3),
    ("mbpp", "v0.2.0", MBPP_SAMPLES, 0.5, 0.5),
])
def test_evalplus_scores_a_local_file(eval_env, tmp_path, dataset, version, samples, base, plus):
    samples_file = tmp_path / "samples.jsonl"
    samples_file.write_text("".join(json.dumps(r) + "\n" for r in samples))
    results = evaluate_samples(dataset, version, samples_file, out_dir=tmp_path,
                               dataset_path=dataset_file(dataset, version))
    assert set(results["eval"]) == {r["task_id"] for r in samples}
    scores = scores_from_statuses(results)
    assert scores["base"]["pass@1"] == pytest.approx(base)
    assert scores["plus"]["pass@1"] == pytest.approx(plus)


def test_code_suite_generates_and_scores_with_a_local_model(eval_env, tiny, tmp_path):
    suite = load_suite("code")
    suite["evalplus"]["max_new_tokens"] = 16
    rows = run_suite(suite, model_path=str(tiny), out_dir=tmp_path, limit=2, batch_size=1, console=Console())
    by = {r["benchmark"]: r for r in rows}
    assert set(by) == {"humaneval", "humaneval_plus", "mbpp", "mbpp_plus"}
    assert {b for b, r in by.items() if r["primary"]} == {"humaneval_plus", "mbpp_plus"}
    for r in rows:
        assert r["metric"] == "pass@1" and r["n"] == 2 and 0.0 <= r["value"] <= 1.0
        statuses = json.loads(Path(r["samples"]).read_text())["eval"]
        assert len(statuses) == 2
    assert (tmp_path / "evalplus" / "humaneval" / "samples.raw.jsonl").exists()
