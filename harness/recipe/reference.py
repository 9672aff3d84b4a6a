"""Every recipe key with its type, default and docstring, walked from the typed schema (`cgd keys`)."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from harness.recipe.schema import Recipe


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    return str(annotation).replace("typing.", "")


def walk(model: type[BaseModel] = Recipe, prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) for every field, nested blocks after their parent key."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if field.default is not PydanticUndefined:
            default = repr(field.default)
        elif field.default_factory is not None:
            default = "(computed)"
        else:
            default = "required"
        yield key, _type_name(field.annotation), default, (field.description or "").strip()
        for sub in _models_in(field.annotation):
            yield from walk(sub, key + ".")
