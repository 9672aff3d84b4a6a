"""Answer graders the math eval tasks can score with (`eval.grader`), by name.

- `math_verify` (default): harness.grading.equivalent, math-verify's equivalence with the harness's normalization.
- `paper`: harness.grading_paper.equivalent, the CGD paper's `math_equal` (rounding, relative tolerance, percent
  forms, sympy); see harness/data/grader_disagreements.jsonl for answers on which the two disagree.

Both share the answer extraction of harness.grading (last \\boxed{}, "answer is", last number); only the
equivalence of the extracted answer and the gold differs. The eval tasks' process_results call harness.grading;
`using(name)` makes those calls grade with the named grader for the duration of a block (the lm-eval tasks are
wrapped by harness.evaluation.lmeval when a suite's grader is not the default), so the task files and
harness/grading.py stay as they are and cached math_verify scores keep their suite hash.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness import grading, grading_paper
from harness.registry import UnknownName

DEFAULT = "math_verify"
Equivalence = Callable[[str, str], bool]

GRADERS: dict[str, Equivalence] = {
    "math_verify": grading.equivalent,
    "paper": grading_paper.equivalent,
}
# The files whose code decides each grader's verdicts (hashed into a suite that uses that grader).
GRADER_FILES: dict[str, list[Path]] = {
    "math_verify": [Path(grading.__file__)],
    "paper": [Path(grading.__file__), Path(grading_paper.__file__), Path(__file__)],
}


def get_grader(name: str) -> Equivalence:
    try:
        return GRADERS[name]
    except KeyError:
        raise UnknownName(f"unknown grader '{name}'; available: {', '.join(sorted(GRADERS))}") from None


@contextlib.contextmanager
def using(name: str) -> Iterator[None]:
    """Inside the block, harness.grading.grade / grade_answer compare answers with grader `name`.

    Not thread-safe (it swaps a module attribute); lm-eval scores samples one by one on one thread."""
    equivalence = get_grader(name)
    saved = grading.equivalent
    grading.equivalent = equivalence
    try:
        yield
    finally:
        grading.equivalent = saved


def grade_answer(response: str, gold: str, grader: str = DEFAULT) -> bool:
    """harness.grading.grade_answer with the named grader."""
    with using(grader):
        return grading.grade_answer(response, gold)


def graded_results(doc: dict[str, Any], results: list[Any], *, base: Callable[..., dict[str, Any]],
                   grader: str) -> dict[str, Any]:
    """A task's process_results (`base`) run with grader `grader` (what lmeval sets as the task's override)."""
    with using(grader):
        return base(doc, results)
