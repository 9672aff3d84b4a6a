"""`cgd train`: train a recipe's models (and the stages they need), one machine's share of a multi-machine
training, or an sbatch script for a Slurm cluster. Registered on the main `cgd` app by harness/cli.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from harness.errors import HarnessError, Problem, RecipeError


def training_problems(recipes: list[Any]) -> list[Problem]:
    """`cgd validate`'s training checks (Axolotl's schema for `train.axolotl` keys, the DeepSpeed file)."""
    from harness.axolotl.check import validate_recipe_training

    found: list[Problem] = []
    for recipe in recipes:
        found += [p for p in validate_recipe_training(recipe) if p not in found]
    return sorted(found, key=lambda p: (p.file, p.line, p.col))


def _targets(recipe: Any, variants: list[str] | None, seeds: list[int] | None) -> list[tuple[str, int]]:
    trained = [v for v in recipe.variants if v != "base"]
    for v in variants or []:
        if v not in trained:
            raise HarnessError(f"--variant: '{v}' is not trained by this recipe; its trained variants: "
                               f"{', '.join(trained) or 'none'}")
    for s in seeds or []:
        if s not in recipe.train_seeds:
            raise HarnessError(f"--seed: {s} is not one of the recipe's seeds ({recipe.train_seeds})")
    return [(v, s) for v in (variants or trained) for s in (seeds or recipe.train_seeds)]


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        recipe: Annotated[Path, typer.Argument(help="Recipe file.")],
        variant: Annotated[list[str] | None, typer.Option("--variant", help="Only this variant (repeatable).")] = None,
        seed: Annotated[list[int] | None, typer.Option("--seed", help="Only this seed (repeatable).")] = None,
        set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: a.b=value.")] = None,
        runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Where runs live.")] = None,
        emit_slurm: Annotated[bool, typer.Option("--emit-slurm", help="Write an sbatch script instead of training "
                                                 "(nodes from train.launcher.num_machines).")] = False,
        output: Annotated[Path | None, typer.Option("-o", "--output", help="Script file (default: stdout).")] = None,
        node_rank: Annotated[int | None, typer.Option("--node-rank", help="Run this machine's share of a "
                                                      "multi-machine training (every machine runs it).")] = None,
        main_process_ip: Annotated[str | None, typer.Option("--main-process-ip", help="Rank-0 machine's address "
                                                            "(default: train.launcher.main_process_ip).")] = None,
        main_process_port: Annotated[int | None, typer.Option("--main-process-port")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the trained models as JSON.")] = False,
    ) -> None:
        """Train the recipe's models (one per variant and seed), running the stages they need first."""
        from harness.paths import default_runs_dir
        from harness.recipe import load_recipes

        recipes = load_recipes(recipe, set_ or [])
        jobs = _targets(recipes[0], variant, seed)
        runs = runs_dir or default_runs_dir()
        if emit_slurm:
            from harness.axolotl.slurm import render_sbatch

            if len(recipes) > 1:
                raise HarnessError("--emit-slurm: a matrix recipe has several members; emit one member with --set")
            text = render_sbatch(recipes[0], recipe_path=recipe, jobs=jobs, runs_dir=runs, overrides=set_)
            if output is None:
                sys.stdout.write(text)
            else:
                output.write_text(text)
                output.chmod(0o755)
                print(f"wrote {output} ({recipes[0].train.launcher.num_machines} node(s)); submit: sbatch {output}",
                      file=sys.stderr)
            return
        console = Console(stderr=as_json, highlight=False)
        from harness.pipeline import Pipeline, run_lock
        from harness.store import RunStore

        store = RunStore(runs)
        names = {f"train:{v}:{s}" for v, s in jobs}
        try:
            if node_rank is not None:
                if len(jobs) != 1 or len(recipes) != 1:
                    raise HarnessError("--node-rank trains one model: name one --variant and one --seed")
                _run_node(Pipeline(recipes, store, console), names.pop(), {
                    "machine_rank": node_rank, "main_process_ip": main_process_ip,
                    "main_process_port": main_process_port})
                return
            with run_lock(store, recipes):
                summaries = Pipeline(recipes, store, console).run(until="train", targets=names)
        finally:
            store.close()
        models = {k: v for s in summaries for k, v in s["models"].items() if k != "base"}
        if as_json:
            print(json.dumps({"models": models}, indent=2))
        else:
            for label, path in models.items():
                console.print(f"{escape(label)}: {escape(str(path))}")


def _run_node(pipe: Any, name: str, overrides: dict[str, Any]) -> None:
    from harness.stages.base import StageContext
    from harness.stages.train import run_node

    stage = pipe.graphs[0].stages[name]
    missing = [up for up in stage.inputs.values() if not pipe.graphs[0].stages[up].dir.is_done()]
    if missing:
        raise HarnessError(f"{name} needs {', '.join(missing)} first: run `cgd run RECIPE --until export` once "
                           "before starting the machines")
    stage.dir.path.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(stage.name, stage.params, stage.runtime, stage.dir, pipe.store, pipe.console, stage.recipe)
    try:
        run_node(ctx, pipe.inputs_of(stage), overrides)
    except ValueError as exc:  # a launcher that cannot start (e.g. no main_process_ip for several machines)
        from harness.axolotl.check import locate

        raise RecipeError(locate(stage.recipe, [(("train", "launcher"), str(exc))])) from None
