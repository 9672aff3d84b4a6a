"""`cgd plan`: what will run, what is cached, how many requests, and the teacher cost before anything is sent."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from harness.errors import HarnessError
from harness.llm import canonical
from harness.pipeline import STUDENT_KINDS, TEACHER_KINDS, Pipeline, PlannedStage
from harness.pricing import is_priced, price_for
from harness.prompts import load_style

# Outputs are budgeted at this share of max_tokens: real critiques rarely run to the cap, and the estimate says so.
OUTPUT_SHARE = 0.5
CHARS_PER_TOKEN = 4
CACHEABLE_TOKENS = 1024  # the shortest prefix Anthropic and OpenAI cache


def _rows_in(pipe: Pipeline, stage: PlannedStage) -> int:
    graph = next(g for g in pipe.graphs if g.recipe is stage.recipe)
    data = graph.stages["data"]
    if data.dir.is_done():
        return data.dir.manifest().get("records", 0)
    limit = data.params["limit"]
    source = data.runtime.get("source", "jsonl")
    if "rows" in data.runtime:  # an hf dataset's row count, known when the graph was built
        n = data.runtime["rows"]
    elif source == "hf":  # streaming, or not in the cache yet
        return limit or 0
    else:
        try:
            if source == "jsonl":
                with open(data.runtime["path"], encoding="utf-8") as handle:
                    n = sum(1 for line in handle if line.strip())
            else:
                from harness.data.sources import read_source

                n = sum(1 for _ in read_source(data.runtime).rows)
        except (FileNotFoundError, HarnessError):  # a plan made before the data is there: data.limit rows, if any
            return limit or 0
    return min(n, limit) if limit else n


def _teacher_estimate(pipe: Pipeline, stage: PlannedStage, n: int) -> tuple[int, int, float | None]:
    """(input tokens, output tokens, USD) for a teacher stage, from the prompt templates and max_tokens.

    Batch mode bills at the batch discount. A system prompt long enough for the providers' prompt caches
    (1024 tokens) is billed once as a cache write and then as cached reads."""
    recipe = stage.recipe
    t = recipe.teacher
    provider = canonical(t.provider)
    style = load_style(recipe.critique.style)
    sample = "x" * 400  # a typical prompt's length when the data is not loaded yet
    draft = "x" * (recipe.student.generation.max_tokens * CHARS_PER_TOKEN // 2)
    crit = "x" * int(t.generation.max_tokens * CHARS_PER_TOKEN * OUTPUT_SHARE)
    messages = {"critique": style.critique_messages(sample, draft), "answer": style.answer_messages(sample),
                "refine": style.refine_messages(sample, draft, crit)}[stage.kind]
    if stage.kind == "critique" and style.fixed_critiques:
        return 0, 0, 0.0
    per_request = sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN
    system = sum(len(m["content"]) for m in messages if m["role"] == "system") // CHARS_PER_TOKEN
    tokens_in = n * per_request
    tokens_out = int(n * t.generation.max_tokens * t.generation.n * OUTPUT_SHARE)
    if not is_priced(provider, t.model, t.price):
        return tokens_in, tokens_out, None
    cached = system * max(n - 1, 0) if system >= CACHEABLE_TOKENS else 0
    written = system if cached else 0
    price = price_for(provider, t.model, t.price)
    cost = price.cost(tokens_in, tokens_out, cached, batch=t.batch, cache_write_tokens=written)
    return tokens_in, tokens_out, cost


def _decontamination(pipe: Pipeline, stage: PlannedStage) -> dict[str, Any] | str:
    """The decontaminate stage's counts: from its manifest when done, else computed now (reading the prompts the
    data stage would read and the benchmarks' local copies; seconds); a line saying why not when it cannot be."""
    from types import SimpleNamespace

    from harness.stages import STAGES
    from harness.stages.decontaminate import check

    if stage.dir.is_done():
        return {k: v for k, v in stage.dir.manifest().get("info", {}).items() if k != "seconds"}
    graph = next(g for g in pipe.graphs if g.recipe is stage.recipe)
    data = graph.stages["data"]
    try:
        if data.dir.is_done():
            records = data.dir.read_records()
        elif data.runtime.get("streaming"):
            return "checked when the data stage has run (a streamed dataset is not read at plan time)"
        else:
            ctx = SimpleNamespace(name="data", params=data.params, runtime=data.runtime, log=lambda message: None)
            records = STAGES["data"].run(ctx, {}).records
    except Exception as exc:  # noqa: BLE001 - a plan made before the data is there
        return f"checked when the data stage has run ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    result = check([str(r["prompt"]) for r in records], stage.runtime["suites"], stage.params["ngram"])
    return {"mode": stage.params["mode"], **result["summary"]}


def plan_rows(pipe: Pipeline) -> list[dict[str, Any]]:
    rows = []
    for stage in pipe.unique_stages():
        done = stage.dir.is_done()
        row: dict[str, Any] = {"stage": stage.name, "recipe": stage.recipe.name, "kind": stage.kind,
                               "status": "cached" if done else "will run", "fingerprint": stage.fingerprint[:16],
                               "requests": 0, "est_tokens": 0, "est_cost_usd": 0.0}
        if stage.kind == "decontaminate":
            row["decontamination"] = _decontamination(pipe, stage)
        if stage.kind in (*STUDENT_KINDS, *TEACHER_KINDS):
            n = _rows_in(pipe, stage)
            row["requests"] = 0 if done else n
            if stage.kind in TEACHER_KINDS and not done:
                tin, tout, cost = _teacher_estimate(pipe, stage, n)
                row.update(est_tokens=tin + tout, est_cost_usd=None if cost is None else round(cost, 4))
        rows.append(row)
    return rows


def render_plan(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="plan")
    for col in ("stage", "recipe", "status", "requests", "est. tokens", "est. cost $"):
        table.add_column(col, justify="right" if col.startswith(("req", "est")) else "left")
    for r in rows:
        cost = "price unknown" if r["est_cost_usd"] is None else f"{r['est_cost_usd']:.4f}"
        status = f"[green]{r['status']}[/green]" if r["status"] == "cached" else f"[yellow]{r['status']}[/yellow]"
        tokens = f"{r['est_tokens']:,}" if r["est_tokens"] else ""
        shown_cost = cost if r["est_cost_usd"] else ("" if r["est_cost_usd"] == 0 else cost)
        table.add_row(r["stage"], r["recipe"], status, str(r["requests"] or ""), tokens, shown_cost)
    console.print(table)
    for r in rows:
        if "decontamination" in r:
            render_decontamination(console, r["recipe"], r["decontamination"])
    total = sum(r["est_cost_usd"] or 0 for r in rows)
    unknown = any(r["est_cost_usd"] is None for r in rows)
    console.print(f"estimated teacher cost: ${total:.2f}{' (+ stages with unknown prices)' if unknown else ''}"
                  f"  [dim](outputs assumed at {int(OUTPUT_SHARE * 100)}% of max_tokens)[/dim]")


def render_decontamination(console: Console, recipe: str, found: dict[str, Any] | str) -> None:
    """One line of counts, then the benchmarks with hits (an example each) and those not checked."""
    from rich.markup import escape

    from harness.decontam import NOT_CHECKED, summary_line

    if isinstance(found, str):
        console.print(f"decontamination ({escape(recipe)}): {escape(found)}")
        return
    action = " (dropped before any request)" if found.get("mode") == "drop" else " (data.decontaminate: report)"
    console.print(f"decontamination ({escape(recipe)}): {escape(summary_line(found))}{action}")
    for name, b in found["benchmarks"].items():
        if b["hits"]:
            ex = b["examples"][0]
            console.print(f"  {escape(name)}: {b['hits']} hits ({b['exact']} exact), e.g. {escape(repr(ex['prompt']))}"
                          f" ~ {escape(repr(ex['problem']))} ({ex['match']})")
    unchecked = [name for name, b in found["benchmarks"].items() if b["status"] == NOT_CHECKED]
    if unchecked:
        console.print(f"  {NOT_CHECKED}: {escape(', '.join(unchecked))}")
