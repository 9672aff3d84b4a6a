"""`cgd eval` and `cgd data seed|export`: score a model on suites outside a recipe, show the prompts a suite sends,
and prepare benchmark data for offline machines. Registered on the main `cgd` app by harness/cli.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from harness.errors import HarnessError


def _console(json_mode: bool) -> Console:
    return Console(stderr=json_mode, highlight=False)


def eval_command(
    model: Annotated[str | None, typer.Argument(help="Model folder (or a hub id in the local cache).")] = None,
    suite: Annotated[list[str] | None, typer.Option("--suite", "-s", help="Suite name (repeatable); default math.")]
    = None,
    limit: Annotated[int | None, typer.Option(help="Score only the first N items of each task.")] = None,
    max_gen_toks: Annotated[int | None, typer.Option(help="Generation cap for lm-eval tasks (changes the "
                                                          "suite hash).")] = None,
    task: Annotated[list[str] | None, typer.Option("--task", help="--show-prompt: only these tasks or benchmarks.")]
    = None,
    add_task: Annotated[list[str] | None, typer.Option("--add-task", help="Extra lm-eval task for the first suite "
                                                                          "(repeatable; changes its hash).")] = None,
    grader: Annotated[str, typer.Option(help="Answer grader of the math tasks: math_verify or paper (the CGD "
                                             "paper's math_equal; changes the suite hash).")] = "math_verify",
    backend: Annotated[str, typer.Option(help="hf, served (a running server: --base-url) or vllm.")] = "hf",
    base_url: Annotated[str | None, typer.Option(help="Root URL of a running OpenAI-compatible server.")] = None,
    served_model: Annotated[str | None, typer.Option(help="Model name the server answers to.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size of the hf back-end.")] = 8,
    output: Annotated[Path | None, typer.Option("-o", help="Write the normalized rows (JSONL) here.")] = None,
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Where the eval cache lives.")] = None,
    show_prompt: Annotated[bool, typer.Option("--show-prompt", help="Print the rendered prompts; run nothing.")]
    = False,
    template: Annotated[str | None, typer.Option(help="--show-prompt: qwen2.5-math, llama-3.1, a model folder or a "
                                                      ".jinja file (default: MODEL's tokenizer).")] = None,
    docs: Annotated[int, typer.Option(help="--show-prompt: documents per task.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (rows, or prompts).")] = False,
) -> None:
    """Score MODEL on eval suites (cached by model content and suite settings), or show a suite's prompts."""
    from harness.evaluation import EvalBackend, load_suite

    console = _console(as_json)
    names = suite or ["math"]
    if show_prompt:
        from harness.evaluation.prompts import load_chat_template, render_prompts

        spec = template or model
        if spec is None:
            raise HarnessError("--show-prompt needs --template (qwen2.5-math, llama-3.1, a folder, a .jinja) or MODEL")
        chat = load_chat_template(spec)
        prompts = []
        for name in names:
            prompts += [{"suite": name, **p} for p in render_prompts(load_suite(name, max_gen_toks=max_gen_toks),
                                                                     chat, tasks=task, docs=docs)]
        if as_json:
            print(json.dumps({"template": chat.label, "prompts": prompts}, indent=2))
            return
        console.print(f"[bold]chat template:[/bold] {chat.label}")
        for p in prompts:
            console.rule(f"{p['suite']} / {p['task']} (doc {p['doc_id']}, {p['docs_from']})")
            sys.stdout.write(p["prompt"] + "\n")
            sys.stdout.flush()
        return
    if model is None:
        raise HarnessError("cgd eval: give a MODEL (or --show-prompt)")
    from harness.paths import default_runs_dir
    from harness.stages.evaluate import score_model
    from harness.store import write_jsonl

    suites = [load_suite(name, max_gen_toks=max_gen_toks, add_tasks=add_task if i == 0 else None, grader=grader)
              for i, name in enumerate(names)]
    back = EvalBackend(kind=backend, base_url=base_url, served_model=served_model)
    root = runs_dir or default_runs_dir()
    rows, model_hash = score_model(model, suites, store_root=root, limit=limit, batch_size=batch_size, backend=back,
                                   console=console, log=lambda m: console.print(f"  [dim]{escape(m)}[/dim]"))
    rows = [{**r, "model": model, "model_hash": model_hash, "variant": "model", "seed": None} for r in rows]
    out = output or root / "evals" / f"results-{model_hash[:12]}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, rows)
    if as_json:
        print(json.dumps({"results": str(out), "rows": rows}, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{model} ({', '.join(names)})")
    for col in ("benchmark", "metric", "value", "± stderr", "n"):
        table.add_column(col)
    for r in rows:
        if r.get("primary"):
            err = "" if r["stderr"] is None else f"{100 * r['stderr']:.1f}"
            table.add_row(r["benchmark"], r["metric"], f"{100 * r['value']:.1f}", err, str(r["n"]))
    console.print(table)
    console.print(f"results: {escape(str(out))}")


data_app = typer.Typer(no_args_is_help=True, help="Benchmark data for offline evaluation.")


@data_app.command("seed")
def data_seed(
    source: Annotated[Path | None, typer.Option("--from", help="Folder in the seed layout (hf/<org>__<name>/"
                                                               "<config>/<split>.jsonl, evalplus/*.jsonl).")] = None,
    fixtures: Annotated[bool, typer.Option("--fixtures", help="Seed the shipped test rows (eval_suites/fixtures): "
                                                              "a few made-up rows per benchmark, NOT the benchmarks."
                                           )] = False,
    suite: Annotated[list[str] | None, typer.Option("--suite", help="Only the datasets of these suites.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="datasets cache to write (default: $HF_DATASETS_CACHE or "
                                                        "$HF_HOME/datasets).")] = None,
    evalplus_dir: Annotated[Path | None, typer.Option(help="EvalPlus cache (default $XDG_CACHE_HOME/evalplus).")]
    = None,
) -> None:
    """Write the `datasets` Arrow cache (and EvalPlus's files) from local JSONL in each benchmark's schema, so the
    built-in lm-eval tasks run unchanged with HF_HUB_OFFLINE=1."""
    from harness.datasets_seed import FIXTURES_DIR, hf_datasets_cache, seed_all
    from harness.evaluation import load_suite, suite_datasets

    only = None
    if suite:
        only = set()
        for name in suite:
            s = load_suite(name)
            only |= {d["path"] for d in suite_datasets(s)}
            if s.get("evalplus"):
                only.add("evalplus")
    if (source is None) == (not fixtures):
        raise HarnessError("cgd data seed: give --from DIR (exported benchmark data) or --fixtures (the shipped "
                           "test rows), not both")
    src = source or FIXTURES_DIR
    if not src.is_dir():
        raise HarnessError(f"--from {src}: not a folder")
    if fixtures and cache_dir is None:
        print("warning: the fixture rows now shadow any real copy of these datasets in this cache; use a cache of "
              "their own (HF_HOME or --cache-dir) for tests", file=sys.stderr)
    seeded = seed_all(src, cache_dir=cache_dir, evalplus_dir=evalplus_dir, only=only)
    for s in seeded:
        splits = ", ".join(f"{k}={v}" for k, v in s.splits.items())
        print(f"{s.repo_id} [{s.config}] {splits}")
    print(f"{len(seeded)} datasets -> {cache_dir or hf_datasets_cache()}")


@data_app.command("export")
def data_export(
    to: Annotated[Path, typer.Option("--to", help="Folder to write (the `cgd data seed --from` layout).")],
    suite: Annotated[list[str], typer.Option("--suite", help="Suites whose datasets to export (repeatable).")],
) -> None:
    """On a machine with hub access: write the suites' datasets (and EvalPlus files) as JSONL for `cgd data seed`."""
    import shutil

    from harness.datasets_seed import export_dataset
    from harness.evaluation import load_suite, suite_datasets

    for name in suite:
        s = load_suite(name)
        for d in suite_datasets(s):
            configs = [d.get("config")]
            if d.get("config") == "*":
                import datasets

                configs = datasets.get_dataset_config_names(d["path"], revision=d.get("revision"))
            for cfg in configs:
                counts = export_dataset(d["path"], cfg, list(d["splits"]), to, revision=d.get("revision"))
                print(f"{d['path']} [{cfg or 'default'}] {counts}")
        for ds in (s.get("evalplus") or {}).get("datasets", []):
            from evalplus.data import get_human_eval_plus, get_mbpp_plus

            from harness.evaluation.evalplus_run import dataset_file

            (get_human_eval_plus if ds["dataset"] == "humaneval" else get_mbpp_plus)(version=ds["version"])
            src = dataset_file(ds["dataset"], ds["version"])
            (to / "evalplus").mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, to / "evalplus" / src.name)
            print(f"evalplus {src.name}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.add_typer(data_app, name="data")
