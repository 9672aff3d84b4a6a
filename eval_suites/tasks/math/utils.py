"""CGD math tasks: gold answers per dataset schema, graded with harness.grading (last \\boxed{}, math-verify).

`process_*` score one greedy response; when a suite asks for n samples, the harness wraps them in
harness.evaluation.passk.passk_results to report pass@k.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from functools import partial
from typing import Any


def _answer_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def gold_answer(doc: dict[str, Any]) -> str:
    return _answer_text(doc["answer"])


def gold_math500(doc: dict[str, Any]) -> str:
    return _answer_text(doc["answer"])


def gold_gsm8k(doc: dict[str, Any]) -> str:
    return doc["answer"].split("####")[-1].strip().replace(",", "")


def gold_amc23(doc: dict[str, Any]) -> str:
    return _answer_text(doc["answer"])


def gold_aime24(doc: dict[str, Any]) -> str:
    return _answer_text(doc["Answer"])


def gold_olympiadbench(doc: dict[str, Any]) -> str:
    answers = doc["final_answer"]
    if isinstance(answers, str):
        try:
            answers = ast.literal_eval(answers)
        except (ValueError, SyntaxError):
            answers = [answers]
    return ", ".join(str(a).strip().strip("$").strip() for a in answers)


def gold_theoremqa(doc: dict[str, Any]) -> str:
    answer = doc["Answer"]
    if isinstance(answer, list | tuple):
        return "[" + ", ".join(_answer_text(a) for a in answer) + "]"
    if isinstance(answer, bool):
        return "True" if answer else "False"
    return _answer_text(answer)


def _score(doc: dict[str, Any], results: list[str], gold: Callable[[dict[str, Any]], str]) -> dict[str, float]:
    from harness.grading import grade_answer

    return {"exact_match": float(grade_answer(results[0], gold(doc)))}


process_answer = partial(_score, gold=gold_answer)
process_math500 = partial(_score, gold=gold_math500)
process_gsm8k = partial(_score, gold=gold_gsm8k)
process_amc23 = partial(_score, gold=gold_amc23)
process_aime24 = partial(_score, gold=gold_aime24)
process_olympiadbench = partial(_score, gold=gold_olympiadbench)
process_theoremqa = partial(_score, gold=gold_theoremqa)
