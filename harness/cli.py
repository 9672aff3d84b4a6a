"""The `cgd` command: validate, plan, run, status, inspect, report, leaderboard, publish.

Exit codes: 0 done, 1 a stage failed (its log tail is shown), 2 bad input. Tracebacks are for bugs only.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from harness.errors import HarnessError, RecipeError, write_error
from harness.paths import default_runs_dir

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Critique-Guided Distillation experiments from YAML recipes.")

RunsDir = Annotated[Path | None, typer.Option("--runs-dir", help="Where runs and the shared stage store live.")]
Sets = Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: a.b=value (repeatable).")]


def _console(json_mode: bool = False) -> Console:
    # With --json, stdout carries only the JSON object; progress and tables go to stderr.
    return Console(stderr=json_mode, highlight=False)


def _fail(message: str, code: int) -> None:
    print(message, file=sys.stderr)  # plain print: rich would wrap FILE:LINE:COL lines at the terminal width
    raise typer.Exit(code)


def _load(recipe: Path, overrides: list[str] | None):
    from harness.recipe import load_recipes

    return load_recipes(recipe, overrides or [])


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Recipe files.")],
             preflight: Annotated[bool, typer.Option(
                 "--preflight", help="Also check what the stages that will run need here: API keys in the "
                                     "environment, the vllm command, GPUs (as `cgd plan` and `cgd run` do).")] = False,
             runs_dir: RunsDir = None, set_: Sets = None) -> None:
    """Check recipes: exit 0, or 2 with FILE:LINE:COL: message per problem. Writes nothing."""
    from harness.axolotl.cli import training_problems
    from harness.recipe import load_recipes

    problems: list[str] = []
    for path in files:
        try:
            members = load_recipes(path, set_ or [])
        except RecipeError as exc:
            problems += [str(p) for p in exc.problems]
            continue
        found = training_problems(members)  # Axolotl's own schema for train.axolotl keys
        if found:
            problems += [str(p) for p in found]
            continue
        found_in_graph = _graph_problems(members, runs_dir)  # stage contracts, data file
        if found_in_graph:
            problems += found_in_graph
            continue
        if preflight:
            found_here = _preflight_problems(members, runs_dir)
            if found_here:
                problems += found_here
                continue
        suffix = f" ({len(members)} matrix members)" if len(members) > 1 else ""
        Console(highlight=False).print(f"{escape(str(path))}: ok{suffix}")
    if problems:
        _fail("\n".join(problems), 2)


def _graph_problems(recipes, runs_dir: Path | None) -> list[str]:
    """What building the stage graph refuses (a stage reading a field nothing upstream writes, a bad data file)."""
    from harness.pipeline import build_graph
    from harness.store import RunStore

    store = RunStore(runs_dir or default_runs_dir())  # nothing is written: the graph only names stage folders
    problems: list[str] = []
    for recipe in recipes:
        try:
            build_graph(recipe, store, require_data=False)
        except HarnessError as exc:
            problems += [line for line in str(exc).splitlines() if line not in problems]
    return problems


def _preflight_problems(recipes, runs_dir: Path | None) -> list[str]:
    """Preflight of a recipe's plan (stages cached in the runs folder need nothing); reads, never writes."""
    from harness.pipeline import Pipeline
    from harness.preflight import preflight
    from harness.store import RunStore

    try:
        pipe = Pipeline(recipes, RunStore(runs_dir or default_runs_dir()), _console(True), require_data=False)
    except RecipeError as exc:
        return [str(p) for p in exc.problems]
    except HarnessError as exc:
        return [f"error: {exc}"]
    return preflight(pipe)


PREFLIGHT_HEAD = "preflight: {n} problem(s) must be fixed before `cgd run` can start (nothing was sent):"
PLAN_PREFLIGHT_HEAD = ("preflight: {n} problem(s) would stop `cgd run` on this machine (`cgd validate --preflight` "
                       "exits 2 on them):")


@app.command()
def protocol(write: Annotated[bool, typer.Option("--write", help="Also write docs/protocol.md.")] = False) -> None:
    """Each paper recipe's settings beside the official code's, with the source of each official value."""
    from rich.table import Table

    from harness import protocol as proto

    console = _console()
    for name in proto.PAPER_RECIPES:
        table = Table(title=f"recipes/{name}.yaml", show_lines=False)
        for col in ("setting", "harness", "official", "source", "status"):
            table.add_column(col, overflow="fold")
        for row in proto.rows(name):
            color = "green" if row["status"] == "same" else ("yellow" if row["status"] != "DIFFERS" else "red")
            table.add_row(*(escape(str(row[c])) for c in ("setting", "harness", "official", "source")),
                          f"[{color}]{escape(row['status'])}[/{color}]")
        console.print(table)
    if write:
        console.print(f"wrote {escape(str(proto.write()))}")
    off = proto.mismatches()
    if off:
        console.print(f"[red]{len(off)} setting(s) differ from the official protocol without a stated reason[/red]")


@app.command()
def keys(prefix: Annotated[str, typer.Argument(help="Only keys starting with this, e.g. train.")] = "") -> None:
    """Every recipe key with its type, default and description."""
    from rich.table import Table

    from harness.recipe.reference import walk

    table = Table(title="recipe keys", show_lines=False)
    for col in ("key", "type", "default", "description"):
        table.add_column(col, overflow="fold")
    for row in walk():
        if row[0].startswith(prefix):
            table.add_row(*row)
    _console().print(table)


@app.command()
def plan(recipe: Path, set_: Sets = None, runs_dir: RunsDir = None,
         as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the stages, which are cached and which will run, request counts and the estimated teacher cost; then
    what would stop `cgd run` here (preflight: API keys, the vllm command, GPUs), reported without failing."""
    from harness.estimate import plan_rows, render_plan
    from harness.pipeline import Pipeline
    from harness.preflight import preflight
    from harness.store import RunStore

    console = _console(as_json)
    recipes = _load(recipe, set_)
    pipe = Pipeline(recipes, RunStore(runs_dir or default_runs_dir()), console, require_data=False)
    rows = plan_rows(pipe)
    problems = preflight(pipe)
    if as_json:
        print(json.dumps({"stages": rows, "estimated_cost_usd": round(sum(r["est_cost_usd"] or 0 for r in rows), 4),
                          "preflight": problems}))
    else:
        render_plan(console, rows)
    if problems:  # reported, not fatal: a plan (and its cost) is also made away from the machine that will run it
        print("\n".join([PLAN_PREFLIGHT_HEAD.format(n=len(problems)), *problems]), file=sys.stderr)


@app.command()
def run(recipe: Path, until: Annotated[str | None, typer.Option(help="Stop after this stage kind.")] = None,
        set_: Sets = None, runs_dir: RunsDir = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary last.")] = False) -> None:
    """Run what is not done yet, then print the comparison table (a matrix: its pivot) and write the reports."""
    from harness.pipeline import KINDS, Pipeline, run_lock
    from harness.preflight import preflight
    from harness.report.write import write_run_reports
    from harness.stages.base import RunPartial, StageFailed
    from harness.store import RunStore

    if until is not None and until not in KINDS:
        _fail(f"--until: unknown stage '{until}'; available: {', '.join(KINDS)}", 2)
    _pin_cpu_numerics()
    console = _console(as_json)
    recipes = _load(recipe, set_)
    store = RunStore(runs_dir or default_runs_dir())
    stop = None if until == "report" else until
    try:
        pipe = Pipeline(recipes, store, console)
        problems = preflight(pipe, stop)  # before any stage runs: nothing is sent, no server started
        if problems:
            _fail("\n".join([PREFLIGHT_HEAD.format(n=len(problems)), *problems]), 2)
        with run_lock(store, recipes):
            summaries = pipe.run(until=stop)
    except StageFailed as exc:
        if as_json and isinstance(exc, RunPartial):  # a partial run still prints its summary, then exits 1
            print(json.dumps(_json_out(exc.summaries, None), indent=2))
        raise
    finally:
        store.close()
    matrix = write_run_reports(summaries, recipes, store.root, console)
    pipe.tracking.finish(summaries, matrix)  # W&B / MLflow (tracking:): evaluation rows, final table; closes runs
    if as_json:
        print(json.dumps(_json_out(summaries, matrix), indent=2))


def _pin_cpu_numerics() -> None:
    """On a machine without GPUs, in-process drafts and scores use the same CPU kernels and thread counts on any
    machine of this kind (set before torch loads; values the user set win). A GPU machine is left as it is."""
    import shutil

    if shutil.which("nvidia-smi") is not None or "torch" in sys.modules:
        return
    from harness.tiny.student import cpu_numerics_env

    for name, value in cpu_numerics_env().items():
        os.environ.setdefault(name, value)


def _run_status(summary: dict) -> str:
    states = {s.get("status") for s in summary.get("stages", {}).values()}
    return "partial" if states & {"partial", "blocked"} else "done"


def _json_out(summaries: list[dict], matrix) -> dict:
    summaries = [{**s, "status": _run_status(s)} for s in summaries]
    if len(summaries) == 1:
        return summaries[0]
    return {"runs": summaries, "status": "partial" if any(s["status"] == "partial" for s in summaries) else "done",
            **({"matrix": matrix} if matrix else {})}


@app.command()
def status(target: Annotated[Path, typer.Argument(help="A run folder or a recipe file.")], runs_dir: RunsDir = None,
           set_: Sets = None) -> None:
    """Which stages of a run are done, partial (with their ok/failed/unsent counts), blocked or missing, and the
    spend so far per stage and in total (unfinished stages included); of a recipe file, its plan."""
    from rich.table import Table

    from harness.pipeline import TEACHER_KINDS

    console = _console()
    if target.suffix in (".yaml", ".yml"):
        from harness.estimate import plan_rows, render_plan
        from harness.pipeline import Pipeline
        from harness.store import RunStore

        pipe = Pipeline(_load(target, set_), RunStore(runs_dir or default_runs_dir()), console, require_data=False)
        render_plan(console, plan_rows(pipe))
        return
    run_json = target / "run.json"
    if not run_json.exists():
        _fail(f"{target}: no run.json here (not a run folder)", 2)
    from harness.inspect import run_status
    from harness.store import read_run_json

    try:
        info = read_run_json(run_json)
        rows = run_status(info, store_root=(runs_dir or target.absolute().parent))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _fail(f"{run_json}: cannot be read ({exc})", 2)
    table = Table(title=f"{info['recipe']} (last run {info.get('updated')})")
    for col in ("stage", "state", "output", "spent $", "folder"):
        table.add_column(col, overflow="fold")
    colors = {"done": "green", "partial": "red", "interrupted": "yellow"}
    for row in rows:
        state = f"[{colors[row.state]}]{row.state}[/]" if row.state in colors else row.state
        spent = "" if row.spent_usd is None else f"{row.spent_usd:.4f}"
        table.add_row(escape(row.name), state, escape(row.output), spent, escape(Path(row.path).name))
    console.print(table)
    for row in rows:
        if row.state == "partial" and row.message:
            console.print(f"[red]{escape(row.name)}[/red] partial: {escape(row.message)}", soft_wrap=True)
    teacher = [r for r in rows if r.kind in TEACHER_KINDS and r.spent_usd is not None]
    total = sum(r.spent_usd or 0.0 for r in rows)
    per_stage = ", ".join(f"{r.name} ${r.spent_usd:.4f}" for r in teacher)
    budget = (info.get("recipe_config") or {}).get("budget_usd")
    console.print(f"spend so far: ${total:.4f} in total" + (f" of budget_usd ${budget:g}" if budget else "")
                  + (f" ({per_stage})" if per_stage else "")
                  + " [dim](from each stage's spend.jsonl, unfinished stages included)[/dim]")
    if rows:
        console.print(f"stage folders: {escape(str(Path(rows[0].path).parent))}")


@app.command()
def inspect(run_dir: Path, variant: Annotated[str, typer.Option(help="Which dataset.")],
            n: Annotated[int, typer.Option("-n", help="How many examples.")] = 2) -> None:
    """Show N exported examples tokenized by Axolotl with the student's tokenizer; trained tokens highlighted."""
    from harness.inspect import inspect_dataset

    inspect_dataset(run_dir, variant, n, _console())


@app.command()
def report(run_dirs: Annotated[list[Path] | None, typer.Argument(
               help="Run folders, or a matrix folder (RUNS_DIR/<matrix name>).")] = None,
           fmt: Annotated[str, typer.Option("--format", help="md, html, csv or json; the terminal table if omitted "
                                                              "(or taken from -o's suffix).")] = "",
           output: Annotated[Path | None, typer.Option("-o", help="Write to this file.")] = None,
           reference: Annotated[list[str] | None, typer.Option(
               "--reference", help="Published results to show as extra rows (data/paper_results/NAME.json), "
                                   "e.g. paper-llama (repeatable).")] = None,
           versus: Annotated[list[str] | None, typer.Option(
               "--versus", help="Also show deltas of the non-baseline rows against this variant, e.g. cft "
                                "(repeatable).")] = None,
           pair: Annotated[list[str] | None, typer.Option(
               "--pair", help="Paired bootstrap of two rows, 'A,B' by row key (repeatable); default: every row "
                              "against base, or in an ablation every setting against the first.")] = None,
           bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples (0: no intervals).")] = 2000,
           bootstrap_seed: Annotated[int, typer.Option(help="Seed of the bootstrap resampling.")] = 0) -> None:
    """The comparison table of one or more runs; of several runs (a matrix), the pivot on the keys they differ in."""
    from harness.report import RENDERERS, build_table, load_runs, to_rich
    from harness.report.reference import available_references, read_reference

    run_dirs = run_dirs or []
    for name in reference or []:
        if not name.endswith(".json") and name not in available_references():
            _fail(f"--reference: unknown reference '{name}'; available: {', '.join(available_references())}", 2)
        read_reference(name)
    if not run_dirs and not reference:
        _fail("give run folders, --reference NAME, or both", 2)
    missing = [str(d) for d in run_dirs if not d.exists() and not list(d.parent.glob(f"{d.name}__*"))]
    if missing:
        _fail(f"no such run folder: {', '.join(missing)}", 2)
    runs, title = load_runs(run_dirs) if run_dirs else ([], "")
    runs = [r for r in runs if r.rows]
    if run_dirs and not runs:
        _fail(f"no results.jsonl in {', '.join(map(str, run_dirs))} (has `cgd run` reached evaluate?)", 2)
    if not fmt and output is not None:
        fmt = {".md": "md", ".html": "html", ".htm": "html", ".csv": "csv", ".json": "json"}.get(output.suffix, "")
    if fmt and fmt not in RENDERERS:
        _fail(f"--format: unknown format '{fmt}'; available: {', '.join(RENDERERS)}", 2)
    pairs = []
    for text in pair or []:
        split = _split_pair(text)
        if split is None:
            _fail(f"--pair: expected 'ROW_A,ROW_B', got '{text}'", 2)
        pairs.append(split)
    title = title or ", ".join(reference or [])
    table = build_table(runs, title, references=reference, bootstrap=bootstrap, bootstrap_seed=bootstrap_seed,
                        pairs=pairs or None, versus=versus)
    if not fmt:
        _console().print(to_rich(table))
        return
    text = RENDERERS[fmt](table)
    if output:
        output.write_text(text)
        _console().print(f"wrote {escape(str(output))}")
    else:
        sys.stdout.write(text)


def _split_pair(text: str) -> tuple[str, str] | None:
    """'A,B' split at the comma outside brackets (row keys like cgd[a=1,b=2] hold commas)."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            a, b = text[:i].strip(), text[i + 1:].strip()
            return (a, b) if a and b else None
    return None


@app.command()
def leaderboard(runs_dir: RunsDir = None,
                sort: Annotated[str | None, typer.Option(
                    "--sort", help="Column to sort by: a benchmark (math500 or MATH500), an average (math, "
                                   "'Math avg'), or recipe, student, teacher, variant, seeds, cost, date. Default: "
                                   "the first average.")] = None,
                fmt: Annotated[str, typer.Option("--format", help="md, html or json.")] = "md",
                output: Annotated[Path | None, typer.Option("-o", help="Write to this file.")] = None) -> None:
    """Every finished run in the runs folder in one table, one row per run and variant."""
    from harness.report import leaderboard as lb

    if fmt not in lb.RENDERERS:
        _fail(f"--format: unknown format '{fmt}'; available: {', '.join(lb.RENDERERS)}", 2)
    root = runs_dir or default_runs_dir()
    if not root.is_dir():
        _fail(f"no runs folder at {root} (set --runs-dir or $CGD_RUNS_DIR)", 2)
    try:
        board = lb.sort_board(lb.collect(root), sort)
    except HarnessError as exc:
        _fail(str(exc), 2)
    text = lb.RENDERERS[fmt](board)
    if output:
        output.write_text(text)
        _console().print(f"wrote {escape(str(output))} ({len(board.entries)} rows)")
    else:
        sys.stdout.write(text)


@app.command()
def publish(run_dir: Annotated[Path, typer.Argument(help="A run folder (RUNS_DIR/<recipe>).")],
            to: Annotated[str | None, typer.Option("--to", help="ORG/NAME; default: your Hub user / the run's "
                                                                "name.")] = None,
            private: Annotated[bool, typer.Option("--private", help="Create the repositories private.")] = False,
            only: Annotated[str | None, typer.Option("--only", help="datasets or models.")] = None,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go where; send "
                                                                    "nothing.")] = False) -> None:
    """Push the run's datasets (ORG/NAME-<variant>-data) and models (ORG/NAME-<variant>) with their cards to the
    Hugging Face Hub; the token comes from HF_TOKEN or HUGGING_FACE_HUB_TOKEN only."""
    from harness.publish import PublishError
    from harness.publish import publish as publish_run

    try:
        publish_run(run_dir, to, private=private, only=only, dry_run=dry_run)
    except PublishError as exc:
        _fail(f"error: {exc}", exc.code)


# `cgd eval` and `cgd data seed|export` live in harness/evaluation/cli.py.
def _register_eval_commands() -> None:
    from harness.evaluation.cli import register

    register(app)


_register_eval_commands()


def _register_train_command() -> None:  # `cgd train` lives in harness/axolotl/cli.py
    from harness.axolotl.cli import register

    register(app)


_register_train_command()


def _quiet_third_party_logs() -> None:
    """GPU-only kernels that fail to load on a CPU box and deprecation chatter: noise, not news, for a user."""
    import logging
    import os

    for name in ("torchao", "torch.utils._pytree", "lm_eval", "datasets", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("LMEVAL_LOG_LEVEL", "ERROR")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def main() -> None:
    from harness.stages.base import StageFailed

    _quiet_third_party_logs()

    try:
        # In non-standalone mode click returns the code of a typer.Exit instead of raising it.
        code = app(standalone_mode=False)
        if code == 130:  # click turns Ctrl-C into Abort -> exit 130 without a word
            _fail_plain("interrupted; finished work is kept and a re-run resumes", 130)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except RecipeError as exc:
        _fail_plain(str(exc), 2)
    except HarnessError as exc:
        _fail_plain(f"error: {exc}", 2)
    except StageFailed as exc:
        tail = f"\n--- log tail ---\n{exc.log_tail}" if exc.log_tail else ""
        _fail_plain(f"{exc}{tail}", 1)
    except KeyboardInterrupt:
        _fail_plain("interrupted; finished work is kept and a re-run resumes", 130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        if (unwritable := write_error(exc)) is not None:  # a read-only or full runs folder: one line, no traceback
            _fail_plain(f"error: {unwritable}", 2)
        raise


def _fail_plain(message: str, code: int) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
