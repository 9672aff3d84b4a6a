"""Processors: one small module per known dataset, mapping a source row to {prompt, reference, id?}.

Selected by `data.processor`. Each module has `NAME`, `SOURCE` (the dataset it is written for), `FIELDS` (the
source's real field names it reads) and `process(row) -> dict | None` (None: a malformed row, skipped and counted).
A processor replaces `data.prompt_field` / `data.answer_field`; `data.id_field` still applies when it gives no id.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from types import ModuleType
from typing import Any

from harness.errors import HarnessError

MODULES = ("webinstruct_sub", "webinstruct_filter", "webinstruct_cft", "openmathreasoning", "nemotron_sft_math",
           "metamathqa", "openmathinstruct2", "numinamath")


def available() -> list[str]:
    return sorted(MODULES)


def get_processor(name: str) -> ModuleType:
    if name not in MODULES:
        raise HarnessError(f"unknown processor '{name}'; available: {', '.join(available())}")
    return import_module(f"harness.data.processors.{name}")


def processor_fn(name: str) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    return get_processor(name).process


def text(value: Any) -> str | None:
    """A non-empty stripped string, else None."""
    if value is None:
        return None
    value = str(value).strip()
    return value or None
