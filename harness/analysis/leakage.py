"""Critique leakage: how often a critique states the reference answer, and whether the refinement just copies it.

The ICLR reviewers of CGD asked whether the student learns to rely on critiques that hand it the answer (it will
not have them at inference). From the critique stage's records (prompt, draft, reference, critique, verdict):

- reference in critique, per verdict: the reference's final answer (harness.grading.extract_answer, normalized) is
  found in the critique text: as a normalized substring, or equal to a number, a `\\boxed{}` or an inline `$...$`
  span of the critique under the grader's equivalence (harness.grading.equivalent: "0.5" states "\\frac{1}{2}").
  Split further by whether the draft itself was right (graded against the reference): a critique of a wrong draft
  that contains the answer tells the student something the draft did not.
- refined answer in critique (the CGD rows: refine records): the refined answer's final answer is already in the
  critique, so the refinement could have copied it; with its share among refinements graded correct.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from pydantic import Field

from harness import grading
from harness.analysis.common import ok_records, pct, result, share, table, verdict_label
from harness.recipe.schema import Strict

NAME = "leakage"
DOC = "how often critiques state the reference answer (per verdict) and the refined answer is already in them"
NEEDS: tuple[str, ...] = ("critique", "refine")
OPTIONAL: tuple[str, ...] = ("refine",)  # without refine stages: the critique half only

INLINE_MATH_RE = re.compile(r"\$([^$]{1,80})\$")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class Settings(Strict):
    max_candidates: int = Field(default=40, ge=1)
    """At most this many numbers / boxed / inline-math spans of one critique are compared with math-verify's
    equivalence (the normalized-string checks cover every span); bounds the time on long critiques."""


def candidates(text: str) -> list[str]:
    """The spans of a text that may state an answer: \\boxed{} contents, inline $...$ math (and its right-hand
    side after the last "="), numbers; unique, in that order."""
    maths = INLINE_MATH_RE.findall(text)
    found = [*grading.all_boxed(text), *maths, *(m.rsplit("=", 1)[1] for m in maths if "=" in m),
             *grading.NUMBER_RE.findall(text)]
    return list(dict.fromkeys(s.strip().rstrip(".,") for s in found if s.strip().rstrip(".,")))


def states_answer(text: str, answer: str, max_candidates: int = 40) -> bool:
    """Does `text` state `answer` (a bare final answer)? See the module docstring."""
    if not text or not answer or not answer.strip():
        return False
    target = grading._normalize(answer)
    if not target:
        return False
    spans = candidates(text)
    if any(grading._normalize(s) == target for s in spans):
        return True
    if _PLAIN_NUMBER.fullmatch(target):
        # a plain number is stated as a number (the normalized spans above: "57" in "157" is not 57) or as
        # another form of it in maths ("\\frac{3}{4}" for 0.75)
        spans = [s for s in spans if not _PLAIN_NUMBER.fullmatch(grading._normalize(s))]
    else:
        flat = grading._normalize(text)
        if len(target) >= 2 and target in flat:
            return True
    return any(grading.equivalent(s, answer) for s in spans[:max_candidates])


def final_answer(text: str) -> str:
    """A response's final answer as the grader reads it (boxed, "answer is", "####", else the last number)."""
    return grading.extract_answer(text or "", last_number=True)


def run(ctx: Any, inputs: dict[str, Any], settings: Settings) -> dict[str, Any]:
    critiques = ok_records(inputs, "critique")
    refines = ok_records(inputs, "refine")
    notes: list[str] = []
    per: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for rec in critiques:
        ref = grading.extract_answer(str(rec.get("reference") or ""))
        if not ref:
            continue
        leaked = states_answer(rec.get("critique") or "", ref, settings.max_candidates)
        draft_right = grading.grade(rec.get("draft") or "", str(rec["reference"]))
        for v in (verdict_label(rec.get("verdict")), "all"):
            c = per[v]
            c["n"] += 1
            c["leaked"] += leaked
            c["draft_wrong"] += not draft_right
            c["leaked_draft_wrong"] += leaked and not draft_right
    rows, numbers = [], {}
    for v in [x for x in ("right", "wrong", "none", "all") if x in per]:
        c = per[v]
        s_all, s_wrong = share(c["leaked"], c["n"]), share(c["leaked_draft_wrong"], c["draft_wrong"])
        rows.append([v, c["n"], c["leaked"], pct(s_all), c["draft_wrong"], c["leaked_draft_wrong"], pct(s_wrong)])
        numbers |= {f"critique.{v}.n": c["n"], f"critique.{v}.reference_share": s_all,
                    f"critique.{v}.reference_share_draft_wrong": s_wrong}
    tables = [table("Reference answer stated in the critique, by the teacher's verdict",
                    ["verdict", "critiques", "with reference", "% with reference", "drafts wrong",
                     "wrong drafts, with reference", "% of wrong drafts, with reference"], rows)]
    if not critiques:
        notes.append("no critique records")
    if refines:
        rrows = []
        for v in ("right", "wrong", "none", "all"):
            recs = [r for r in refines if v == "all" or verdict_label(r.get("verdict")) == v]
            if not recs:
                continue
            copied = correct = copied_correct = 0
            for r in recs:
                answer = final_answer(r.get("refined") or "")
                inside = states_answer(r.get("critique") or "", answer, settings.max_candidates)
                ok = bool(r.get("refined_correct"))
                copied += inside
                correct += ok
                copied_correct += inside and ok
            s, s_ok = share(copied, len(recs)), share(copied_correct, correct)
            rrows.append([v, len(recs), copied, pct(s), correct, copied_correct, pct(s_ok)])
            numbers |= {f"refine.{v}.n": len(recs), f"refine.{v}.answer_in_critique_share": s,
                        f"refine.{v}.answer_in_critique_share_correct": s_ok}
        tables.append(table("Refined answer (CGD target) already in the critique, by verdict",
                            ["verdict", "refinements", "answer in critique", "% answer in critique",
                             "graded correct", "correct, answer in critique", "% of correct, answer in critique"],
                            rrows))
    else:
        notes.append("no refine records (no variant trains on refinements): the refined-answer table is left out")
    return result(tables, numbers, notes)
