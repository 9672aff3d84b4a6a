"""Load recipes: YAML with positions (ruamel.yaml), `extends:` inheritance, `--set` overrides, matrix expansion.

Every problem becomes `FILE:LINE:COL: message`, pointing at the key (unknown keys) or the value (bad values) in
whichever file the value came from: the recipe itself, a recipe it extends, or a `--set` override (`--set:N:COL`,
N the override's place on the command line).

Each loaded Recipe keeps these positions: `locate(recipe, "train.learning_rate", message)` (or `locator_of(recipe)`)
places a problem found later (Axolotl's validation, the machine checks) where its value was written, `--set`
included, without reading any file again.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import io
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from harness.dicts import deep_merge
from harness.errors import Problem, RecipeError
from harness.paths import missing_recipe_message, resolve_recipe, shipped_recipe
from harness.recipe.schema import CrossCheckError, Recipe
from harness.recipe.yaml_gate import check_events, check_text, read_recipe_text, yaml_error

Path_ = tuple[str | int, ...]


Position = tuple[int, int, int, int]  # key line, key col, value line, value col; 1-based

OVERRIDES = "--set"  # the layer name of the command line's overrides: problems read `--set:N:COL: message`


class Source:
    """One layer of a recipe (a file, or the --set overrides) and where each of its values stands."""

    def __init__(self, name: str, data: Any, positions: dict[Path_, Position], *, replaces: bool = False) -> None:
        self.name = name
        self.data = data
        self.positions = positions  # path -> (key line, key col, value line, value col), 1-based
        self.replaces = replaces  # True for --set: a value set there replaces everything below it

    def positions_only(self) -> Source:
        """The same layer without its data (what locating needs; small to keep, copy and pickle)."""
        return Source(self.name, None, dict(self.positions), replaces=self.replaces)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Source) and (self.name, self.positions, self.replaces) == (
            other.name, other.positions, other.replaces)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Source({self.name!r}, {len(self.positions)} positions)"

    def find(self, path: Path_, *, key: bool) -> Problem | None:
        for depth in range(len(path), -1, -1):
            pos = self.positions.get(path[:depth])
            if pos is not None:
                # A missing or unknown child is reported at its parent's key; a bad value at the value itself (in
                # a --set, a bad value inside a flow mapping at that mapping: it has no positions of its own).
                exact = depth == len(path)
                line, col = (pos[0], pos[1]) if key or not (exact or self.replaces) else (pos[2], pos[3])
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
    text = read_recipe_text(path, display)  # absent, a folder, too large, not UTF-8, binary: refused
    check_events(text, display)  # depth, tags, alias expansion, value size: refused before anything is built
    try:
        data = YAML(typ="rt").load(io.StringIO(text))
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise yaml_error(exc, display) from None
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
    if not parent_path.is_file() and (shipped := shipped_recipe(str(parent))) is not None:
        parent_path = shipped.resolve()  # a working-folder recipe may extend a shipped one by name
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
    where = f"--set {text if len(text) <= 80 else text[:60] + '...'}"  # a hostile value is not echoed whole
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise RecipeError([Problem(where, index, 1, "expected KEY=VALUE, e.g. train.learning_rate=5e-6")])
    key, raw = text.split("=", 1)
    try:
        check_text(raw, where)
        check_events(raw, where)
    except RecipeError as exc:
        raise RecipeError([Problem(where, index, len(key) + 2, exc.problems[0].message)]) from None
    try:
        value = YAML(typ="safe").load(raw) if raw.strip() else ""
    except MarkedYAMLError as exc:
        raise RecipeError([Problem(where, index, len(key) + 2, f"invalid value: {exc.problem}")]) from None
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise RecipeError([Problem(where, index, len(key) + 2, yaml_error(exc, where).problems[0].message)]) from None
    return key.strip().split("."), value


def _set_path(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value


class Locator:
    """Maps a dotted path of the merged recipe to the layer that set it: a `--set` that set the path or one of its
    parents wins (it replaced everything below), then the deepest match, the top-most file first."""

    def __init__(self, layers: list[Source], matrix_keys: list[str] | None = None) -> None:
        self.layers = layers
        self.matrix_keys = matrix_keys or []

    def at(self, path: Path_, message: str, *, key: bool = False) -> Problem:
        """The problem `message` at `path`: at the value (a bad value), or at the key (`key=True`: an unknown or
        missing key); a path no layer wrote (a default) at the recipe file's first line."""
        dotted = _dotted(path)
        for mkey in self.matrix_keys:  # a value a matrix sets is located at its matrix entry
            if dotted == mkey or dotted.startswith(mkey + "."):
                path = ("matrix", mkey)
                break
        for layer in reversed(self.layers):
            if layer.replaces and any(path[:d] in layer.positions for d in range(len(path), 0, -1)):
                found = layer.find(path, key=key)
                assert found is not None
                return Problem(found.file, found.line, found.col, message)
        for depth in range(len(path), 0, -1):
            for layer in reversed(self.layers):
                if path[:depth] in layer.positions:
                    found = layer.find(path, key=key)
                    assert found is not None
                    return Problem(found.file, found.line, found.col, message)
        files = [layer for layer in self.layers if not layer.replaces] or self.layers
        return Problem(files[-1].name if files else "<recipe>", 1, 1, message)

    def locate(self, key: str | Path_, message: str = "", *, at_key: bool = False) -> Problem:
        """`at` for a dotted key (`"train.axolotl.optimizer"`) or a path tuple."""
        return self.at(_as_path(key), message, key=at_key)

    def origin(self, key: str | Path_) -> tuple[str, int, int]:
        """(file or `--set`, line, col) of the value at `key` (line is the override's place for a `--set`)."""
        found = self.locate(key)
        return found.file, found.line, found.col

    def positions_only(self) -> Locator:
        return Locator([layer.positions_only() for layer in self.layers], list(self.matrix_keys))

    def __eq__(self, other: object) -> bool:  # recipes compare their private attributes: same origins, equal
        return isinstance(other, Locator) and (self.layers, self.matrix_keys) == (other.layers, other.matrix_keys)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Locator({[layer.name for layer in self.layers]})"


def _as_path(key: str | Path_) -> Path_:
    if isinstance(key, str):
        return tuple(int(p) if p.isdigit() else p for p in key.split(".")) if key else ()
    return tuple(key)


_LOCATOR = "_locator"  # the key in the recipe's pydantic private attributes (beside _source_path)


def locator_of(recipe: Any) -> Locator | None:
    """The positions `load_recipes` kept for this recipe (files, `extends:` layers, `--set`); None for a recipe
    built another way. Kept across `model_copy` and pickling."""
    private = getattr(recipe, "__pydantic_private__", None) or {}
    found = private.get(_LOCATOR)
    return found if isinstance(found, Locator) else None


def _keep_locator(recipe: Recipe, locator: Locator) -> None:
    private = recipe.__pydantic_private__
    if private is None:  # a schema without private attributes: pydantic leaves the slot empty
        object.__setattr__(recipe, "__pydantic_private__", {})
        private = recipe.__pydantic_private__
    assert private is not None
    private[_LOCATOR] = locator


def file_locator(path: Path | str, display: str | None = None) -> Locator:
    """The positions of a recipe file and the files it extends, read from disk (no `--set`): for a recipe that
    `load_recipes` did not build."""
    path = Path(path)
    layers = _layers(path, display or str(path))
    matrix_keys: list[str] = []
    for layer in layers:
        matrix = layer.data.get("matrix")
        if isinstance(matrix, dict):
            matrix_keys += [str(k) for k in matrix if str(k) not in matrix_keys]
    return Locator([layer.positions_only() for layer in layers], matrix_keys)


def _display(path: Path) -> str:
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def locate(recipe: Any, key: str | Path_, message: str, *, at_key: bool = False) -> Problem:
    """`FILE:LINE:COL: message` for the value at `key` (dotted or a path) of a loaded recipe: in the file (or the
    recipe it extends) that wrote it, or at `--set:N:COL` when the N-th override set it. A recipe without kept
    positions is read from its source file; one without a file is `<recipe>:1:1`."""
    locator = locator_of(recipe)
    if locator is None:
        source = getattr(recipe, "source_path", None)
        if not source or not Path(source).is_file():
            return Problem("<recipe>", 1, 1, message)
        locator = file_locator(source, _display(Path(source)))
    return locator.locate(key, message, at_key=at_key)


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
        for key, value in zip(keys, combo, strict=True):
            _set_path(member, key.split("."), value)
        members.append((member, member_name(str(data.get("name", "")), keys, combo)))
    names = [n for _, n in members]
    if len(set(names)) < len(names):  # values whose text is the same (1 and "1"): the exact values' hash decides
        members = [(m, f"{n}-{_short_hash(combo)}") for (m, n), combo in
                   zip(members, itertools.product(*(matrix[k] for k in keys)), strict=True)]
    return members


SAFE_VALUE = re.compile(r"[A-Za-z0-9.=,+-]+(?:_[A-Za-z0-9.=,+-]+)*")  # no '/', no '__' (the name separator)
MAX_VALUE_SLUG = 48
MAX_NAME = 160  # a run folder's name; file systems allow 255 bytes


def _short_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _value_slug(value: Any) -> str:
    """A value as a safe piece of a folder name: itself when already safe, else a slug of it and a short hash of
    the exact value (two values that slug the same stay distinct)."""
    shown = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    if SAFE_VALUE.fullmatch(shown) and ".." not in shown and len(shown) <= MAX_VALUE_SLUG:
        return shown
    slug = re.sub(r"[^A-Za-z0-9.=,+-]+", "_", shown)
    slug = re.sub(r"\.{2,}", ".", slug).strip("._")[:MAX_VALUE_SLUG].strip("._")
    return f"{slug}-{_short_hash(value)}" if slug else _short_hash(value)


def member_name(base: str, keys: list[str], combo: tuple[Any, ...]) -> str:
    """`<name>__<leaf>=<value>...`, a single safe folder name (never a path separator or `..`): values that are
    not safe as they are become a slug plus a short hash of the exact value; a long name is cut and hashed."""
    parts = [f"{_value_slug(k.split('.')[-1])}={_value_slug(v)}" for k, v in zip(keys, combo, strict=True)]
    name = f"{base}__{'__'.join(parts)}"
    if len(name) > MAX_NAME:
        name = f"{name[:MAX_NAME - 9].rstrip('._')}-{_short_hash([keys, list(combo)])}"
    return name


def load_recipes(path: Path | str, overrides: list[str] | None = None) -> list[Recipe]:
    """One Recipe, or one per matrix member. Raises RecipeError listing every problem found."""
    from harness.recipe.semantics import semantic_problems

    path = resolve_recipe(path)  # the working folder's file, else the shipped recipe of that name
    if not path.exists():
        raise RecipeError([Problem(str(path), 1, 1, missing_recipe_message(path))])
    layers = _layers(path, str(path))
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, _plain(layer.data))
    merged.pop("extends", None)
    if overrides:
        positions: dict[Path_, Position] = {}
        for i, text in enumerate(overrides, 1):
            keys, value = parse_override(text, i)
            _set_path(merged, keys, value)
            path_ = tuple(keys)
            # This override replaced whatever earlier ones set at or below its key.
            positions = {p: pos for p, pos in positions.items() if p[:len(path_)] != path_}
            positions[path_] = (i, 1, i, text.index("=") + 2)  # the key at column 1, the value after '='
        layers.append(Source(OVERRIDES, merged, positions, replaces=True))
    matrix = merged.get("matrix")
    locator = Locator(layers, list(matrix) if isinstance(matrix, dict) else None)
    kept = locator.positions_only()  # what each recipe keeps
    recipes, problems = [], []
    for member, name in expand_matrix(merged, locator):
        try:
            recipe = Recipe.model_validate({**member, "matrix": merged.get("matrix")})
        except ValidationError as exc:
            problems += validation_problems(exc, locator)
            continue
        found = [locator.at(tuple(p.split(".")), m) for p, m in semantic_problems(recipe)]
        if found:
            problems += found
            continue
        if merged.get("matrix"):
            recipe = recipe.model_copy(update={"name": name, "matrix": None})
        recipe._source_path = str(path.resolve())
        _keep_locator(recipe, kept)
        recipes.append(recipe)
    if problems:
        unique = list(dict.fromkeys(problems))  # a matrix repeats the same problem per member
        raise RecipeError(sorted(unique, key=lambda p: (p.file, p.line, p.col)))
    return recipes


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json")
