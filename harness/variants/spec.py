"""What a training variant is: a small declared object, registered by name.

A variant says which upstream work it trains on (`source`, a stage of the graph such as `refine`), how it turns
that stage's records into training rows, which record fields it reads, whether it is a baseline, where it sorts in
tables and which recipe settings change its dataset (they go into its export stage's fingerprint). The pipeline,
the export stage, the reports and `cgd plan` all read this registry, so a new method is one module and its test.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError
from harness.prompts import PromptStyle

Record = dict[str, Any]
RowBuilder = Callable[[list[Record], PromptStyle, dict[str, Any]], list[dict[str, Any]]]
ParamsOf = Callable[[Any], dict[str, Any]]  # recipe -> extra export params (fingerprinted)
Describer = Callable[[list[Record], dict[str, Any], list[dict[str, Any]]], tuple[dict[str, Any], str | None]]

PLUGINS_ENV = "CGD_PLUGINS"  # comma-separated modules imported before the registry is read (they register more)


@dataclass(frozen=True)
class VariantSpec:
    name: str
    """The name recipes list under `variants:`."""
    doc: str
    """One line: the training example, user turn -> trained assistant turn (README's variant table)."""
    order: int
    """Position in tables (lower first)."""
    baseline: bool
    """Compared against as a baseline (CGD's rows show the delta to the best baseline)."""
    source: str | None = None
    """The graph stage whose records the rows are built from (data, critique, refine, answer, ...); None: not
    trained (the base model)."""
    build_rows: RowBuilder | None = None
    """(source records, prompt style, export params) -> Axolotl chat rows."""
    reads: tuple[str, ...] = ()
    """Record fields `build_rows` reads; the pipeline checks that the source's upstream writes them."""
    export_params: ParamsOf | None = None
    """Recipe settings that change this variant's dataset, added to its export stage's params."""
    verified_field: str | None = None
    """The field whose `<field>_correct` grade `critique.keep_unverified: drop` filters on."""
    dropped: str = "filtered out"
    """How the report names records the variant's own filter left out (beyond failures and verification)."""
    describe: Describer | None = None
    """(source records, export params, rows) -> (facts for the export stage's info, a log line or None); raises
    ValueError saying why, when the rows came out empty for a reason of the variant's own."""

    @property
    def trains(self) -> bool:
        return self.source is not None


_REGISTRY: dict[str, VariantSpec] = {}
_plugins_loaded: set[str] = set()


def register_variant(spec: VariantSpec) -> VariantSpec:
    """Add a variant (plugins call this at import). A name registered twice is a bug, not an override."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"variant '{spec.name}' registered twice")
    if spec.trains and spec.build_rows is None:
        raise ValueError(f"variant '{spec.name}' trains on '{spec.source}' but has no build_rows")
    _REGISTRY[spec.name] = spec
    return spec


def load_plugins() -> None:
    """Import the modules named in $CGD_PLUGINS once (each registers its variants, stages or back-ends)."""
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
        if name in _plugins_loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise HarnessError(f"${PLUGINS_ENV}: cannot import plugin module '{name}': {exc}") from None
        _plugins_loaded.add(name)


def ordered() -> list[VariantSpec]:
    load_plugins()
    return sorted(_REGISTRY.values(), key=lambda s: (s.order, s.name))


def variant_names() -> list[str]:
    return [s.name for s in ordered()]


def get_variant(name: str) -> VariantSpec:
    load_plugins()
    if name not in _REGISTRY:
        raise HarnessError(f"unknown variant '{name}'; available: {', '.join(variant_names())}")
    return _REGISTRY[name]


def baselines() -> tuple[str, ...]:
    return tuple(s.name for s in ordered() if s.baseline)
