"""Reading run folders: results, run.json, the settings runs differ in, matrix folders, training loss curves.

A matrix run (`cgd run` on a recipe with `matrix:`) writes RUNS_DIR/<base name>/matrix.json listing its members'
folders and settings; `cgd report RUNS_DIR/<base name>` reads the members from it. Given several run folders, the
report pivots on the recipe keys whose values differ between them (from each run.json's recipe_config), so a
matrix's pivot is on exactly the keys it varied.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.report.model import ComparisonTable, LossCurve, RunData
from harness.store import read_jsonl, read_run_json

MATRIX_FILE = "matrix.json"
IGNORED_KEYS = ("name",)


def read_results(run_dir: Path) -> list[dict[str, Any]]:
    """A run folder's normalized result rows; none when it has not reached evaluate."""
    path = run_dir / "results.jsonl"
    return read_jsonl(path) if path.is_file() else []


def load_results(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """All result rows of the given run folders (matrix folders expand to their members)."""
    return [row for d in expand_run_dirs(run_dirs) for row in read_results(d)]


def matrix_members(folder: Path) -> list[Path] | None:
    """The member folders of a matrix folder, in matrix order; None when `folder` is not one."""
    manifest = folder / MATRIX_FILE
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        # Members are the matrix folder's siblings; the recorded path is the fallback (a moved runs folder).
        return [folder.parent / m["name"] if (folder.parent / m["name"]).is_dir() else Path(m["run_dir"])
                for m in data["members"]]
    if not (folder / "results.jsonl").exists() and not (folder / "run.json").exists():
        found = sorted(p for p in folder.parent.glob(f"{folder.name}__*") if (p / "run.json").is_file())
        return found or None
    return None


def expand_run_dirs(run_dirs: list[Path]) -> list[Path]:
    out: list[Path] = []
    for d in run_dirs:
        out += matrix_members(d) or [d]
    return list(dict.fromkeys(out))


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out |= flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: data}


def varied_settings(configs: list[dict[str, Any] | None], names: list[str]) -> list[dict[str, Any]]:
    """For each run, {dotted key: value} of the recipe keys whose values are not the same in every run."""
    if len(configs) < 2:
        return [{} for _ in configs]
    if all(c is not None for c in configs):
        flat = [flatten(c) for c in configs]
        keys = list(dict.fromkeys(k for f in flat for k in f))
        varied = [k for k in keys if k not in IGNORED_KEYS and any(f.get(k) != flat[0].get(k) for f in flat[1:])]
        return [{k: f.get(k) for k in varied} for f in flat]
    parsed = [_settings_from_name(n) for n in names]  # no run.json: the matrix member names say it
    if all(parsed) and len({json.dumps(p, sort_keys=True) for p in parsed}) == len(parsed):
        return parsed
    return [{"run": n} for n in names]


def _settings_from_name(name: str) -> dict[str, Any]:
    parts = name.split("__")[1:]
    return dict(p.split("=", 1) for p in parts if "=" in p)


def load_runs(run_dirs: list[Path]) -> tuple[list[RunData], str]:
    """The runs (matrix folders expanded) with their differing settings, and a title."""
    dirs = expand_run_dirs(run_dirs)
    infos = []
    for d in dirs:
        path = d / "run.json"
        infos.append(read_run_json(path) if path.is_file() else {})
    settings = varied_settings([i.get("recipe_config") for i in infos], [d.name for d in dirs])
    runs = [RunData(d.name, read_results(d), s, d, i)
            for d, s, i in zip(dirs, settings, infos, strict=True)]
    if len(run_dirs) == 1 and len(dirs) > 1:
        title = run_dirs[0].name
    else:
        bases = list(dict.fromkeys(d.name.split("__")[0] for d in dirs))
        title = bases[0] if len(bases) == 1 else ", ".join(d.name for d in dirs)
    return runs, title


def parse_train_log(path: Path) -> list[tuple[float, float]]:
    """(epoch, loss) points from the HF Trainer's log dicts in an Axolotl train.log (the step index when a dict
    has no epoch)."""
    from harness.axolotl.launch import parse_log_dicts

    points: list[tuple[float, float]] = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return points
    for line in text.replace("\r", "\n").splitlines():
        if "'loss'" not in line and '"loss"' not in line:
            continue
        for entry in parse_log_dicts(line):
            loss = entry.get("loss")
            if isinstance(loss, int | float):
                epoch = entry.get("epoch")
                points.append((float(epoch) if isinstance(epoch, int | float) else float(len(points)),
                               float(loss)))
    return points


def _train_stages(runs: list[RunData], table: ComparisonTable) -> Iterator[tuple[Path, str]]:
    """(stage folder, curve label) for each train stage of the runs, once (a stage shared by runs is drawn once)."""
    seen = set()
    for run in runs:
        for name, stage in (run.info.get("stages") or {}).items():
            if not name.startswith("train:") or stage.get("path") in seen:
                continue
            seen.add(stage.get("path"))
            _, variant, seed = (name.split(":") + ["", ""])[:3]
            row = next((r for r in table.rows if r.kind == "run" and r.variant == variant
                        and (not r.settings or r.settings == run.settings)), None)
            yield Path(stage["path"]), f"{row.title if row else variant} (seed {seed})"


def loss_curves(runs: list[RunData], table: ComparisonTable) -> list[LossCurve]:
    """One training-loss curve per train stage of the table's runs."""
    curves = []
    for folder, label in _train_stages(runs, table):
        logs = [folder / "train.log", *sorted(folder.glob("train.node*.log"))]
        log = next((p for p in logs if p.is_file()), None)
        points = parse_train_log(log) if log is not None else []
        if points:
            curves.append(LossCurve(label, str(log), points))
    return curves


def selection_curves(runs: list[RunData], table: ComparisonTable) -> list[LossCurve]:
    """One curve per train stage that selected a checkpoint: the held-out score of each checkpoint by step."""
    curves = []
    for folder, label in _train_stages(runs, table):
        done = folder / "done.json"
        try:
            selection = json.loads(done.read_text())["info"].get("checkpoint_selection")
        except (OSError, ValueError, KeyError):
            continue
        if not selection or not selection.get("scores"):
            continue
        metric = selection["metric"]
        points = [(float(s["step"]), float(s[metric])) for s in selection["scores"] if metric in s]
        tie = f", tie broken by {selection['tie_break']}" if selection.get("tie_break") else ""
        curves.append(LossCurve(f"{label}: {metric}, kept {selection['selected']}{tie}", str(done), points))
    return curves


def write_matrix_manifest(folder: Path, name: str, members: list[tuple[str, Path]],
                          settings: list[dict[str, Any]]) -> Path:
    from harness.store import atomic_write_json

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MATRIX_FILE
    atomic_write_json(path, {"name": name, "keys": list(dict.fromkeys(k for s in settings for k in s)),
                             "members": [{"name": n, "run_dir": str(d), "settings": s}
                                         for (n, d), s in zip(members, settings, strict=True)]})
    return path
