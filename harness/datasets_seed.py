"""Offline benchmark data: seed the `datasets` cache and EvalPlus's cache from local JSONL files.

With HF_HUB_OFFLINE=1, `datasets.load_dataset("org/Name", config)` never reads the hub's file cache; it only falls
back to a *prepared* Arrow cache: `$HF_DATASETS_CACHE/<org>___<snake(name)>/<config>/<version>/<hash>/`
(`dataset_info.json` + `<snake(name)>-<split>.arrow`). Seeding builds that folder from JSONL rows in the benchmark's
real schema, so the built-in lm-eval tasks run unchanged on an air-gapped cluster (or in tests, on a few rows).

Source layout (`cgd data seed --from DIR`; eval_suites/fixtures is the shipped tiny set):
    DIR/hf/<org>__<name>/<config>/<split>.jsonl      one folder per dataset and config ("default" when it has none)
    DIR/evalplus/HumanEvalPlus-<version>.jsonl       EvalPlus datasets, copied under the name EvalPlus looks for
    DIR/evalplus/MbppPlus-<version>.jsonl
`cgd data export` writes the same layout from a machine that can reach the hub.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.paths import EVAL_SUITES_DIR

FIXTURES_DIR = EVAL_SUITES_DIR / "fixtures"
SEED_VERSION = "0.0.0"


@dataclass(frozen=True)
class SeededDataset:
    repo_id: str
    config: str
    splits: dict[str, int]  # split -> rows
    path: Path


def hf_datasets_cache() -> Path:
    """Where `datasets` looks now: $HF_DATASETS_CACHE, else $HF_HOME/datasets, else ~/.cache/huggingface/datasets."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "datasets"


def evalplus_cache() -> Path:
    """EvalPlus's CACHE_DIR: appdirs.user_cache_dir("evalplus"), i.e. $XDG_CACHE_HOME/evalplus on Linux."""
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "evalplus"


def _snake(name: str) -> str:
    from datasets.naming import camelcase_to_snakecase

    return camelcase_to_snakecase(name)


def cache_folder(repo_id: str, cache_dir: Path | None = None) -> Path:
    org_name = repo_id.split("/")
    org_name[-1] = _snake(org_name[-1])
    return (cache_dir or hf_datasets_cache()) / "___".join(org_name)


def seed_dataset(repo_id: str, config: str | None, splits: dict[str, Path | list[dict[str, Any]]],
                 cache_dir: Path | None = None) -> SeededDataset:
    """Write a prepared Arrow cache for `repo_id` (config `config`, "default" if None) from JSONL files or rows.

    The folder is named seed-<digest>; an earlier seed of the same dataset and config is replaced, a real download
    in the same cache is left alone (but `datasets` reads the newest folder, so a seed shadows it: seed into a
    cache of its own, or delete the seed-* folders to go back).
    """
    import datasets

    if "/" not in repo_id or repo_id.count("/") > 1:
        raise HarnessError(f"dataset id must be 'org/name', got '{repo_id}'")
    config = config or "default"
    cache_dir = Path(cache_dir) if cache_dir else hf_datasets_cache()
    snake = _snake(repo_id.split("/")[-1])
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="cgd-seed-") as tmp:
        data_files = {}
        for split, src in splits.items():
            if isinstance(src, list):
                path = Path(tmp) / f"{split}.jsonl"
                path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in src))
                src = path
            data_files[split] = str(src)
        builder = datasets.load_dataset_builder("json", data_files=data_files, cache_dir=str(Path(tmp) / "build"))
        bars = datasets.utils.are_progress_bars_disabled()
        datasets.disable_progress_bars()
        try:
            builder.download_and_prepare()
        finally:
            if not bars:
                datasets.enable_progress_bars()
        built = Path(builder.cache_dir)
        info = json.loads((built / "dataset_info.json").read_text())
        info.update(config_name=config, dataset_name=snake)
        target_root = cache_folder(repo_id, cache_dir) / config / SEED_VERSION
        for old in target_root.glob("seed-*"):  # an earlier seed of this dataset; never a real download
            shutil.rmtree(old)
        from harness.store import fingerprint

        digest = fingerprint(repo_id, config, {s: Path(p).read_bytes().hex() for s, p in data_files.items()})[:16]
        target = target_root / f"seed-{digest}"
        target.mkdir(parents=True)
        for f in built.iterdir():
            if f.name.startswith("json-") and f.suffix == ".arrow":
                shutil.copy2(f, target / f.name.replace("json-", f"{snake}-", 1))
        (target / "dataset_info.json").write_text(json.dumps(info))
        for split, meta in (info.get("splits") or {}).items():
            counts[split] = int(meta.get("num_examples", 0))
    return SeededDataset(repo_id, config, counts, target)


def _dataset_dirs(source: Path) -> list[tuple[str, str, dict[str, Path]]]:
    """(repo_id, config, {split: file}) for every source/hf/<org>__<name>/<config>/<split>.jsonl."""
    found = []
    hf = source / "hf"
    if not hf.is_dir():
        return found
    for ds_dir in sorted(p for p in hf.iterdir() if p.is_dir()):
        if "__" not in ds_dir.name:
            raise HarnessError(f"{ds_dir}: folder names are <org>__<name> (the dataset id with '/' as '__')")
        repo_id = ds_dir.name.replace("__", "/", 1)
        for cfg_dir in sorted(p for p in ds_dir.iterdir() if p.is_dir()):
            files = {f.stem: f for f in sorted(cfg_dir.glob("*.jsonl"))}
            if files:
                found.append((repo_id, cfg_dir.name, files))
    return found


def seed_all(source: Path = FIXTURES_DIR, *, cache_dir: Path | None = None, evalplus_dir: Path | None = None,
             only: set[str] | None = None) -> list[SeededDataset]:
    """Seed every dataset under `source` (restricted to repo ids in `only`), and copy its EvalPlus files."""
    seeded = []
    for repo_id, config, files in _dataset_dirs(source):
        if only is not None and repo_id not in only:
            continue
        seeded.append(seed_dataset(repo_id, config, files, cache_dir))  # type: ignore[arg-type]
    ep_src = source / "evalplus"
    if ep_src.is_dir() and (only is None or "evalplus" in only):
        target = evalplus_dir or evalplus_cache()
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted(ep_src.glob("*.jsonl")):
            shutil.copy2(f, target / f.name)
            rows = sum(1 for line in f.read_text().splitlines() if line.strip())
            seeded.append(SeededDataset("evalplus/" + f.stem, "default", {"test": rows}, target / f.name))
    return seeded


def export_dataset(repo_id: str, config: str | None, splits: list[str], dest: Path,
                   revision: str | None = None) -> dict[str, int]:
    """Online side of the air gap: write the real dataset as dest/hf/<org>__<name>/<config>/<split>.jsonl."""
    import datasets

    out = dest / "hf" / repo_id.replace("/", "__") / (config or "default")
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in splits:
        ds = datasets.load_dataset(repo_id, None if config in (None, "default") else config, split=split,
                                   revision=revision)
        with (out / f"{split}.jsonl").open("w") as fh:
            for row in ds:
                fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        counts[split] = len(ds)
    return counts
