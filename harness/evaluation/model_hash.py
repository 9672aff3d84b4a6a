"""A model's content hash: sha256 over its weight, config and tokenizer files (names and bytes), not its path.

Eval results are cached under (this hash, the suite's settings hash), so a model retrained into the same folder is
never scored from a stale cache, and a copy of a model in another folder reuses its scores. Hashing a few GB takes
seconds; per-file digests are memoized by (path, size, mtime, ctime, inode) in a small JSON file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from harness.store import atomic_write_json, fingerprint

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".npz", ".msgpack", ".h5")
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
               "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt",
               "chat_template.jinja", "chat_template.json", "adapter_config.json", "preprocessor_config.json")


TRAINING_STATE_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json")


def model_files(folder: Path) -> list[Path]:
    """The files that decide what the model computes: weights (with shard indexes), config and tokenizer. Not
    training state: intermediate `checkpoint-*` folders and `training_args.bin` (which holds the run's paths)."""
    files = []
    for p in sorted(folder.rglob("*")):
        parts = p.relative_to(folder).parts
        if not p.is_file() or any(part.startswith(".") or part.startswith("checkpoint-") for part in parts[:-1]) \
                or parts[-1].startswith(".") or p.name in TRAINING_STATE_FILES:
            continue
        if p.name in MODEL_FILES or p.suffix in WEIGHT_SUFFIXES or p.name.endswith(".index.json") \
                or (p.parent.name == "additional_chat_templates" and p.suffix == ".jinja"):
            files.append(p)
    return files


def _file_digest(path: Path, memo: dict[str, str]) -> str:
    st = path.stat()
    # ctime changes on every write (and cannot be set back), so a rewrite that restores size and mtime still misses
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"
    if key not in memo:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(8 << 20), b""):
                h.update(chunk)
        memo[key] = h.hexdigest()
    return memo[key]


def _memo_path() -> Path:
    root = os.environ.get("CGD_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "cgd")
    return Path(root).expanduser() / "model_file_hashes.json"


def resolve_model_dir(model: str) -> Path | None:
    """A local folder as given, else the local hub snapshot of a model id (never downloads), else None."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # noqa: BLE001 - not a local folder and not in the hub cache
        return None


def model_content_hash(model: str, memo_path: Path | None = None) -> str:
    """sha256 over (relative name, file digest) of every model file; for an unresolvable id, a hash of the id."""
    folder = resolve_model_dir(model)
    if folder is None:
        return fingerprint("model-id", model)
    memo_file = memo_path or _memo_path()
    try:
        memo = json.loads(memo_file.read_text()) if memo_file.exists() else {}
    except (OSError, ValueError):
        memo = {}
    before = len(memo)
    entries = [(str(p.relative_to(folder)), _file_digest(p, memo)) for p in model_files(folder)]
    if not entries:
        return fingerprint("model-id", str(folder.resolve()))
    if len(memo) != before:
        try:
            memo_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(memo_file, memo)
        except OSError:
            pass  # a read-only cache only costs re-hashing next time
    return fingerprint("model-files", entries)
