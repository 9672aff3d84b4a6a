"""Helpers the record-only analyses share: finding inputs by stage kind, shares, table dicts."""

from __future__ import annotations

from typing import Any

VERDICTS = ("right", "wrong", None)


def kind_of(key: str, inp: Any) -> str:
    """The stage kind of an input (its stage name's first part: "evaluate:cft:0" -> evaluate)."""
    return (getattr(inp, "name", None) or key).split(":")[0]


def inputs_of_kind(inputs: dict[str, Any], kind: str) -> list[Any]:
    return [inp for key, inp in sorted(inputs.items()) if kind_of(key, inp) == kind]


def ok_records(inputs: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The succeeded records of every input of `kind` (records without a status count as succeeded)."""
    return [r for inp in inputs_of_kind(inputs, kind) for r in inp.records if r.get("status", "ok") == "ok"]


def share(count: int, total: int) -> float | None:
    return count / total if total else None


def pct(value: float | None) -> float | None:
    """A share as a percentage rounded to 0.1 (what the tables show); None stays None."""
    return None if value is None else round(100 * value, 1)


def verdict_label(verdict: Any) -> str:
    return "none" if verdict is None else str(verdict)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": rows}


def result(tables: list[dict[str, Any]], numbers: dict[str, float | None], notes: list[str]) -> dict[str, Any]:
    """The analysis result, with numbers that are None left out (the numbers map holds floats only)."""
    return {"tables": tables, "numbers": {k: float(v) for k, v in numbers.items() if v is not None},
            "notes": notes}
