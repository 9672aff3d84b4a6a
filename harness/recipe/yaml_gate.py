"""The input gate for YAML: refuse hostile or broken recipe text before anything builds Python objects from it.

`read_recipe_text` reads a recipe file (absent, a folder, too large, not UTF-8, binary: refused) and `check_events`
walks ruamel's event stream once (a state machine, no recursion, no alias expansion) and refuses what would make
loading slow, deep, huge or unsafe:

- nesting deeper than MAX_DEPTH (Python's recursion limit would turn it into a traceback),
- any tag the recipe schema does not define (`!!python/object`, `!custom`, `!!binary`, ... on a scalar, a
  sequence or a mapping); only the core tags `!!str !!int !!float !!bool !!null !!map !!seq` pass,
- more than MAX_NODES nodes once aliases are expanded (a "billion laughs" alias bomb is a few lines long),
- an alias to an anchor that is not defined yet, or to the node it stands in,
- a scalar larger than MAX_VALUE_CHARS.

Every refusal is a RecipeError with the file, line and column of the offending node.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    NodeEvent,
    ScalarEvent,
)

from harness.errors import Problem, RecipeError

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_VALUE_CHARS = 256 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000

CORE = "tag:yaml.org,2002:"
ALLOWED_TAGS = frozenset(CORE + t for t in ("str", "int", "float", "bool", "null", "map", "seq")) | {"!"}

# C0 controls except tab, newline and carriage return, DEL and the C1 controls: binary data, not a recipe.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


def _line_col(data: bytes | str, pos: int) -> tuple[int, int]:
    nl = "\n" if isinstance(data, str) else b"\n"
    line = data.count(nl, 0, pos) + 1  # type: ignore[arg-type]
    col = pos - (data.rfind(nl, 0, pos) + 1) + 1  # type: ignore[arg-type]
    return line, col


def read_recipe_text(path: Path, display: str) -> str:
    """The text of a recipe file, or a RecipeError saying why it is not one."""
    try:
        if not path.exists():
            raise RecipeError([Problem(display, 1, 1, "no such recipe file")])
        if path.is_dir():
            raise RecipeError([Problem(display, 1, 1, "is a folder, not a recipe file")])
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RecipeError([Problem(display, 1, 1, f"cannot read recipe: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise RecipeError([Problem(display, 1, 1, f"recipe file is larger than {_size(MAX_FILE_BYTES)}; "
                                                  "a recipe is a few KB of YAML")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, col = _line_col(raw, exc.start)
        raise RecipeError([Problem(display, line, col, f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                                                       "a recipe is a YAML text file")]) from None
    check_text(text, display)
    return text


def check_text(text: str, display: str, *, line_offset: int = 0) -> None:
    """Refuse control characters (binary data) with their position."""
    bad = _CONTROL.search(text)
    if bad:
        line, col = _line_col(text, bad.start())
        raise RecipeError([Problem(display, line + line_offset, col,
                                   f"control character U+{ord(bad.group()):04X}: binary data, not YAML text")])


def _problem(display: str, mark: Any, message: str) -> RecipeError:
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return RecipeError([Problem(display, line, col, message)])


def yaml_error(exc: Exception, display: str) -> RecipeError:
    """Any ruamel error as a located RecipeError."""
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return _problem(display, mark, f"invalid YAML: {exc.problem or exc.context or exc}")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _problem(display, None, f"invalid YAML: {first}")


def check_events(text: str, display: str) -> None:
    """One pass over the YAML events of `text`; raises RecipeError at the first node the gate refuses."""
    depth = 0
    nodes = 0
    sizes: dict[Any, int] = {}  # anchor -> expanded node count of the node it names
    open_: list[list[Any]] = []  # per open collection: [anchor, node count so far]
    try:
        for event in YAML(typ="rt").parse(io.StringIO(text)):
            if not isinstance(event, NodeEvent | CollectionEndEvent):
                continue
            mark = event.start_mark
            if isinstance(event, AliasEvent):
                if event.anchor not in sizes:
                    inside = any(a == event.anchor for a, _ in open_)
                    why = "refers to the node it stands in" if inside else "refers to no anchor defined before it"
                    raise _problem(display, mark, f"alias *{event.anchor} {why}")
                count = sizes[event.anchor]
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
                anchor, count = open_.pop()
                if anchor is not None:
                    sizes[anchor] = count
                if open_:
                    open_[-1][1] += count  # its nodes are already in `nodes`
                continue
            else:
                tag = event.tag
                if tag is not None and tag not in ALLOWED_TAGS:
                    shown = "!!" + tag[len(CORE):] if tag.startswith(CORE) else tag
                    raise _problem(display, mark, f"YAML tag '{shown}' is not allowed in a recipe "
                                                  "(recipes hold plain values, lists and mappings only)")
                if isinstance(event, ScalarEvent):
                    if len(event.value) > MAX_VALUE_CHARS:
                        raise _problem(display, mark, f"value of {len(event.value):,} characters is larger than "
                                                      f"the limit of {MAX_VALUE_CHARS:,}")
                    count = 1
                    if event.anchor is not None:
                        sizes[event.anchor] = 1
                elif isinstance(event, CollectionStartEvent):
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise _problem(display, mark, f"nested more than {MAX_DEPTH} levels deep")
                    open_.append([event.anchor, 1])
                    nodes += 1
                    if nodes > MAX_NODES:
                        raise _problem(display, mark, f"more than {MAX_NODES:,} values")
                    continue
                else:  # pragma: no cover - every node event is an alias, a scalar or a collection start
                    continue
            nodes += count
            if open_:
                open_[-1][1] += count
            if nodes > MAX_NODES:
                what = " once aliases are expanded (an alias bomb?)" if isinstance(event, AliasEvent) else ""
                raise _problem(display, mark, f"more than {MAX_NODES:,} values{what}")
    except RecipeError:
        raise
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise yaml_error(exc, display) from None
