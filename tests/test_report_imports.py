"""No two modules of harness/report import each other, directly or round a circle, at top level or inside
functions: the data classes live in harness/report/model.py and everything else builds on them."""

from __future__ import annotations

import ast
from pathlib import Path

import harness.report

PACKAGE = "harness.report"
FOLDER = Path(harness.report.__file__).parent


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere in its body (the package __init__ is the facade)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else f"{PACKAGE}.{node.module}"
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        ours = [n.removeprefix(f"{PACKAGE}.") for n in names if n.startswith(f"{PACKAGE}.")]  # not stdlib `html`
        found |= {n for n in ours if n in modules}
    return found


def _graph() -> dict[str, set[str]]:
    modules = {p.stem for p in FOLDER.glob("*.py") if p.stem != "__init__"}
    return {m: _imports(FOLDER / f"{m}.py", modules) - {m} for m in modules}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_the_report_package_has_no_import_circle():
    graph = _graph()
    assert graph["table"] and "model" in graph["table"]  # the walk sees real edges
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_walk_finds_a_circle_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _cycle({"a": {"b"}, "b": set()}) is None
