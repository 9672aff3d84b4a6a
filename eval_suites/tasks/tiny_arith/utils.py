"""tiny_arith: the held-out split of the tiny world, graded by the harness's own grader."""

from __future__ import annotations

from typing import Any


def load(**_: Any):
    import datasets

    from harness.store import read_jsonl
    from harness.tiny.problems import DATA_DIR

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(read_jsonl(DATA_DIR / "test.jsonl"))})


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    from harness.grading import grade

    return {"exact_match": float(grade(results[0], doc["final"]))}
