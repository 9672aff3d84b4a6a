"""TIGER-Lab/WebInstruct-CFT (configs WebInstruct-CFT-600K / -50K / -4K), Alpaca columns `instruction`, `input`,
`output`. `input` is "Question:\\n{question}\\n\\nSolution:\\n{solution}" and `output` a GPT-4o critique ending
"Conclusion: right/wrong [END]". The prompt is the question; the reference is the solution only when the critique
concludes it is right (a wrong solution is no reference answer)."""

from __future__ import annotations

import re
from typing import Any

from harness.data.processors import text

NAME = "webinstruct_cft"
SOURCE = "TIGER-Lab/WebInstruct-CFT"
LICENSE = "apache-2.0"  # the source dataset's licence (its Hub card), shown in dataset cards
FIELDS = ("instruction", "input", "output")

_SPLIT = re.compile(r"^\s*Question:\s*(.*?)\n\s*Solution:\s*(.*)$", re.DOTALL)
_VERDICT = re.compile(r"conclusion:\s*(right|wrong)", re.IGNORECASE)


def process(row: dict[str, Any]) -> dict[str, Any] | None:
    raw = row.get("input")
    if not isinstance(raw, str):
        return None
    match = _SPLIT.match(raw)
    question, solution = (match.group(1), match.group(2)) if match else (raw, None)
    prompt = text(question)
    if prompt is None:
        return None
    verdicts = _VERDICT.findall(row.get("output") or "")
    right = bool(verdicts) and verdicts[-1].lower() == "right"
    return {"prompt": prompt, "reference": text(solution) if right else None}
