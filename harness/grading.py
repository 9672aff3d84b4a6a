"""Answer extraction and equivalence, shared by verification (refine/answer stages) and reports.

The final answer is the content of the last \\boxed{...} (nested braces allowed), else the text after "answer is",
else the whole text. Two answers are equal when their normalized strings match or math-verify says so.
"""

from __future__ import annotations

import re

VERDICT_RE = re.compile(r"conclusion\s*:\s*\**\s*(right|wrong|correct|incorrect)\b", re.I)
ANSWER_IS_RE = re.compile(r"answer is\s*:?\s*(.+?)(?:\.\s*$|\n|$)", re.I)


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} or \\fbox{...}, with balanced braces; None if there is none."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None  # unbalanced: cut off mid-answer


def extract_answer(text: str) -> str:
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    m = ANSWER_IS_RE.search(text)
    return (m.group(1) if m else text).strip().strip("$").strip()


def _normalize(answer: str) -> str:
    s = answer.strip().strip("$").replace("\\!", "").replace("\\,", "").replace(" ", "")
    s = s.replace("\\left", "").replace("\\right", "").replace("dfrac", "frac").replace("tfrac", "frac")
    s = re.sub(r"\\text\{\s*([^{}]*)\}", r"\1", s)
    s = s.rstrip(".")
    if re.fullmatch(r"-?[\d,]+(\.\d+)?", s):
        s = s.replace(",", "")
        if "." in s:
            s = s.rstrip("0").rstrip(".")
    return s


def equivalent(predicted: str, gold: str) -> bool:
    if not predicted:
        return False
    if _normalize(predicted) == _normalize(gold):
        return True
    try:
        from math_verify import parse, verify

        gold_parsed = parse(f"${gold}$", parsing_timeout=None)
        pred_parsed = parse(f"${predicted}$", parsing_timeout=None)
        return bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=None))
    except Exception:  # noqa: BLE001 - a parser failure means "not shown equal", never a crash
        return False


def grade(response: str, reference: str) -> bool:
    """Is the final answer of `response` the final answer of `reference` (a bare answer or a worked solution)?"""
    return equivalent(extract_answer(response), extract_answer(reference))


def verdict_of(critique: str) -> str | None:
    """'right' / 'wrong' from the last 'Conclusion: ...' line of a critique; None when there is none."""
    found = VERDICT_RE.findall(critique)
    if not found:
        return None
    word = found[-1].lower()
    return "right" if word in ("right", "correct") else "wrong"
