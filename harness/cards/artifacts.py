"""Write a run's named, stable artifact folders (see harness/cards/__init__.py) with their cards.

`write_artifacts` runs after every `cgd run` (harness/report/write.py), `--until export` included. It is rerun-safe:
a folder already right is left as it is, a stale file (a dataset re-exported into a new stage folder, a model
retrained) is replaced atomically, and files the harness did not put there are removed. Cards hold no absolute path
of the machine and no environment value: local paths are shown relative to the project or the runs folder, or by
their last component.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.paths import PROJECT_ROOT
from harness.store import atomic_write_json, atomic_write_text, fingerprint, read_jsonl, read_run_json

ARTIFACTS_FILE = "artifacts.json"
DATA_FILE = "data/train.jsonl"
CARD = "README.md"
UNKNOWN_LICENSE = "unknown (see the source)"


# --- facts ---------------------------------------------------------------------------------------------------------

def public_path(value: str | None, store_root: Path) -> str | None:
    """A path as a card may show it: relative to the project or the runs folder, else its last component (marked
    local); a value that is no local path (a Hub id, a model name) as it is."""
    if not value:
        return value
    path = Path(value)
    if not path.is_absolute() and not path.exists():
        return value
    absolute = path.absolute()
    for root, prefix in ((store_root, "RUNS_DIR/"), (PROJECT_ROOT, "")):
        with contextlib.suppress(ValueError):
            return prefix + absolute.relative_to(root.absolute()).as_posix()
    return f"{path.name} (a local path)"


def hub_id(value: str | None) -> str | None:
    """`value` when it reads as a Hub repository id (owner/name) and is no local folder, else None."""
    if value and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value) and not Path(value).exists():
        return value
    return None


def source_license(data: dict[str, Any]) -> str:
    processor = data.get("processor")
    if processor:
        from harness.data.processors import get_processor

        with contextlib.suppress(Exception):
            return getattr(get_processor(processor), "LICENSE", None) or UNKNOWN_LICENSE
    return UNKNOWN_LICENSE


def _file_sha(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def harness_facts(provenance: dict[str, Any] | None) -> dict[str, Any]:
    try:
        version = metadata.version("cgd-harness")
    except metadata.PackageNotFoundError:
        version = None
    commit = (provenance or {}).get("harness") or {}
    return {"version": version, "commit": commit.get("commit"), "dirty": commit.get("dirty")}


def common_facts(info: dict[str, Any], config: dict[str, Any], store_root: Path,
                 recipe_file: str | None) -> dict[str, Any]:
    data, teacher, student = config.get("data") or {}, config.get("teacher") or {}, config.get("student") or {}
    critique, train = config.get("critique") or {}, config.get("train") or {}
    return {
        "run": info.get("recipe") or config.get("name"),
        "recipe": {"name": config.get("name"), "file": public_path(recipe_file, store_root),
                   "file_sha256": _file_sha(recipe_file), "config_fingerprint": fingerprint(config)[:16]},
        "teacher": {"provider": teacher.get("provider"), "model": public_path(teacher.get("model"), store_root)},
        "student": {"model": public_path(student.get("model"), store_root), "backend": student.get("backend")},
        "critique": {"style": critique.get("style"), "specificity": critique.get("specificity"),
                     "keep_unverified": critique.get("keep_unverified")},
        "train": {k: train.get(k) for k in ("method", "learning_rate", "epochs", "global_batch_size",
                                           "sequence_len", "format")},
        "source": {"kind": data.get("source"), "path": public_path(data.get("path"), store_root),
                   "name": data.get("name"), "split": data.get("split"), "revision": data.get("revision"),
                   "processor": data.get("processor"), "limit": data.get("limit"),
                   "license": source_license(data)},
        "decontamination": _decontamination(info.get("decontamination")),
        "harness": harness_facts(info.get("provenance")),
    }


def _decontamination(found: dict[str, Any] | None) -> dict[str, Any] | None:
    if not found:
        return None
    keep = ("mode", "prompts", "ngram", "contaminated", "duplicates", "dropped", "kept")
    out = {k: found[k] for k in keep if k in found}
    out["benchmarks"] = {name: {k: b.get(k) for k in ("hits", "exact", "status") if k in b}
                         for name, b in (found.get("benchmarks") or {}).items()}
    return out


def verdict_mix(dataset: Path, source_dir: str | None) -> dict[str, int] | None:
    """The teacher's verdicts on the drafts behind the dataset's rows (joined by id with the records the variant
    was built from); None when those records carry no verdict (sft, distilled_sft)."""
    if not source_dir or not (Path(source_dir) / "records.jsonl").is_file():
        return None
    records = read_jsonl(Path(source_dir) / "records.jsonl")
    if not any("verdict" in r for r in records):
        return None
    by_id = {r.get("id"): r for r in records}
    ids = [row.get("id") for row in read_jsonl(dataset)]
    rows = [by_id[i] for i in ids if i in by_id] if any(i in by_id for i in ids) else records
    counts = Counter(str(r.get("verdict")) if r.get("verdict") is not None else "none" for r in rows)
    return dict(sorted(counts.items()))


def model_scores(rows: list[dict[str, Any]] | None, variant: str, seed: int | None) -> list[dict[str, Any]]:
    mine = [r for r in rows or () if r.get("variant") == variant and (seed is None or r.get("seed") == seed)]
    primary = [r for r in mine if r.get("primary")] or mine
    return [{k: r.get(k) for k in ("benchmark", "metric", "value", "stderr", "n")} for r in primary]


def model_names(models: dict[str, str], config: dict[str, Any]) -> dict[str, tuple[str, str, int | None]]:
    """Summary key ('cgd@seed0') -> (folder name, variant, seed); the '@seed<N>' part only when the recipe trains
    several seeds, so a one-seed run's folders are `models/<variant>`."""
    several = len(config.get("seeds") or []) > 1
    out = {}
    for key in models:
        if key == "base":
            continue
        variant, _, seed = key.partition("@seed")
        seed_n = int(seed) if seed.isdigit() else None
        out[key] = (key if several else variant, variant, seed_n)
    return out


def collect(info: dict[str, Any], config: dict[str, Any], store_root: Path, report_rows: list[dict] | None,
            recipe_file: str | None = None) -> dict[str, Any]:
    """The facts every card of one run is rendered from: {"datasets": {variant: facts}, "models": {name: facts}}."""
    from harness.stages.export import source_of

    common = common_facts(info, config, store_root, recipe_file)
    stages = info.get("stages") or {}
    datasets = {}
    for variant, path in (info.get("datasets") or {}).items():
        sizes = (info.get("dataset_sizes") or {}).get(variant) or {}
        try:
            source = source_of(variant)
        except Exception:  # an unknown variant in a hand-edited run.json: no verdicts to show
            source = ""
        datasets[variant] = {**common, "kind": "dataset", "variant": variant, "folder": f"datasets/{variant}",
                             "counts": {"examples": sizes.get("examples"),
                                        "source_records": sizes.get("source_records"),
                                        "left_out": sizes.get("left_out") or {},
                                        "overlong": (sizes.get("overlong") or {}).get("rows")},
                             "verdicts": verdict_mix(Path(path), (stages.get(source) or {}).get("path"))}
    models = {}
    student = (config.get("student") or {}).get("model")
    for name, variant, seed in model_names(info.get("models") or {}, config).values():
        models[name] = {**common, "kind": "model", "name": name, "variant": variant, "seed": seed,
                        "folder": f"models/{name}", "base_model": public_path(student, store_root),
                        "base_model_hub": hub_id(student),
                        "dataset": f"datasets/{variant}" if variant in datasets else None,
                        "scores": model_scores(report_rows, variant, seed)}
    return {"datasets": datasets, "models": models}


# --- writing -------------------------------------------------------------------------------------------------------

def _link_or_copy(src: Path, dest: Path) -> None:
    """`dest` becomes a hard link of `src` (a copy across file systems), atomically; nothing when it already is."""
    with contextlib.suppress(OSError):
        if dest.exists() and os.path.samefile(src, dest):
            return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        import shutil

        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _symlink(target: Path, dest: Path) -> None:
    """`dest` becomes a relative symlink to `target` (so a moved runs folder keeps working), atomically."""
    rel = os.path.relpath(target, dest.parent)
    if dest.is_symlink() and os.readlink(dest) == rel:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(rel, tmp)
    os.replace(tmp, dest)


def _prune(folder: Path, keep: set[str]) -> None:
    """Remove what is in `folder` but not in `keep` (relative posix paths); never follows a symlink."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink() or path.is_file():
            if rel not in keep:
                path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _keep_recipe_file(facts: dict[str, Any], previous: Path) -> None:
    """The recipe file and its hash from the last artifacts.json of the same recipe configuration."""
    try:
        old = json.loads(previous.read_text(encoding="utf-8"))
        before = next(iter([*old["datasets"].values(), *old["models"].values()]))["recipe"]
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return
    for fact in [*facts["datasets"].values(), *facts["models"].values()]:
        if fact["recipe"]["config_fingerprint"] == before.get("config_fingerprint"):
            fact["recipe"] = {**fact["recipe"], "file": before.get("file"), "file_sha256": before.get("file_sha256")}


def write_artifacts(summary: dict[str, Any], recipe: Any, store_root: Path,
                    report_rows: list[dict[str, Any]] | None = None) -> dict[str, dict[str, str]]:
    """Write RUNS_DIR/<recipe>/datasets/<variant>/ and models/<name>/ with their cards, and artifacts.json.
    Returns {"datasets": {variant: folder}, "models": {name: folder}} (absolute folders)."""
    from harness.cards.dataset_card import render_dataset_card
    from harness.cards.model_card import render_model_card

    run_dir = Path(summary["run_dir"])
    run_json = run_dir / "run.json"
    info = {**(read_run_json(run_json) if run_json.is_file() else {}), **summary}
    if recipe is None:
        config = info.get("recipe_config") or {}
        recipe_file = None
    elif isinstance(recipe, dict):
        config, recipe_file = recipe, None
    else:
        from harness.recipe import recipe_to_dict

        config, recipe_file = recipe_to_dict(recipe), getattr(recipe, "source_path", None)
    if report_rows is None and (run_dir / "results.jsonl").is_file():
        report_rows = read_jsonl(run_dir / "results.jsonl")
    facts = collect(info, config, store_root, report_rows, recipe_file)
    if recipe_file is None:  # called without the recipe object (cgd publish, scripts): keep what cgd run found
        _keep_recipe_file(facts, run_dir / ARTIFACTS_FILE)
    out: dict[str, dict[str, str]] = {"datasets": {}, "models": {}}
    for variant, fact in facts["datasets"].items():
        folder = run_dir / fact["folder"]
        _link_or_copy(Path(info["datasets"][variant]), folder / DATA_FILE)
        atomic_write_text(folder / CARD, render_dataset_card(fact))
        _prune(folder, {CARD, DATA_FILE})
        out["datasets"][variant] = str(folder)
    from harness.evaluation.model_hash import model_files

    keys = {name: key for key, (name, _, _) in model_names(info.get("models") or {}, config).items()}
    for name, fact in facts["models"].items():
        folder, model_dir = run_dir / fact["folder"], Path(info["models"][keys[name]])
        files = [p.relative_to(model_dir).as_posix() for p in model_files(model_dir)] if model_dir.is_dir() else []
        for rel in files:
            _symlink(model_dir / rel, folder / rel)
        fact["files"] = files
        links = {"dataset": f"../../{fact['dataset']}/README.md"} if fact["dataset"] else {}
        atomic_write_text(folder / CARD, render_model_card(fact, links))
        _prune(folder, {CARD, *files})
        out["models"][name] = str(folder)
    atomic_write_json(run_dir / ARTIFACTS_FILE, facts)
    return out
