"""Load recipes: YAML with positions (ruamel.yaml), `extends:` inheritance, `--set` overrides, matrix expansion.

Every problem becomes `FILE:LINE:COL: message`, pointing at the key (unknown keys) or the value (bad values) in
whichever file the value came from: the recipe itself, a recipe it extends, or a `--set` override.
"""

from __future__ import annotations

import copy
import difflib
import io
import itertools
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from harness.dicts import deep_merge
from harness.errors import Problem, RecipeError
from harness.recipe.schema import CrossCheckError, Recipe

Path_ = tuple[str | int, ...]


class Source:
    """One layer of a recipe (a file, or the --set overrides) and where each of its values stands."""

    def __init__(self, name: str, data: Any, positions: dict[Path_, tuple[int, int, int, int]]) -> None:
        self.name = name
        self.data = data
        self.positions = positions  # path -> (key line, key col, value line, value col), 1-based

    def find(self, path: Path_, *, key: bool) -> Problem | None:
        for depth in range(len(path), -1, -1):
            pos = self.positions.get(path[:depth])
            if pos is not None:
                # A missing or unknown child is reported at its parent's key; a bad value at the value itself.
                exact = depth == len(path)
                line, col = (pos[0], pos[1]) if key or not exact else (pos[2], pos[3])
                return Problem(self.name, line, col, "")
        return None


def _positions(node: Any, prefix: Path_ = ()) -> dict[Path_, tuple[int, int, int, int]]:
    out: dict[Path_, tuple[int, int, int, int]] = {}
    if isinstance(node, CommentedMap):
        for k in node:
            kl, kc = node.lc.key(k)
            vl, vc = node.lc.value(k)
            out[(*prefix, str(k))] = (kl + 1, kc + 1, vl + 1, vc + 1)
            out |= _positions(node[k], (*prefix, str(k)))
    elif isinstance(node, CommentedSeq):
        for i, item in enumerate(node):
            line, col = node.lc.item(i)
            out[(*prefix, i)] = (line + 1, col + 1, line + 1, col + 1)
            out |= _positions(item, (*prefix, i))
    return out


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def read_yaml(path: Path, display: str) -> Source:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError([Problem(display, 1, 1, f"cannot read recipe: {exc.strerror or exc}")]) from None
    try:
        data = YAML(typ="rt").load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise RecipeError([Problem(display, line, col, f"invalid YAML: {exc.problem or exc}")]) from None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise RecipeError([Problem(display, 1, 1, "a recipe must be a mapping of keys to values")])
    return Source(display, data, _positions(data))


def _layers(path: Path, display: str, seen: tuple[Path, ...] = ()) -> list[Source]:
    """The recipe and the recipes it extends, most basic first."""
    src = read_yaml(path, display)
    parent = src.data.get("extends")
    if not parent:
        return [src]
    parent_path = (path.parent / str(parent)).resolve()
    if parent_path in seen or parent_path == path.resolve():
        line, col = src.positions[("extends",)][2:]
        raise RecipeError([Problem(display, line, col, f"extends: '{parent}' extends itself in a cycle")])
    if not parent_path.is_file():
        line, col = src.positions[("extends",)][2:]
        message = f"extends: no such recipe '{parent}' (looked at {parent_path})"
        raise RecipeError([Problem(display, line, col, message)])
    return [*_layers(parent_path, str(parent_path), (*seen, path.resolve())), src]


def parse_override(text: str, index: int) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value parsed as a YAML scalar or flow collection)."""
    where = f"--set {text}"
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise RecipeError([Problem(where, index, 1, "expected KEY=VALUE, e.g. train.learning_rate=5e-6")])
    key, raw = text.split("=", 1)
    try:
        value = YAML(typ="safe").load(raw) if raw.strip() else ""
    except MarkedYAMLError as exc:
        raise RecipeError([Problem(where, index, len(key) + 2, f"invalid value: {exc.problem}")]) from None
    return key.strip().split("."), value


def _set_path(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value


class Locator:
    """Maps a dotted path of the merged recipe to the layer that set it (the top-most layer wins)."""

    def __init__(self, layers: list[Source], matrix_keys: list[str] | None = None) -> None:
        self.layers = layers
        self.matrix_keys = matrix_keys or []

    def at(self, path: Path_, message: str, *, key: bool = False) -> Problem:
        dotted = _dotted(path)
        for mkey in self.matrix_keys:  # a value a matrix sets is located at its matrix entry
            if dotted == mkey or dotted.startswith(mkey + "."):
                path = ("matrix", mkey)
                break
        for depth in range(len(path), 0, -1):
            for layer in reversed(self.layers):
                if path[:depth] in layer.positions:
                    found = layer.find(path, key=key)
                    assert found is not None
                    return Problem(found.file, found.line, found.col, message)
        top = self.layers[-1] if self.layers[-1].positions or len(self.layers) == 1 else self.layers[-2]
        return Problem(top.name, 1, 1, message)


def _fields_of(model: type[BaseModel], path: Path_) -> list[str]:
    """The allowed keys at a path of the schema (for 'unknown key' messages)."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def validation_problems(exc: ValidationError, locate: Locator) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc: Path_ = tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _fields_of(Recipe, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            where = f" in {_dotted(loc[:-1])}" if loc[:-1] else ""
            problems.append(locate.at(loc, f"unknown key '{loc[-1]}'{where}{hint} (allowed: {', '.join(allowed)})",
                                      key=True))
        elif kind == "missing":
            problems.append(locate.at(loc, f"missing required field '{_dotted(loc)}'", key=True))
        elif kind == "value_error" and isinstance(err.get("ctx", {}).get("error"), CrossCheckError):
            for path, message in err["ctx"]["error"].problems:
                problems.append(locate.at(tuple(path.split(".")), f"{path}: {message}"))
        else:
            got = err.get("input")
            shown = f" (got {got!r})" if not isinstance(got, dict | list) else ""
            problems.append(locate.at(loc, f"{_dotted(loc)}: {err['msg']}{shown}"))
    return problems


def expand_matrix(data: dict[str, Any], locate: Locator) -> list[tuple[dict[str, Any], str]]:
    """The cartesian product of `matrix:`; each member named `<name>__<leaf>=<value>...`."""
    matrix = data.get("matrix")
    if not matrix:
        return [(data, data.get("name", ""))]
    if not isinstance(matrix, dict):
        raise RecipeError([locate.at(("matrix",), "matrix: must map dotted keys to lists of values")])
    problems = []
    for key, values in matrix.items():
        if not isinstance(values, list) or not values:
            problems.append(locate.at(("matrix", key), f"matrix.{key}: must be a non-empty list of values"))
        elif key.split(".")[0] in ("name", "matrix", "extends"):
            problems.append(locate.at(("matrix", key), f"matrix.{key}: this key cannot vary"))
    if problems:
        raise RecipeError(problems)
    members = []
    keys = list(matrix)
    for combo in itertools.product(*(matrix[k] for k in keys)):
        member = copy.deepcopy({k: v for k, v in data.items() if k != "matrix"})
        suffix = []
        for key, value in zip(keys, combo, strict=True):
            _set_path(member, key.split("."), value)
            shown = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            suffix.append(f"{key.split('.')[-1]}={shown}")
        members.append((member, f"{data.get('name', '')}__{'__'.join(suffix)}"))
    return members


def load_recipes(path: Path | str, overrides: list[str] | None = None) -> list[Recipe]:
    """One Recipe, or one per matrix member. Raises RecipeError listing every problem found."""
    from harness.recipe.semantics import semantic_problems

    path = Path(path)
    layers = _layers(path, str(path))
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, _plain(layer.data))
    merged.pop("extends", None)
    if overrides:
        positions: dict[Path_, tuple[int, int, int, int]] = {}
        for i, text in enumerate(overrides, 1):
            keys, value = parse_override(text, i)
            _set_path(merged, keys, value)
            positions[tuple(keys)] = (i, 1, i, len(".".join(keys)) + 2)
        layers.append(Source("--set", merged, positions))
    matrix = merged.get("matrix")
    locate = Locator(layers, list(matrix) if isinstance(matrix, dict) else None)
    recipes, problems = [], []
    for member, name in expand_matrix(merged, locate):
        try:
            recipe = Recipe.model_validate({**member, "matrix": merged.get("matrix")})
        except ValidationError as exc:
            problems += validation_problems(exc, locate)
            continue
        found = [locate.at(tuple(p.split(".")), m) for p, m in semantic_problems(recipe)]
        if found:
            problems += found
            continue
        if merged.get("matrix"):
            recipe = recipe.model_copy(update={"name": name, "matrix": None})
        recipe._source_path = str(path.resolve())
        recipes.append(recipe)
    if problems:
        unique = list(dict.fromkeys(problems))  # a matrix repeats the same problem per member
        raise RecipeError(sorted(unique, key=lambda p: (p.file, p.line, p.col)))
    return recipes


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json")
