"""Analyses: measure why a method helps, not only how much. One module per analysis, run as cached stages.

A recipe turns them on with `analysis: [format, leakage, {name: verdicts, grader: paper}]`. Each one is a module
`harness/analysis/<name>.py` exposing
- `NAME: str`, `DOC: str` (one line),
- `NEEDS: tuple[str, ...]`: the stage kinds whose outputs it reads; the analysis stage takes every stage of those
  kinds in the recipe's graph as an input (keyed by stage name: "evaluate:base", "evaluate:cft:0", "critique"),
- optionally `OPTIONAL: tuple[str, ...]`: needed kinds it can do without (a recipe whose variants run no refine
  stage still gets the critique half of `leakage`); a needed kind the graph lacks otherwise is a recipe error,
  never extra (paid) work,
- optionally `VERSION: int` (default 1; part of the stage fingerprint: bump it when the numbers change),
- `class Settings(harness.recipe.schema.Strict)`: its recipe settings, every field with a docstring,
- `run(ctx, inputs, settings) -> {"tables": [{"title", "columns", "rows"}], "numbers": {"dotted.key": float},
  "notes": [str]}`, JSON-serializable.

Built-ins: format, leakage, verdicts (record-only: no request is sent) and uncertainty (teacher-forced forward
passes of the student). A $CGD_PLUGINS module may `register_analysis(module)` more.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.registry import UnknownName

_REGISTRY: dict[str, ModuleType] = {}
ATTRIBUTES = ("NAME", "DOC", "NEEDS", "Settings", "run")


def register_analysis(module: ModuleType) -> ModuleType:
    """Add an analysis module (plugins call this at import). A name registered twice is a bug, not an override."""
    missing = [a for a in ATTRIBUTES if not hasattr(module, a)]
    if missing:
        raise ValueError(f"analysis module {module.__name__} lacks {', '.join(missing)}")
    name = module.NAME
    if name in _REGISTRY and _REGISTRY[name] is not module:
        raise ValueError(f"analysis '{name}' registered twice")
    _REGISTRY[name] = module
    return module


def _plugins() -> None:
    from harness.variants.spec import load_plugins

    load_plugins()


def analysis_names() -> list[str]:
    _plugins()
    return sorted(_REGISTRY)


def get_analysis(name: str) -> ModuleType:
    _plugins()
    if name not in _REGISTRY:
        raise UnknownName(f"unknown analysis '{name}'; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def entry_parts(entry: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(name, settings) of one `analysis:` entry: a bare name, or {name: ..., <settings>}."""
    if isinstance(entry, str):
        return entry, {}
    settings = dict(entry)
    return str(settings.pop("name", "")), settings


def resolved(entries: list[str | dict[str, Any]]) -> list[tuple[ModuleType, Any]]:
    """(module, validated Settings) for each entry of a (validated) recipe's `analysis:` list."""
    out = []
    for entry in entries:
        name, raw = entry_parts(entry)
        module = get_analysis(name)
        out.append((module, module.Settings(**raw)))
    return out


def check_entry(entry: str | dict[str, Any]) -> str | dict[str, Any]:
    """One `analysis:` entry, checked: a registered name and settings its Settings accept (a pydantic error
    located at the entry, else)."""
    from pydantic import ValidationError
    from pydantic_core import PydanticCustomError

    def refuse(message: str) -> PydanticCustomError:
        return PydanticCustomError("analysis_entry", "{message}", {"message": message})

    if isinstance(entry, dict) and "name" not in entry:
        raise refuse("an analysis entry with settings needs `name:`")
    name, raw = entry_parts(entry)
    try:
        module = get_analysis(name)
    except UnknownName as exc:
        raise refuse(str(exc)) from None
    try:
        module.Settings(**raw)
    except ValidationError as exc:
        raise refuse("; ".join(f"{name}.{'.'.join(str(p) for p in err['loc'])}: {_message(err)}"
                               for err in exc.errors())) from None
    return entry


def _message(err: Any) -> str:
    """A pydantic error's message without its "Value error, " prefix (our own validators' messages)."""
    cause = (err.get("ctx") or {}).get("error")
    return str(cause) if isinstance(cause, ValueError) else err["msg"]


def duplicate_problems(entries: list[str | dict[str, Any]]) -> list[tuple[str, str]]:
    """(path, message) for an analysis listed twice (its stage would be built twice)."""
    names = [entry_parts(e)[0] for e in entries]
    return [("analysis", f"lists analysis '{n}' twice") for n in dict.fromkeys(names) if names.count(n) > 1]


def stage_params(module: ModuleType, settings: Any) -> dict[str, Any]:
    """The analysis stage's fingerprinted params: the analysis, its version and its settings."""
    return {"analysis": module.NAME, "version": getattr(module, "VERSION", 1),
            "settings": settings.model_dump(mode="json")}


def graph_inputs(module: ModuleType, stages: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """({input key: stage name} of every stage of the kinds the analysis needs, [needed kinds the graph lacks and
    the analysis cannot do without])."""
    inputs = {name: name for name, st in stages.items() if st.kind in module.NEEDS}
    present = {st.kind for st in stages.values()}
    optional = tuple(getattr(module, "OPTIONAL", ()))
    missing = [k for k in module.NEEDS if k not in present and k not in optional]
    return inputs, missing


def _builtin() -> None:
    from harness.analysis import format as format_analysis
    from harness.analysis import leakage, verdicts

    for module in (format_analysis, leakage, verdicts):
        register_analysis(module)
    # Written alongside this package; registered when its file is there.
    if (Path(__file__).parent / "uncertainty.py").is_file() and importlib.util.find_spec(
            "harness.analysis.uncertainty") is not None:
        from harness.analysis import uncertainty

        register_analysis(uncertainty)


_builtin()


def add_stages(graph: Any, store: Any, recipe: Any) -> None:
    """Add one `analysis:<name>` stage per entry of the recipe's `analysis:` list to a recipe graph, after every
    other stage; each takes as inputs the graph's stages of the kinds the analysis needs."""
    from harness.errors import HarnessError

    entries = list(getattr(recipe, "analysis", None) or [])
    if not entries:
        return
    from harness.recipe.loader import locate

    existing = dict(graph.stages)
    for i, (module, settings) in enumerate(resolved(entries)):
        inputs, missing = graph_inputs(module, existing)
        if missing:
            raise HarnessError(str(locate(recipe, f"analysis.{i}", f"analysis.{i}: '{module.NAME}' reads the "
                                          f"output of {', '.join(missing)} stages, which this recipe's variants "
                                          "do not run")))
        graph.add(store, f"analysis:{module.NAME}", "analysis", stage_params(module, settings), inputs)


def results_of(summary_stages: dict[str, Any], graph: Any) -> dict[str, Any]:
    """{analysis name: result} of a recipe graph's finished analysis stages (for run.json)."""
    from harness.stages.analysis import result_of

    out: dict[str, Any] = {}
    for name, stage in graph.stages.items():
        if stage.kind != "analysis" or (summary_stages.get(name) or {}).get("status") not in ("done", "cached"):
            continue
        found = result_of(stage.dir.read_records())
        if found is not None:
            out[stage.params["analysis"]] = found
    return out
