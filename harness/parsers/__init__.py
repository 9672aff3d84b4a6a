"""Model-family output parsers: what a reasoning model writes, cut down to the answer a record keeps.

One module per parser in this package, each with `NAME` and `parse(text) -> text` (its docstring is its
description); they are found by listing the package, so a new parser is a new file. A recipe names one for the
student (`student.parser`: drafts) and one for the teacher (`teacher.parser`: critiques, refinements, answers);
`none` keeps the text as generated. The raw text is kept beside the parsed one (`draft_raw`, `critique_raw`,
`refined_raw`, `teacher_answer_raw`) whenever the parser changed it, and a parser other than `none` is part of
the fingerprint of the stages it affects. Parsing is not part of the request cache's key, so a parser change
re-parses cached answers without paying for them again.

Reference: the official CGD code (CapitalOne-Research/Critique-Guided-Distillation, src/cgd_pipeline.py):
`PromptFormatter._parse_s1_1_response` (s1) and `parse_harmony_final` (harmony), applied in
`run_pipeline_step` to every step's output.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.registry import Registry


@dataclass(frozen=True)
class OutputParser:
    name: str
    doc: str
    parse: Callable[[str], str]


PARSERS: Registry[OutputParser] = Registry("parser")
DEFAULT = "none"


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        doc = (module.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        PARSERS.add(module.NAME, OutputParser(module.NAME, doc, module.parse))


_discover()


def parser_names() -> list[str]:
    return PARSERS.names()


def get_parser(name: str) -> OutputParser:
    """The parser registered as `name`; an unknown name raises "unknown parser 'x'; available: ..."."""
    return PARSERS.get(name)


def parsed_fields(field: str, text: str, parser: str) -> dict[str, Any]:
    """`{field: parsed}`, plus `{field}_raw: text` when the parser changed the text."""
    parsed = get_parser(parser).parse(text)
    return {field: parsed} if parsed == text else {field: parsed, f"{field}_raw": text}


def parsed_list(field: str, texts: list[str], parser: str) -> dict[str, Any]:
    """The same for a list of samples (`drafts`): `{field}_raw` holds all of them when any one changed."""
    fn = get_parser(parser).parse
    parsed = [fn(t) for t in texts]
    return {field: parsed} if parsed == list(texts) else {field: parsed, f"{field}_raw": list(texts)}
