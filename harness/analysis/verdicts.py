"""Verdict quality: is the supervision itself right? The teacher's verdict against the grader, and the refinements.

From the critique stage's records: the teacher's "Conclusion: right/wrong" verdict against the grader's judgement
of the draft against the reference (harness.grading.grade, or `grader:` from harness.graders). The positive class
is "wrong" (the teacher flags an error):
- confusion matrix: verdict right / wrong / none x draft graded correct / incorrect;
- accuracy over critiques with a verdict; precision of "wrong" = flagged wrong and graded incorrect / flagged
  wrong; recall of "wrong" = flagged wrong and graded incorrect / graded incorrect (with a verdict).
From the refine stage's records (when the recipe refines): the share of refinements graded correct against the
reference (`refined_correct`, graded by the refine stage), split by verdict.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pydantic import field_validator

from harness import graders
from harness.analysis.common import ok_records, pct, result, share, table, verdict_label
from harness.recipe.schema import Strict

NAME = "verdicts"
DOC = "the teacher's right/wrong verdicts against the grader (confusion matrix), and refinement correctness"
NEEDS: tuple[str, ...] = ("critique", "refine")
OPTIONAL: tuple[str, ...] = ("refine",)


class Settings(Strict):
    grader: str = graders.DEFAULT
    """The grader that judges the drafts against the reference (harness/graders.py: math_verify, paper)."""

    @field_validator("grader")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in graders.GRADERS:
            raise ValueError(f"unknown grader '{name}'; available: {', '.join(sorted(graders.GRADERS))}")
        return name


def confusion(records: list[dict[str, Any]], grader: str = graders.DEFAULT) -> dict[str, dict[str, int]]:
    """{verdict: {"correct": n, "incorrect": n}} over records with a reference (verdict "none" when missing)."""
    from harness import grading

    counts: dict[str, dict[str, int]] = {v: {"correct": 0, "incorrect": 0} for v in ("right", "wrong", "none")}
    with graders.using(grader):
        for rec in records:
            if not rec.get("reference"):
                continue
            ok = grading.grade(rec.get("draft") or "", str(rec["reference"]))
            counts[verdict_label(rec.get("verdict"))]["correct" if ok else "incorrect"] += 1
    return counts


def scores(counts: dict[str, dict[str, int]]) -> dict[str, float | None]:
    tp = counts["wrong"]["incorrect"]  # flagged wrong, graded incorrect
    fp = counts["wrong"]["correct"]
    fn = counts["right"]["incorrect"]
    tn = counts["right"]["correct"]
    judged = tp + fp + fn + tn
    return {"accuracy": share(tp + tn, judged), "precision_wrong": share(tp, tp + fp),
            "recall_wrong": share(tp, tp + fn), "judged": judged,
            "no_verdict": counts["none"]["correct"] + counts["none"]["incorrect"]}


def run(ctx: Any, inputs: dict[str, Any], settings: Settings) -> dict[str, Any]:
    critiques = ok_records(inputs, "critique")
    counts = confusion(critiques, settings.grader)
    s = scores(counts)
    notes: list[str] = []
    rows = [[v, counts[v]["correct"], counts[v]["incorrect"], counts[v]["correct"] + counts[v]["incorrect"]]
            for v in ("right", "wrong", "none") if v != "none" or sum(counts["none"].values())]
    numbers: dict[str, float | None] = {f"confusion.{v}.{g}": counts[v][g] for v in counts for g in counts[v]}
    numbers |= {k: s[k] for k in ("accuracy", "precision_wrong", "recall_wrong", "judged", "no_verdict")}
    tables = [
        table("Teacher verdict vs grader (draft against the reference)",
              ["teacher verdict", "draft graded correct", "draft graded incorrect", "total"], rows),
        table("Verdict quality (positive class: wrong)", ["critiques with a verdict", "accuracy %",
                                                          "precision of wrong %", "recall of wrong %"],
              [[s["judged"], pct(s["accuracy"]), pct(s["precision_wrong"]), pct(s["recall_wrong"])]]),
    ]
    if s["no_verdict"]:
        notes.append(f"{s['no_verdict']} critiques have no verdict line (left out of accuracy, precision, recall)")
    if settings.grader != graders.DEFAULT:
        notes.append(f"drafts graded with the {settings.grader} grader")
    refines = ok_records(inputs, "refine")
    if refines:
        by: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # verdict -> [graded, correct]
        for r in refines:
            if r.get("refined_correct") is None:
                continue
            for v in (verdict_label(r.get("verdict")), "all"):
                by[v][0] += 1
                by[v][1] += bool(r["refined_correct"])
        rrows = []
        for v in [x for x in ("right", "wrong", "none", "all") if x in by]:
            graded, correct = by[v]
            rrows.append([v, graded, correct, pct(share(correct, graded))])
            numbers |= {f"refine.{v}.n": graded, f"refine.{v}.correct_share": share(correct, graded)}
        tables.append(table("Refinements graded correct against the reference, by verdict",
                            ["teacher verdict", "refinements graded", "correct", "% correct"], rrows))
    else:
        notes.append("no refine records (no variant trains on refinements)")
    return result(tables, numbers, notes)
