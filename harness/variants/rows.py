"""Pieces every variant's rows are made of: one Axolotl chat row with only the final assistant turn trained."""

from __future__ import annotations

from typing import Any

Record = dict[str, Any]


def chat_row(rid: str, messages: list[dict[str, str]], target: str) -> dict[str, Any]:
    msgs = [{**m, "training": False} for m in messages]
    msgs.append({"role": "assistant", "content": target, "training": True})
    return {"id": rid, "messages": msgs}


def usable(records: list[Record]) -> list[Record]:
    """Records whose generation succeeded (failures max_failed allowed are left out and counted)."""
    return [r for r in records if r.get("status", "ok") == "ok"]


def verified(rec: Record, field: str | None, policy: str) -> bool:
    """With critique.keep_unverified: drop, an answer the grader rejected is left out."""
    return field is None or policy != "drop" or rec.get(f"{field}_correct") is not False
