"""The reviewers' baselines as variants: sft_refined (prompt -> the teacher's refinement), self_refine (the student
critiques and refines its own draft), and critique noise on CGD's critiques; each planned, exported, trained by
Axolotl, scored by lm-eval and shown in the reports."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness.grading import verdict_of
from harness.paths import RECIPES_DIR
from harness.prompts import load_style
from harness.stages.export import build_rows
from harness.variants import noise
from tests.test_end_to_end import SMALL
from tests.test_pipeline import cgd


def _records(n: int) -> list[dict]:
    return [{"id": f"r{i}", "prompt": f"What is {i} + {i}?", "draft": f"{i} + {i} = {2 * i + 1}",
             "critique": f"Step 1 adds {i} and {i}. The sum {2 * i + 1} is off by one. Conclusion: wrong",
             "verdict": "wrong", "refined": f"{i} + {i} = {2 * i}. The answer is \\boxed{{{2 * i}}}.",
             "refined_correct": True, "status": "ok"} for i in range(n)]


@pytest.mark.parametrize("kind", ["flip_verdict", "wrong_step", "shuffle"])
def test_noise_corrupts_the_seeded_share_and_leaves_the_rest_byte_identical(kind):
    records, style = _records(40), load_style("paper")
    params = {"variant": "cgd", "specificity": "specific", "seed": 3, "keep_unverified": "keep"}
    clean = build_rows("cgd", records, style, params)
    noisy = build_rows("cgd", records, style, {**params, "noise": {"rate": 0.3, "kind": kind}})
    changed = [i for i, (a, b) in enumerate(zip(clean, noisy, strict=True)) if a != b]
    assert len(changed) == 12  # round(0.3 x 40)
    for i in changed:
        assert noisy[i]["messages"][-1] == clean[i]["messages"][-1]  # the target is never touched
    _, chosen = noise.corrupt([r["critique"] for r in records], 0.3, kind, 3)
    assert changed == chosen
    assert build_rows("cgd", records, style, {**params, "noise": {"rate": 0.3, "kind": kind}}) == noisy  # seeded
    if kind == "flip_verdict":
        assert all(verdict_of(noise.flip_verdict(r["critique"], random.Random(0))) == "right" for r in records)


def test_sft_refined_trains_on_cgd_targets_from_the_plain_prompt():
    records, style = _records(5), load_style("paper")
    rows = build_rows("sft_refined", records, style, {"variant": "sft_refined", "seed": 0, "keep_unverified": "keep"})
    cgd_rows = build_rows("cgd", records, style, {"variant": "cgd", "specificity": "specific", "seed": 0,
                                                  "keep_unverified": "keep"})
    assert [r["messages"][-1] for r in rows] == [r["messages"][-1] for r in cgd_rows]
    assert all("Conclusion" not in m["content"] for r in rows for m in r["messages"][:-1])


def test_self_refine_keeps_only_accepted_refinements_with_verify():
    records = [{"id": f"s{i}", "prompt": "p", "draft": "d", "self_critique": "c", "self_refined": f"y{i}",
                "self_refined_correct": i % 2 == 0, "status": "ok"} for i in range(6)]
    style = load_style("paper")
    assert len(build_rows("self_refine", records, style, {"verify": False})) == 6
    kept = build_rows("self_refine", records, style, {"verify": True})
    assert [r["id"] for r in kept] == ["s0", "s2", "s4"]


@pytest.mark.slow
def test_new_methods_run_end_to_end_and_appear_in_the_reports(tmp_path):
    """On the tiny world (a warmed-up tiny student: a random one writes empty self-refinements)."""
    runs = str(tmp_path / "runs")
    args = [str(RECIPES_DIR / "tiny.yaml"), *SMALL, "--set", "data.limit=16", "--set",
            "variants=[base, sft_refined, self_refine, cgd]", "--set", "critique.noise={rate: 0.5, kind: flip_verdict}",
            "--runs-dir", runs, "--json"]
    plan = json.loads(cgd("plan", *args).stdout)
    requests = {row["stage"]: row["requests"] for row in plan["stages"]}
    assert requests["self_critique"] == 16 and requests["self_refine"] == 16  # the student's own
    assert requests["critique"] == 16 and requests["refine"] == 16  # the teacher's
    assert "answer" not in requests  # no variant here needs the teacher's plain answers

    summary = json.loads(cgd("run", *args).stdout)
    assert summary["status"] == "done"
    assert set(summary["datasets"]) == {"sft_refined", "self_refine", "cgd"}
    cgd_info = next(json.loads(p.read_text())["info"] for p in Path(runs, "stages").glob("export-*/done.json")
                    if "noise" in json.loads(p.read_text())["info"])
    assert cgd_info["noise"]["corrupted"] == round(0.5 * cgd_info["noise"]["of"])
    for variant in ("sft_refined", "self_refine", "cgd"):
        assert Path(summary["models"][f"{variant}@seed0"], "config.json").is_file()
    scored = {json.loads(line)["variant"] for line in Path(summary["results"]).read_text().splitlines()}
    assert scored == {"base", "sft_refined", "self_refine", "cgd"}
    report = cgd("report", summary["run_dir"]).stdout
    html = Path(summary["run_dir"], "report.html").read_text()
    for variant in ("sft_refined", "self_refine", "cgd"):
        assert variant in report and variant in html
