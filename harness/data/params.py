"""The data stage's fingerprinted params and run-time locations, per `data.source`.

A jsonl recipe without the newer keys keeps exactly the params it always had (sha256 of the file, the fields, the
limit), so its cached stages stay cached; each newer key enters the params only when set (not its default).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

# newer keys, with the default that leaves them out of the fingerprint
OPTIONAL = {"processor": None, "shuffle": None, "filter": None}


def data_stage(recipe: Any, require_data: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, runtime) of the data stage. `require_data=False` (plans) accepts data that is not there yet."""
    d = recipe.data
    if d.source == "hf":
        params, runtime = _hf(recipe, require_data)
    else:
        params, runtime = _local(recipe, require_data)
    params |= {k: getattr(d, k) for k, default in OPTIONAL.items() if getattr(d, k) != default}
    return params, runtime


def _local(recipe: Any, require_data: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    from harness.pipeline import _check_selection, resolve_data_path
    from harness.stages.data import check_data_file
    from harness.store import file_sha256

    d = recipe.data
    data_path = resolve_data_path(recipe, must_exist=require_data)
    if require_data or data_path.exists():  # a plan may come before the data; a folder or non-UTF-8 file never
        check_data_file(data_path, d.source)
    if recipe.train.select_checkpoint is not None and data_path.is_file():
        if d.source == "jsonl":
            _check_selection(recipe, data_path)
        else:
            check_selection(recipe, {"path": str(data_path), "source": d.source})
    # Files are fingerprinted by content and located at run time, so a moved checkout or runs folder is still cached.
    params: dict[str, Any] = {"sha256": file_sha256(data_path) if data_path.is_file() else None,
                              "prompt_field": d.prompt_field, "answer_field": d.answer_field, "id_field": d.id_field,
                              "limit": d.limit}
    if d.source != "jsonl":
        params["source"] = d.source
    return params, {"path": str(data_path), "source": d.source}


def _locate(raw: str, recipe: Any) -> Path | None:
    from harness.paths import PROJECT_ROOT

    path = Path(raw).expanduser()
    if path.is_absolute():
        return path if path.exists() else None
    recipe_dir = Path(recipe.source_path).parent if recipe.source_path else Path.cwd()
    for base in (Path.cwd(), recipe_dir, PROJECT_ROOT):
        if (base / path).exists():
            return (base / path).resolve()
    return None


def _map_files(files: Any, fn: Any) -> Any:
    if isinstance(files, dict):
        return {k: _map_files(v, fn) for k, v in files.items()}
    if isinstance(files, list):
        return [fn(f) for f in files]
    return fn(files)


@contextlib.contextmanager
def _cache_only() -> Iterator[None]:
    """Hub offline mode for the duration: a plan or `cgd validate` reads the local `datasets` cache only, never
    the network (a download, or minutes of retries on a machine that cannot reach the Hub)."""
    import datasets.config
    import huggingface_hub.constants

    saved = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def _hf(recipe: Any, require_data: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    from harness.data.sources import hf_identity
    from harness.store import file_sha256

    d = recipe.data
    local = _locate(d.path, recipe)  # a dataset folder in the checkout or beside the recipe, else a hub id
    runtime: dict[str, Any] = {"path": str(local) if local else d.path, "source": "hf", "name": d.name,
                               "split": d.split, "revision": d.revision, "streaming": d.streaming}
    params: dict[str, Any] = {"source": "hf", "dataset": d.path, "name": d.name, "split": d.split,
                              "revision": d.revision, "streaming": d.streaming, "prompt_field": d.prompt_field,
                              "answer_field": d.answer_field, "id_field": d.id_field, "limit": d.limit}
    if d.data_files is not None:
        located = _map_files(d.data_files, lambda f: str(_locate(f, recipe) or f))
        runtime["data_files"] = located
        params["data_files"] = d.data_files
        params["data_files_sha256"] = _map_files(
            located, lambda f: file_sha256(Path(f)) if Path(f).is_file() else None)
    try:
        with contextlib.nullcontext() if require_data else _cache_only():
            identity = hf_identity(runtime)
    except HarnessError:
        if require_data:
            raise
        identity = {}  # a plan made before the dataset is in the cache
    params["dataset_fingerprint"] = identity.get("dataset_fingerprint")
    if "num_rows" in identity:
        runtime["rows"] = identity["num_rows"]
    if recipe.train.select_checkpoint is not None and (identity or d.streaming and require_data):
        check_selection(recipe, runtime)
    return params, runtime


def check_selection(recipe: Any, where: dict[str, Any], sample: int = 500) -> None:
    """Refuse a checkpoint selection the data's answers cannot support, from its first rows (as the stage reads them:
    through the processor, or data.answer_field)."""
    from harness.data.processors import processor_fn
    from harness.data.sources import read_source
    from harness.recipe.loader import locate
    from harness.stages.selection import data_problem

    d = recipe.data
    process = processor_fn(d.processor) if d.processor else None
    references = []
    for _, row in read_source(where).rows:
        if len(references) >= sample:
            break
        if process is not None:
            out = process(row)
            references.append(None if out is None else out.get("reference"))
        else:
            references.append(row.get(d.answer_field))
    problem = data_problem(recipe.train.select_checkpoint.metric, references)
    if problem:
        raise HarnessError(str(locate(recipe, "train.select_checkpoint", f"train.select_checkpoint: {problem}")))
