"""`cgd inspect`: exported examples as Axolotl tokenizes them, trained tokens highlighted; and what `cgd status`
shows of a run's stages as they are on disk now."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.errors import HarnessError
from harness.store import read_run_json


def inspect_dataset(run_dir: Path, variant: str, n: int, console: Console) -> None:
    from harness.axolotl.config import render_axolotl_config
    from harness.axolotl.masking import check_trained_spans, render_example
    from harness.recipe import Recipe

    run_json = run_dir / "run.json"
    if not run_json.exists():
        raise HarnessError(f"{run_dir}: no run.json here (not a run folder)")
    info = read_run_json(run_json)
    if variant not in info["datasets"]:
        raise HarnessError(f"no dataset for variant '{variant}' in {run_dir}; available: "
                           f"{', '.join(sorted(info['datasets'])) or 'none (run with --until export first)'}")
    recipe = Recipe.model_validate(info["recipe_config"])
    dataset = Path(info["datasets"][variant])
    model = info["models"]["base"]
    scratch = dataset.parent / "inspect"
    cfg = render_axolotl_config(recipe.train, base_model=model, dataset_path=dataset, output_dir=scratch / "out",
                                prepared_dir=scratch / "prepared", seed=recipe.seed, on_gpu=False)
    report = check_trained_spans(cfg, n=n)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    for entry in report.entries:
        console.rule(f"{variant} · {entry.id} · {'ok' if entry.ok else 'MASK MISMATCH'}")
        console.print(render_example(entry, tokenizer))
    console.print(f"[bold]{'all trained spans are exactly the targets' if report.ok else 'masking problems found'}"
                  f"[/bold] ({len(report.entries)} examples; trained = [bold green]green[/bold green])")


GENERATING_KINDS = ("probe", "critique", "refine", "answer")


@dataclass
class StageStatus:
    """One stage of a run as it is on disk now (not as of the last run): done.json is a stage's commit point,
    partial.json marks a stage that ended with failed records, a journal alone a stage that was interrupted."""

    name: str
    kind: str
    state: str  # done | partial | interrupted | blocked | missing
    output: str
    spent_usd: float | None  # from the stage's spend.jsonl ledger (unfinished stages too); None: spends nothing
    path: str
    ok: int | None = None
    failed: int | None = None
    unsent: int | None = None
    records: int | None = None
    message: str = ""


def _stage_path(raw: str, store_root: Path | None) -> Path:
    path = Path(raw)
    if path.is_absolute() or store_root is None or path.exists():
        return path
    for base in (store_root, store_root.parent):  # paths relative to the runs folder, or to where it was made
        if (base / path).exists():
            return base / path
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stage_status(name: str, raw_path: str, cost_usd: float | None = None,
                 store_root: Path | None = None) -> StageStatus:
    from harness.pipeline import describe_output
    from harness.stages.generation import read_spend

    path = _stage_path(raw_path, store_root)
    kind = name.split(":")[0]
    ledger = path / "spend.jsonl"
    if ledger.exists():
        spent: float | None = round(read_spend(ledger), 6)
    else:  # a generating stage that has paid nothing yet shows 0; the others spend nothing
        spent = float(cost_usd or 0.0) if kind in GENERATING_KINDS or cost_usd else None
    manifest = _read_json(path / "done.json") if (path / "done.json").exists() else {}
    if manifest:
        return StageStatus(name, kind, "done", describe_output(manifest), spent, str(path),
                           records=manifest.get("records"))
    marker = _read_json(path / "partial.json") if (path / "partial.json").exists() else {}
    if marker:
        ok, failed, unsent, total = (marker.get(k, 0) for k in ("ok", "failed", "unsent", "records"))
        output = f"{ok}/{total} ok, {failed} failed" + (f", {unsent} unsent" if unsent else "")
        return StageStatus(name, kind, "partial", output, spent, str(path), ok=ok, failed=failed, unsent=unsent,
                           records=total, message=str(marker.get("message", "")))
    if (path / "journal.jsonl").exists():
        lines = _count_lines(path / "journal.jsonl")
        return StageStatus(name, kind, "interrupted", f"{lines} records in its journal", spent, str(path))
    return StageStatus(name, kind, "missing", "", spent, str(path))


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return 0


def run_status(info: dict[str, Any], store_root: Path | None = None) -> list[StageStatus]:
    """Every stage of a run (its run.json) as it is on disk now, with the spend so far."""
    rows = []
    for name, st in info["stages"].items():
        row = stage_status(name, st["path"], st.get("cost_usd"), store_root)
        if row.state == "missing" and st.get("status") == "blocked":  # behind a partial stage in the last run
            row.state, row.output = "blocked", "an upstream stage is partial"
        rows.append(row)
    return rows
