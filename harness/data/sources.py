"""One reader per `data.source` kind: each yields (where, row) pairs and says what it read (a content hash).

`jsonl` (a local JSON-lines file, read line by line with FILE:LINE errors), `json` (a JSON array of objects, or an
object holding one such list, or JSON lines), `parquet`, `csv` (local files), and `hf`: anything
`datasets.load_dataset(path, name, split=..., revision=..., data_files=..., streaming=...)` reads: a hub id
(offline from the `datasets` cache), a local dataset folder, or a packaged builder (`parquet`, `json`, ...) with
`data_files`. `where` names a row in messages: "FILE:LINE" for jsonl, "FILE row N" (N from 1) otherwise.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError

Rows = Iterator[tuple[str, dict[str, Any]]]
LOCAL = ("jsonl", "json", "parquet", "csv")


@dataclass
class Source:
    """What a reader read: rows (an iterator, consumed once) and what identifies them."""

    rows: Rows
    info: dict[str, Any] = field(default_factory=dict)  # content hash, revision, dataset fingerprint: the manifest


def _jsonl(p: dict[str, Any]) -> Source:
    path = p["path"]

    def rows() -> Rows:
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise HarnessError(f"{path}:{lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
                if not isinstance(row, dict):
                    raise HarnessError(f"{path}:{lineno}:1: expected a JSON object per line, got "
                                       f"{type(row).__name__}")
                yield f"{path}:{lineno}", row

    return Source(rows())


def _numbered(path: str, items: list[Any]) -> Rows:
    for i, row in enumerate(items, 1):
        if not isinstance(row, dict):
            raise HarnessError(f"{path} row {i}: expected an object per row, got {type(row).__name__}")
        yield f"{path} row {i}", row


def _json(p: dict[str, Any]) -> Source:
    path = p["path"]
    with open(path, encoding="utf-8") as handle:
        raw = handle.read()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":  # JSON lines under a .json name
            raise HarnessError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
        return _jsonl(p)
    if isinstance(data, dict):  # {"data": [...]} or {"train": [...]}: the one list it holds
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise HarnessError(f"{path}: a JSON object with {len(lists)} lists; expected an array of rows")
        data = lists[0]
    if not isinstance(data, list):
        raise HarnessError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
    return Source(_numbered(path, data))


def _parquet(p: dict[str, Any]) -> Source:
    import pyarrow.parquet as pq

    path = p["path"]
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a file that is not parquet
        raise HarnessError(f"{path}: cannot read as parquet: {exc}") from None
    return Source(_numbered(path, table.to_pylist()))


def _csv(p: dict[str, Any]) -> Source:
    path = p["path"]

    def rows() -> Rows:
        with open(path, encoding="utf-8", newline="") as handle:
            for i, row in enumerate(csv.DictReader(handle), 1):
                yield f"{path} row {i}", dict(row)

    return Source(rows())


def load_hf(p: dict[str, Any]) -> Any:
    """The `datasets` object for a `source: hf` block (a Dataset, or an IterableDataset when streaming)."""
    import datasets

    kwargs = {k: p[k] for k in ("revision", "data_files") if p.get(k) is not None}
    try:
        return datasets.load_dataset(p["path"], p.get("name"), split=p.get("split") or "train",
                                     streaming=bool(p.get("streaming")), **kwargs)
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds (not found, offline, bad config)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"data.path '{p['path']}': datasets.load_dataset failed: {first[:300]}") from None


def hf_identity(p: dict[str, Any]) -> dict[str, Any]:
    """What identifies an hf source's content before reading it: the dataset's fingerprint (which `datasets` derives
    from the revision, the config and the data files) and its row count; streaming datasets have neither."""
    if p.get("streaming"):
        return {}
    ds = load_hf(p)
    return {"dataset_fingerprint": ds._fingerprint, "num_rows": ds.num_rows}


def _hf(p: dict[str, Any]) -> Source:
    ds = load_hf(p)
    info: dict[str, Any] = {"revision": p.get("revision")}
    if not p.get("streaming"):
        info["dataset_fingerprint"] = ds._fingerprint
    elif p.get("shuffle") is not None:
        ds = ds.shuffle(seed=p["shuffle"], buffer_size=10_000)
    label = p["path"] + (f"[{p['name']}]" if p.get("name") else "")

    def rows() -> Rows:
        for i, row in enumerate(ds, 1):
            yield f"{label} row {i}", dict(row)

    return Source(rows(), info)


READERS: dict[str, Callable[[dict[str, Any]], Source]] = {
    "jsonl": _jsonl, "json": _json, "parquet": _parquet, "csv": _csv, "hf": _hf}


def read_source(p: dict[str, Any]) -> Source:
    kind = p.get("source") or "jsonl"
    if kind not in READERS:
        raise HarnessError(f"unknown source '{kind}'; available: {', '.join(sorted(READERS))}")
    return READERS[kind](p)
