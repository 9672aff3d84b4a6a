"""`cgd plan`: what will run, what is cached, how many requests, and the teacher cost before anything is sent."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

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
    try:
        with open(data.runtime["path"], encoding="utf-8") as handle:
            n = sum(1 for line in handle if line.strip())
    except FileNotFoundError:  # a plan made before the data is there: data.limit rows, if it says
        return data.params["limit"] or 0
    return min(n, data.params["limit"]) if data.params["limit"] else n


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


def plan_rows(pipe: Pipeline) -> list[dict[str, Any]]:
    rows = []
    for stage in pipe.unique_stages():
        done = stage.dir.is_done()
        row: dict[str, Any] = {"stage": stage.name, "recipe": stage.recipe.name, "kind": stage.kind,
                               "status": "cached" if done else "will run", "fingerprint": stage.fingerprint[:16],
                               "requests": 0, "est_tokens": 0, "est_cost_usd": 0.0}
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
    total = sum(r["est_cost_usd"] or 0 for r in rows)
    unknown = any(r["est_cost_usd"] is None for r in rows)
    console.print(f"estimated teacher cost: ${total:.2f}{' (+ stages with unknown prices)' if unknown else ''}"
                  f"  [dim](outputs assumed at {int(OUTPUT_SHARE * 100)}% of max_tokens)[/dim]")
