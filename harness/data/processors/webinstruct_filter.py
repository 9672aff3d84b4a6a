"""The official CGD code's `webinstruct_filter` (000_WebInstructSub_filter_*.jsonl): a filtered WebInstructSub, read
with the same processor (strip "Question: ", cut at " Answer:"). Fields as in `webinstruct_sub`."""

from __future__ import annotations

from harness.data.processors.webinstruct_sub import FIELDS, process

NAME = "webinstruct_filter"
SOURCE = "TIGER-Lab/WebInstructSub (filtered)"
LICENSE = "apache-2.0"  # the source dataset's licence (its Hub card), shown in dataset cards
__all__ = ["FIELDS", "NAME", "SOURCE", "process"]
