"""Load prompts and reference answers; give each row a stable id (its own id field, or a hash of the row)."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

from rich.markup import escape

from harness.errors import HarnessError
from harness.stages.base import StageContext, StageInput, StageOutput
from harness.store import fingerprint

KIND = "data"
VERSION = 1
READS: tuple[str, ...] = ()
WRITES = ("id", "prompt", "reference")


CHUNK = 1 << 20
NEWLINE = b"\n"


def check_data_file(path: Path) -> None:
    """Refuse a data file that cannot be read as UTF-8 JSON lines: absent, a folder, unreadable, or not UTF-8.

    Raises HarnessError("PATH: reason"), or "PATH:LINE: not UTF-8 ..." naming the first line that is not.
    Reads the file once in 1 MiB chunks (bounded memory whatever its size)."""
    path = Path(path)
    try:
        if not path.exists():
            raise HarnessError(f"{path}: no such data file")
        if path.is_dir():
            raise HarnessError(f"{path}: is a folder, not a data file (data.path names a JSON-lines file)")
        if not path.is_file():
            raise HarnessError(f"{path}: not a regular file")
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
    check_data_file(Path(p["path"]))
    try:
        return _read(ctx, p)
    except UnicodeDecodeError:  # the file changed since the check: locate the bad line again
        check_data_file(Path(p["path"]))
        raise HarnessError(f"{p['path']}: not UTF-8") from None
    except OSError as exc:
        raise HarnessError(f"{p['path']}: cannot read data file: {exc.strerror or exc}") from None


def _read(ctx: StageContext, p: dict) -> StageOutput:
    records, seen = [], set()
    skipped: list[int] = []  # line numbers of rows without a usable prompt
    duplicates = 0
    with open(p["path"], encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{p['path']}:{lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise HarnessError(f"{p['path']}:{lineno}:1: expected a JSON object per line, got {type(row).__name__}")
            prompt = row.get(p["prompt_field"])
            if not isinstance(prompt, str) or not prompt.strip():
                skipped.append(lineno)
                continue
            rid = str(row[p["id_field"]]) if p["id_field"] and p["id_field"] in row else fingerprint(row)[:16]
            if rid in seen:
                duplicates += 1  # exact duplicate rows would collide in every later stage
                continue
            seen.add(rid)
            reference = row.get(p["answer_field"])
            records.append({"id": rid, "prompt": prompt, "reference": None if reference is None else str(reference)})
            if p["limit"] and len(records) >= p["limit"]:
                break
    if not records:
        raise HarnessError(f"{p['path']}: no rows with a non-empty '{p['prompt_field']}' field "
                           f"(data.prompt_field); fields of the first row: {_first_fields(p['path'])}")
    if skipped:
        ctx.log(f"[yellow]skipped {len(skipped)} rows without a non-empty '{escape(p['prompt_field'])}' "
                f"(first at {escape(str(p['path']))}:{skipped[0]})[/yellow]")
    if duplicates:
        ctx.log(f"skipped {duplicates} duplicate rows")
    return StageOutput(records=records, info={"rows": len(records), "skipped": len(skipped), "duplicates": duplicates})


def _first_fields(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return "(not JSON)"
                return ", ".join(row) if isinstance(row, dict) else "(not an object)"
    return "(empty file)"
