"""Reports: the comparison table of one run, the pivot of an ablation matrix, published reference rows, paired
bootstrap intervals, an HTML report with plots, and the leaderboard of every run in a runs folder.

Everything here reads only what runs wrote (results.jsonl, run.json, per-sample logs, train.log), so a report is
cheap to redo and never re-scores anything.
"""

from __future__ import annotations

from harness.report.html import to_html
from harness.report.render import table_dict, to_csv, to_json, to_markdown, to_rich
from harness.report.runs import load_results, load_runs
from harness.report.table import VARIANT_ORDER, Cell, ComparisonTable, Row, RunData, build_table

RENDERERS = {"md": to_markdown, "html": to_html, "csv": to_csv, "json": to_json}

__all__ = ["RENDERERS", "VARIANT_ORDER", "Cell", "ComparisonTable", "Row", "RunData", "build_table", "load_results",
           "load_runs", "table_dict", "to_csv", "to_html", "to_json", "to_markdown", "to_rich"]
