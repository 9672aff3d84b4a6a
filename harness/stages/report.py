"""Kept for old imports: reporting lives in the harness.report package."""

from __future__ import annotations

from harness.report import (  # noqa: F401
    RENDERERS,
    VARIANT_ORDER,
    Cell,
    ComparisonTable,
    build_table,
    load_results,
    to_csv,
    to_html,
    to_json,
    to_markdown,
    to_rich,
)
