"""`cgd inspect`: exported examples as Axolotl tokenizes them, trained tokens highlighted."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from harness.errors import HarnessError


def inspect_dataset(run_dir: Path, variant: str, n: int, console: Console) -> None:
    from harness.axolotl.config import render_axolotl_config
    from harness.axolotl.masking import check_trained_spans, render_example
    from harness.recipe import Recipe

    run_json = run_dir / "run.json"
    if not run_json.exists():
        raise HarnessError(f"{run_dir}: no run.json here (not a run folder)")
    info = json.loads(run_json.read_text())
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
