"""Nested-dict helpers shared by recipes (`extends:`), prompt styles (`extends:`) and Axolotl passthrough keys."""

from __future__ import annotations

import copy
from typing import Any


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` wins; nested dicts merge key by key, everything else (lists included) is replaced by a copy."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
