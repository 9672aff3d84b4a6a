"""Journal append cost at 100k rows against 1k rows, for the store's Journal and for the journal it replaced.

A stage appends each finished record to its fsynced journal (harness/store.py Journal). The journal it replaced
re-read the whole file on every append to look for a torn last line, so an append cost grew with the journal: a
100k-row teacher stage read about a gigabyte. The current one reads only the file's last byte. Both are run here
side by side on the same rows (about the size of a critique record), on the same disk:

    python bench/journal_append.py                 # 1,000 and 100,000 rows, 200 timed appends at each size
    python bench/journal_append.py --big 400000

Printed: the mean append cost at each size and the ratio big / small for each implementation (goal: <= 1.5x).
Not a test: timings depend on the disk and on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.store import Journal  # noqa: E402


class WholeFileJournal(Journal):
    """The journal as it was: every append first reads the whole file to find a torn tail."""

    def _truncate_torn_tail(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb+") as handle:
            content = handle.read()
            if content and not content.endswith(b"\n"):
                handle.truncate(content.rfind(b"\n") + 1)


def _row(i: int) -> dict:
    return {"id": f"{i:012x}", "status": "ok", "critique": "The draft's second step drops a carry. " * 8,
            "usage": {"input_tokens": 812, "output_tokens": 164}, "cost_usd": 0.0031}


def _fill(path: Path, rows: int) -> None:
    """Write `rows` journal lines in one go (the cost being measured is the next append, not the filling)."""
    with path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            handle.write(json.dumps(_row(i)) + "\n")
        handle.flush()
        os.fsync(handle.fileno())  # else the first timed fsync pays for writing the filler to disk


def mean_append_seconds(cls: type[Journal], folder: Path, rows: int, appends: int) -> float:
    path = folder / f"{cls.__name__}-{rows}.jsonl"
    _fill(path, rows)
    journal = cls(path)
    start = time.perf_counter()
    for i in range(appends):
        journal.append([_row(rows + i)])
    elapsed = (time.perf_counter() - start) / appends
    path.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None, help="folder on the disk to measure (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        print(f"load average {os.getloadavg()[0]:.2f}; {args.appends} fsynced appends of one row at each size")
        print(f"{'journal':<16} {args.small:>9,} rows {args.big:>9,} rows   big/small")
        for cls in (Journal, WholeFileJournal):
            small = mean_append_seconds(cls, folder, args.small, args.appends)
            big = mean_append_seconds(cls, folder, args.big, args.appends)
            label = "harness" if cls is Journal else "whole-file read"
            print(f"{label:<16} {small * 1e3:>11.3f} ms {big * 1e3:>11.3f} ms   {big / small:>8.2f}x")


if __name__ == "__main__":
    main()
