"""Checkpoint selection that cannot tie silently: the metric follows what the data's answers support, `cgd
validate` refuses accuracy on free-text answers, and the held-out target loss scores any model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.stages.selection import data_problem, gradable, score_loss
from tests.helpers.tiny_model import build_random_tiny_model
from tests.test_pipeline import cgd

MATHY = ["The answer is \\boxed{42}.", "\\frac{3}{4}", "x^2+1", "3.14", "12 apples", "(A)", "#### 18"]
FREE_TEXT = ["The mitochondria is the powerhouse of the cell because it produces ATP.", "Paris",
             "It increases because demand rises and supply is fixed in the short run."]


@pytest.mark.parametrize("reference", MATHY)
def test_math_like_references_are_gradable(reference):
    assert gradable(reference)


@pytest.mark.parametrize("reference", FREE_TEXT)
def test_free_text_references_are_not(reference):
    assert not gradable(reference)


def test_the_data_decides_which_metrics_are_possible():
    assert data_problem("accuracy", MATHY) is None
    assert "only 0% of the data's look gradable" in data_problem("accuracy", FREE_TEXT)
    assert data_problem("auto", FREE_TEXT) is None and data_problem("loss", FREE_TEXT) is None
    assert "no reference answers" in data_problem("auto", [None, ""])


def _recipe(tmp_path: Path, metric: str, answers: list[str]) -> Path:
    data = tmp_path / "free.jsonl"
    data.write_text("".join(json.dumps({"question": f"Q{i}?", "answer": a}) + "\n" for i, a in
                            enumerate(answers * 20)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""\
name: sel
data: {{path: {data}, prompt_field: question, answer_field: answer}}
student: {{model: tiny}}
teacher: {{provider: oracle, model: oracle}}
variants: [base, sft]
train:
  select_checkpoint: {{holdout: 8, metric: {metric}}}
""")
    return recipe


def test_validate_refuses_accuracy_selection_on_free_text_answers(tmp_path):
    refused = cgd("validate", str(_recipe(tmp_path, "accuracy", FREE_TEXT)), check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"{tmp_path / 'r.yaml'}:7:" in refused.stderr and "accuracy needs gradable reference" in refused.stderr
    assert cgd("validate", str(_recipe(tmp_path, "auto", FREE_TEXT))).returncode == 0
    assert cgd("validate", str(_recipe(tmp_path, "accuracy", MATHY))).returncode == 0


def test_target_loss_scores_a_real_model(tmp_path):
    model = build_random_tiny_model(tmp_path / "model")
    rows = [{"id": str(i), "messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                                        {"role": "assistant", "content": f"{2 * i}"}]} for i in range(4)]
    found = score_loss(model, rows)
    assert found["n"] == 4 and found["tokens"] > 4 and math.isfinite(found["loss"]) and found["loss"] > 0



def test_the_report_shows_the_selection_curve(tmp_path):
    stage = tmp_path / "runs" / "stages" / "train-abc"
    stage.mkdir(parents=True)
    selection = {"metric": "accuracy", "tie_break": "loss", "selected": "checkpoint-4", "selected_step": 4,
                 "scores": [{"checkpoint": "checkpoint-2", "step": 2, "accuracy": 0.0, "loss": 2.0},
                            {"checkpoint": "checkpoint-4", "step": 4, "accuracy": 0.0, "loss": 1.5}]}
    (stage / "done.json").write_text(json.dumps({"info": {"checkpoint_selection": selection}}))
    run = tmp_path / "runs" / "sel"
    run.mkdir()
    rows = [{"benchmark": "tiny_arith", "metric": "exact_match", "value": v, "variant": variant, "seed": s,
             "primary": True} for variant, s, v in (("base", None, 0.1), ("cgd", 0, 0.2))]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "run.json").write_text(json.dumps({"recipe": "sel", "stages": {"train:cgd:0": {"path": str(stage)}}}))
    markdown = cgd("report", str(run), "--format", "md").stdout
    assert "checkpoint selection, cgd (seed 0): accuracy, kept checkpoint-4, tie broken by loss" in markdown
    cgd("report", str(run), "--format", "html", "-o", str(tmp_path / "r.html"))
    html = (tmp_path / "r.html").read_text()
    assert 'id="selection-chart"' in html and "Checkpoint selection (held-out)" in html
