"""The run store: content-addressed stage outputs, append-only journals, a request cache, and locks.

Layout under RUNS_DIR:
    stages/<stage>-<fingerprint[:16]>/   one folder per distinct stage computation, shared by every recipe
        journal.jsonl                    finished records, appended and fsynced as they complete
        records.jsonl                    the stage's output, written atomically once the stage is done
        done.json                        manifest; its presence means the stage is complete; paths in it
                                         are relative to RUNS_DIR (see relativize_paths)
    cache/requests.sqlite                every successful LLM response, keyed by what was sent
    <recipe name>/run.json               which stages a recipe used, their status, datasets, models, results
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts (order of dict keys does not matter)."""
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + rename so readers never see half a file, even after a kill."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# --- paths inside the runs folder are stored relative to it -------------------------------------------------------
# A manifest (done.json, run.json) names the pointers (RFC 6901) of its values that are paths relative to the runs
# folder under "relative_paths"; readers join them with the runs folder they find the file in. So a runs folder can
# be moved, shared over a network disk, or read from any working folder.

def _relative_to(root: Path, value: str) -> str | None:
    """`value` relative to `root` when it names an existing file or folder inside it, else None."""
    if not value or len(value) > 4096 or "\n" in value or "://" in value:
        return None
    path = Path(value)
    try:
        rel = path.absolute().relative_to(root.absolute())
    except ValueError:
        return None
    return rel.as_posix() if rel.parts and path.exists() else None


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def relativize_paths(obj: dict[str, Any], root: Path) -> dict[str, Any]:
    """A copy of `obj` with its path values inside `root` made relative and listed under 'relative_paths'."""
    pointers: list[str] = []

    def walk(value: Any, at: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{at}/{_escape(str(k))}") for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{at}/{i}") for i, v in enumerate(value)]
        if isinstance(value, str) and (rel := _relative_to(root, value)) is not None:
            pointers.append(at)
            return rel
        return value

    out = walk({k: v for k, v in obj.items() if k != "relative_paths"}, "")
    return {**out, "relative_paths": pointers} if pointers else out


def resolve_paths(obj: dict[str, Any], root: Path) -> dict[str, Any]:
    """Undo `relativize_paths` against the runs folder `root` the manifest was found in."""
    for pointer in obj.get("relative_paths") or ():
        keys = [k.replace("~1", "/").replace("~0", "~") for k in pointer.split("/")[1:]]
        node: Any = obj
        try:
            for key in keys[:-1]:
                node = node[int(key)] if isinstance(node, list) else node[key]
            last: Any = int(keys[-1]) if isinstance(node, list) else keys[-1]
            node[last] = str(root / node[last])
        except (KeyError, IndexError, ValueError, TypeError):
            continue  # a hand-edited manifest: leave what is there
    return obj


def read_run_json(path: Path) -> dict[str, Any]:
    """A run's run.json (RUNS/<name>/run.json) with its paths joined to the runs folder it lies in."""
    return resolve_paths(json.loads(path.read_text(encoding="utf-8")), path.absolute().parent.parent)


class StageLocked(HarnessError):
    """Another process holds the lock of a run or stage."""


@contextlib.contextmanager
def file_lock(path: Path, what: str) -> Iterator[None]:
    """An exclusive, non-blocking lock: a second run of the same thing fails at once instead of colliding."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise StageLocked(f"{what} is locked by {holder} ({path}); wait for it or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock; a killed process releases it too


class Journal:
    """Append-only JSONL: a record counts once its line is fsynced. A torn last line (kill mid-write) is ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = []
        with self.path.open("rb") as handle:
            lines = handle.readlines()
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except ValueError:
                if number == len(lines) and not line.endswith(b"\n"):
                    break  # a torn last line (a kill mid-write): everything before it was fsynced
                row = None
            if not isinstance(row, dict):
                raise HarnessError(f"{self.path}:{number}: damaged journal line (not a JSON record); move the file "
                                   "away and run again: the stage is rebuilt from the request cache")
            rows.append(row)
        return rows

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._truncate_torn_tail()
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())

    def _truncate_torn_tail(self) -> None:
        """Cut a torn last line (a kill mid-write) before appending. Only the file's end is read: a journal that
        ends in a newline, as every complete append leaves it, costs one byte to check at any size."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0:
            return
        with self.path.open("rb+") as handle:
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            end = size
            while end > 0:  # the torn line can be long: scan back block by block for the last newline
                start = max(0, end - TAIL_BLOCK)
                handle.seek(start)
                cut = handle.read(end - start).rfind(b"\n")
                if cut >= 0:
                    handle.truncate(start + cut + 1)
                    return
                end = start
            handle.truncate(0)


TAIL_BLOCK = 1 << 16


class StageDir:
    """One stage computation's folder, named by its fingerprint."""

    def __init__(self, path: Path, name: str, fp: str) -> None:
        self.path = path
        self.name = name
        self.fingerprint = fp
        self.journal = Journal(path / "journal.jsonl")

    @property
    def records_path(self) -> Path:
        return self.path / "records.jsonl"

    @property
    def manifest_path(self) -> Path:
        return self.path / "done.json"

    def is_done(self) -> bool:
        return self.manifest_path.exists()

    @property
    def root(self) -> Path:
        """The runs folder this stage folder lies in (RUNS/stages/<name>-<fp>)."""
        return self.path.parent.parent

    def manifest(self) -> dict[str, Any]:
        return resolve_paths(json.loads(self.manifest_path.read_text()), self.root) if self.is_done() else {}

    def read_records(self) -> list[dict[str, Any]]:
        return read_jsonl(self.records_path) if self.records_path.exists() else []

    def finish(self, records: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
        """Write the output, then the manifest last: the manifest is the commit point. The manifest carries the
        records file's line count and checksum, so a consumer notices a file deleted, emptied or cut short."""
        write_jsonl(self.records_path, records)
        manifest = {"stage": self.name, "fingerprint": self.fingerprint, "records": len(records),
                    "records_sha256": file_sha256(self.records_path),
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        atomic_write_json(self.manifest_path, relativize_paths(manifest, self.root))
        return manifest

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.path / ".lock", f"stage {self.name}")

    def damage(self) -> str | None:
        """Why this done stage's records file no longer matches its manifest, or None when it does."""
        try:
            manifest = self.manifest()
        except (OSError, ValueError) as exc:
            return f"its manifest {self.manifest_path} cannot be read ({exc})"
        if not self.records_path.is_file():
            return f"{self.records_path} is missing"
        want = manifest.get("records_sha256")
        if want is not None:  # the checksum covers the count too
            ok = file_sha256(self.records_path) == want
            return None if ok else f"{self.records_path} does not match its manifest (checksum differs)"
        try:  # a manifest from before checksums: the count is all there is to check
            count = len(read_jsonl(self.records_path))
        except (OSError, ValueError) as exc:
            return f"{self.records_path} cannot be read ({exc})"
        if count != manifest.get("records", count):
            return f"{self.records_path} holds {count} records, its manifest says {manifest.get('records')}"
        return None


def _as_os_error(exc: sqlite3.DatabaseError, path: Path) -> OSError | None:
    """SQLite's 'disk is full' and 'readonly database' as the OSError they are (naming the file), else None."""
    text = str(exc).lower()
    if "disk is full" in text or ("disk i/o error" in text and _nearly_full(path)):  # WAL files on a full disk
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    if "readonly" in text or "read-only" in text:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    return None


def _nearly_full(path: Path, below: int = 1 << 20) -> bool:
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < below


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RequestCache:
    """Successful LLM responses keyed by a hash of what was sent (back-end, model, messages, parameters).

    Parsing is not part of the key, so a parser fix re-parses cached responses without paying again. Only
    successes are stored. SQLite in WAL mode with synchronous=FULL: a committed row survives a kill.

    The `batches` table records every batch submitted to a provider's batch API: a row is written before the
    submission (state `submitting`, with the request keys and payloads), gets the provider's batch id right after,
    and becomes `collected` once every answer is in `responses`. A restarted run polls an open batch instead of
    paying for its requests again.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        try:
            self._open(path)
        except sqlite3.DatabaseError as exc:
            if (unwritable := _as_os_error(exc, path)) is not None:
                raise unwritable from None
            raise HarnessError(f"{path}: not a readable request cache ({exc}); move it away and run again (responses "
                               "it held would then be requested again)") from None

    def _open(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, backend TEXT, model TEXT,"
            " request TEXT, response TEXT, created REAL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS batches (tag TEXT PRIMARY KEY, backend TEXT, model TEXT, batch_id TEXT,"
            " state TEXT, keys TEXT, count INTEGER, created REAL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS batch_items (key TEXT, tag TEXT, request TEXT,"
                         " PRIMARY KEY (key, tag))")
        self._db.commit()

    @staticmethod
    def key(backend: str, model: str, request: dict[str, Any]) -> str:
        return fingerprint("llm-request/v1", backend, model, request)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for key, response in self._db.execute(
                        f"SELECT key, response FROM responses WHERE key IN ({marks})", chunk):
                    out[key] = json.loads(response)
        return out

    def put(self, key: str, backend: str, model: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        self.put_many([(key, backend, model, request, response)])

    def put_many(self, rows: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]]) -> None:
        """One transaction (one fsync) for many responses."""
        now = time.time()
        with self._lock:
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                    [(k, b, m, canonical_json(req), canonical_json(resp), now) for k, b, m, req, resp in rows],
                )
                self._db.commit()
            except sqlite3.OperationalError as exc:
                raise (_as_os_error(exc, self.path) or exc) from None

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    # --- provider batches -------------------------------------------------------------------------------------
    def batch_intent(self, tag: str, backend: str, model: str, items: list[tuple[str, dict[str, Any]]],
                     count: int) -> float:
        """Record a batch about to be submitted: (request key, payload) per request. Returns its time."""
        now = time.time()
        with self._lock:
            self._db.execute("INSERT INTO batches VALUES (?, ?, ?, NULL, 'submitting', ?, ?, ?)",
                             (tag, backend, model, json.dumps([k for k, _ in items]), count, now))
            self._db.executemany("INSERT OR REPLACE INTO batch_items VALUES (?, ?, ?)",
                                 [(k, tag, canonical_json(p)) for k, p in items])
            self._db.commit()
        return now

    def batch_submitted(self, tag: str, batch_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE batches SET batch_id = ?, state = 'submitted' WHERE tag = ?", (batch_id, tag))
            self._db.commit()

    def batch_state(self, tag: str, state: str) -> None:
        """`collected`, `failed` (never submitted) or `lost` (no trace at the provider)."""
        with self._lock:
            self._db.execute("UPDATE batches SET state = ? WHERE tag = ?", (state, tag))
            self._db.commit()

    def open_batches(self, backend: str, model: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT tag, batch_id, state, keys, count, created FROM batches WHERE backend = ? AND model = ?"
                " AND state IN ('submitting', 'submitted') ORDER BY created", (backend, model)).fetchall()
        return [{"tag": t, "batch_id": b, "state": s, "keys": json.loads(k), "count": c, "created": cr}
                for t, b, s, k, c, cr in rows]

    def batch_payload(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT request FROM batch_items WHERE key = ? LIMIT 1", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RunStore:
    def __init__(self, runs_dir: Path) -> None:
        self.root = Path(runs_dir).absolute()  # stage and subprocess paths must not depend on the working folder
        self._cache: RequestCache | None = None

    def stage(self, name: str, fp: str) -> StageDir:
        return StageDir(self.root / "stages" / f"{name}-{fp[:16]}", name, fp)

    def run_dir(self, recipe_name: str) -> Path:
        return self.root / recipe_name

    def assets_dir(self) -> Path:
        return self.root / "assets"

    @property
    def request_cache(self) -> RequestCache:
        if self._cache is None:
            self._cache = RequestCache(self.root / "cache" / "requests.sqlite")
        return self._cache

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
