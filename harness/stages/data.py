"""Load prompts and reference answers; give each row a stable id (its own id field, or a hash of the row)."""

from __future__ import annotations

import codecs
import hashlib
import random
from pathlib import Path
from typing import Any

from rich.markup import escape

from harness.data.processors import processor_fn
from harness.data.sources import LOCAL, read_source
from harness.errors import HarnessError
from harness.stages.base import StageContext, StageInput, StageOutput
from harness.store import canonical_json, fingerprint

KIND = "data"
VERSION = 1
READS: tuple[str, ...] = ()
WRITES = ("id", "prompt", "reference")


CHUNK = 1 << 20
NEWLINE = b"\n"


def check_data_file(path: Path, kind: str = "jsonl") -> None:
    """Refuse a data file that cannot be read as UTF-8 JSON lines: absent, a folder, unreadable, or not UTF-8.

    `kind` (data.source): a parquet file is binary, so only its presence is checked; json and csv are text.

    Raises HarnessError("PATH: reason"), or "PATH:LINE: not UTF-8 ..." naming the first line that is not.
    Reads the file once in 1 MiB chunks (bounded memory whatever its size)."""
    path = Path(path)
    try:
        if not path.exists():
            raise HarnessError(f"{path}: no such data file")
        if path.is_dir():
            what = "a JSON-lines file" if kind == "jsonl" else f"a {kind} file; a dataset folder is source: hf"
            raise HarnessError(f"{path}: is a folder, not a data file (data.path names {what})")
        if not path.is_file():
            raise HarnessError(f"{path}: not a regular file")
        if kind == "parquet":
            return
        decoder = codecs.getincrementaldecoder("utf-8")()
        line, offset = 1, 0  # line number at the start of the current chunk, bytes read before it
        with path.open("rb") as handle:
            while True:
                chunk = handle.read(CHUNK)
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as exc:
                    # exc.start is relative to the decoder's buffered bytes (at most 3 carried from the last chunk)
                    pos = exc.start - (len(exc.object) - len(chunk))
                    where = line + chunk.count(NEWLINE, 0, max(pos, 0))
                    raise HarnessError(f"{path}:{where}: not UTF-8 (byte 0x{exc.object[exc.start]:02x} at byte "
                                       f"offset {offset + pos}); data files must be UTF-8 JSON lines") from None
                if not chunk:
                    break
                line += chunk.count(NEWLINE)
                offset += len(chunk)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read data file: {exc.strerror or exc}") from None


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    p = {**ctx.params, **ctx.runtime}  # the file is located at run time (runtime.path), fingerprinted by content
    kind = p.get("source") or "jsonl"
    local = kind in LOCAL
    if local:
        check_data_file(Path(p["path"]), kind)
    try:
        return _read(ctx, p)
    except UnicodeDecodeError:  # the file changed since the check: locate the bad line again
        if local:
            check_data_file(Path(p["path"]), kind)
        raise HarnessError(f"{p['path']}: not UTF-8") from None
    except OSError as exc:
        raise HarnessError(f"{p['path']}: cannot read data file: {exc.strerror or exc}") from None


def matches(row: dict[str, Any], rules: dict[str, Any]) -> bool:
    """`data.filter`: every field equals its value, or is one of them when the value is a list."""
    for key, want in rules.items():
        have = row.get(key)
        if isinstance(want, list) and not isinstance(have, list):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


def _row_id(row: dict[str, Any]) -> str:
    return fingerprint(row)[:16]  # canonical JSON; values JSON cannot hold (dates, bytes) hash by their str()


def _read(ctx: StageContext, p: dict) -> StageOutput:
    kind = p.get("source") or "jsonl"
    source = read_source(p)
    process = processor_fn(p["processor"]) if p.get("processor") else None
    rules, seed, limit = p.get("filter") or {}, p.get("shuffle"), p.get("limit")
    records, seen = [], set()
    skipped: list[str] = []  # where the rows without a usable prompt are
    duplicates = filtered = read = 0
    first: dict[str, Any] | None = None
    content = hashlib.sha256()  # what was read, row by row (a jsonl file is fingerprinted by its bytes instead)
    for where, row in source.rows:
        read += 1
        if first is None:
            first = row
        if kind != "jsonl":
            content.update(canonical_json(row).encode() + b"\n")
        if rules and not matches(row, rules):
            filtered += 1
            continue
        own_id = None
        if process is not None:
            out = process(row)
            if out is None:
                skipped.append(where)
                continue
            prompt, reference, own_id = out["prompt"], out.get("reference"), out.get("id")
        else:
            prompt, reference = row.get(p["prompt_field"]), row.get(p["answer_field"])
            if not isinstance(prompt, str) or not prompt.strip():
                skipped.append(where)
                continue
        if own_id is None:
            own_id = str(row[p["id_field"]]) if p["id_field"] and p["id_field"] in row else _row_id(row)
        rid = str(own_id)
        if rid in seen:
            duplicates += 1  # exact duplicate rows would collide in every later stage
            continue
        seen.add(rid)
        records.append({"id": rid, "prompt": prompt, "reference": None if reference is None else str(reference)})
        if limit and seed is None and len(records) >= limit:
            break
    if seed is not None:
        random.Random(seed).shuffle(records)
        records = records[:limit] if limit else records
    if not records:
        fields = "(empty file)" if first is None else ", ".join(first)
        if rules and filtered == read:
            raise HarnessError(f"{p['path']}: data.filter {rules} kept none of {read} rows; fields of the first row: "
                               f"{fields}")
        what = (f"rows the processor '{p['processor']}' could read" if process is not None
                else f"rows with a non-empty '{p['prompt_field']}' field (data.prompt_field)")
        raise HarnessError(f"{p['path']}: no {what}; fields of the first row: {fields}")
    if skipped:
        why = (f"the processor '{escape(p['processor'])}' could not read" if process is not None
               else f"without a non-empty '{escape(p['prompt_field'])}'")
        ctx.log(f"[yellow]skipped {len(skipped)} rows {why} (first at {escape(str(skipped[0]))})[/yellow]")
    if duplicates:
        ctx.log(f"skipped {duplicates} duplicate rows")
    info: dict[str, Any] = {"rows": len(records), "skipped": len(skipped), "duplicates": duplicates}
    if rules:
        info["filtered"] = filtered
    if kind != "jsonl":
        info |= {"source": kind, "rows_read": read, "content_sha256": content.hexdigest(), **source.info}
    return StageOutput(records=records, info=info)
