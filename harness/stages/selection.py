"""Checkpoint selection that cannot tie silently: every checkpoint is scored on prompts held out from training,
with a metric the data's answers support.

- `accuracy`: the greedy answer to the plain prompt, graded against the reference (math-like answers only);
- `loss`: the mean token loss of the held-out prompts' own training targets (the variant's target given its input,
  e.g. CGD's refined answer), which works on any data, free-text answers included;
- `auto` (default): accuracy when the held-out references are gradable, else loss.

When accuracy ties on every checkpoint (all 0 of 256, say), the tie is broken by the loss and the stage info says
so; the last checkpoint never wins by default without a word. Scores are journaled per (checkpoint, metric), so a
re-run only scores what is new. `cgd validate` refuses `metric: accuracy` on data whose answers cannot be graded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from harness.grading import extract_answer
from harness.stages.base import StageContext

SCORES_FILE = "checkpoint_scores.jsonl"
GRADABLE_SHARE = 0.5  # below this share of gradable references, accuracy cannot tell checkpoints apart
_MATHY = re.compile(r"^[\s\d.,+\-*/^()=<>\\{}\[\]a-zA-Z%$πθ√∞|:;!']*$")


def gradable(reference: str) -> bool:
    """Does a reference's final answer look like something the grader can check (a number, an expression, a
    short symbolic answer), not free text (a sentence, a paragraph)?"""
    answer = extract_answer(str(reference or "")).strip()
    if not answer or len(answer) > 60:
        return False
    words = re.findall(r"[A-Za-z]{2,}", re.sub(r"\\[A-Za-z]+", " ", answer))
    return len(words) <= 2 and bool(re.search(r"[\d\\^=]", answer) or len(answer) <= 3) and bool(_MATHY.match(answer))


def gradable_share(references: list[Any]) -> float:
    refs = [r for r in references if r not in (None, "")]
    return sum(gradable(str(r)) for r in refs) / len(refs) if refs else 0.0


def data_problem(metric: str, references: list[Any]) -> str | None:
    """Why the data cannot support the asked selection metric, or None."""
    if not [r for r in references if r not in (None, "")]:
        return "the data has no reference answers to hold out (data.answer_field)"
    share = gradable_share(references)
    if metric == "accuracy" and share < GRADABLE_SHARE:
        return (f"accuracy needs gradable reference answers, but only {share:.0%} of the data's look gradable "
                "(free-text answers would tie every checkpoint at the same score); use metric: loss or auto")
    return None


# --- scoring ------------------------------------------------------------------------------------------------


def score_accuracy(model_path: Path, holdout: list[dict[str, Any]], *, style: str, max_tokens: int,
                   batch_size: int) -> dict[str, Any]:
    """Greedy answers of the model (its chat template, the plain prompt) to the held-out prompts, graded against
    their reference answers."""
    from harness.grading import grade
    from harness.llm.base import ChatRequest
    from harness.llm.hf import HFBackend
    from harness.prompts import load_style

    prompts = load_style(style)
    requests = [ChatRequest.build(prompts.train_messages("plain", prompt=r["prompt"]), temperature=0.0,
                                  max_tokens=max_tokens) for r in holdout]
    backend = HFBackend(str(model_path), batch_size=batch_size)

    async def generate() -> list[str]:
        texts = [""] * len(requests)
        try:
            async for i, result in backend.stream(requests):
                if isinstance(result, Exception):
                    raise result
                texts[i] = result.texts[0] if result.texts else ""
        finally:
            await backend.aclose()
        return texts

    texts = asyncio.run(generate())
    correct = sum(bool(grade(text, str(r["reference"]))) for text, r in zip(texts, holdout, strict=True))
    _free_gpu()
    return {"accuracy": correct / len(holdout) if holdout else 0.0, "correct": correct, "n": len(holdout)}


def score_loss(model_path: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean token loss of each held-out row's trained turn given the turns before it (the student's chat
    template, as training renders it); lower is better."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModelForCausalLM.from_pretrained(str(model_path))
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for row in rows:
            context = [{"role": m["role"], "content": m["content"]} for m in row["messages"][:-1]]
            target = row["messages"][-1]["content"]
            prompt = tokenizer.apply_chat_template(context, tokenize=False, add_generation_prompt=True)
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
            if tokenizer.eos_token_id is not None:
                target_ids = [*target_ids, tokenizer.eos_token_id]
            ids = torch.tensor([prompt_ids + target_ids])
            labels = torch.tensor([[-100] * len(prompt_ids) + target_ids])
            out = model(input_ids=ids, labels=labels)
            total += float(out.loss) * len(target_ids)
            tokens += len(target_ids)
    del model
    _free_gpu()
    loss = total / tokens if tokens else math.inf
    return {"loss": round(loss, 6), "tokens": tokens, "n": len(rows)}


def _free_gpu() -> None:
    with contextlib.suppress(ImportError, RuntimeError):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# --- selection ----------------------------------------------------------------------------------------------


def choose_metric(spec: Any, holdout: list[dict[str, Any]]) -> str:
    if spec.metric != "auto":
        return spec.metric
    return "accuracy" if gradable_share([r.get("reference") for r in holdout]) >= GRADABLE_SHARE else "loss"


class Scorer:
    """Scores checkpoints by one metric, journaled so a re-run scores only what is new."""

    def __init__(self, ctx: StageContext, config_hash: str, holdout: list[dict[str, Any]],
                 holdout_rows: list[dict[str, Any]]) -> None:
        self.ctx, self.config_hash = ctx, config_hash
        self.holdout, self.rows = holdout, holdout_rows
        self.journal = ctx.path / SCORES_FILE
        self.done: dict[tuple[str, str], dict[str, Any]] = {}
        for row in (_read(self.journal) if self.journal.is_file() else []):
            if row.get("config_hash") == config_hash:
                self.done[(row["checkpoint"], row.get("metric", "accuracy"))] = row

    def score(self, name: str, step: int, path: Path, metric: str) -> dict[str, Any]:
        key = (name, metric)
        if key not in self.done:
            spec = self.ctx.recipe.train.select_checkpoint
            if metric == "accuracy":
                self.ctx.log(f"scoring {name}: accuracy on {len(self.holdout)} held-out prompts")
                found = score_accuracy(path, self.holdout, style=self.ctx.recipe.critique.style,
                                       max_tokens=spec.max_tokens, batch_size=spec.batch_size)
            else:
                self.ctx.log(f"scoring {name}: target loss on {len(self.rows)} held-out rows")
                found = score_loss(path, self.rows)
            row = {"checkpoint": name, "step": step, "path": str(path), "metric": metric,
                   "config_hash": self.config_hash, **found}
            with self.journal.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            self.done[key] = row
        return {k: v for k, v in self.done[key].items() if k != "config_hash"}


def _read(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            rows.append(json.loads(line))
    return rows


def _best(scores: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    if metric == "loss":  # lower is better; ties: the later checkpoint
        return min(scores, key=lambda row: (row["loss"], -row["step"]))
    return max(scores, key=lambda row: (row[metric], row["step"]))


def pick(ctx: StageContext, config_hash: str, candidates: list[tuple[int, str, Path]],
         holdout: list[dict[str, Any]], holdout_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Score the candidates; the best by the chosen metric, a tie on accuracy broken by the target loss."""
    spec = ctx.recipe.train.select_checkpoint
    metric = choose_metric(spec, holdout)
    scorer = Scorer(ctx, config_hash, holdout, holdout_rows)
    scores = [scorer.score(name, step, path, metric) for step, name, path in candidates]
    tie_break = None
    if metric == "accuracy" and len(scores) > 1 and len({s["accuracy"] for s in scores}) == 1 and holdout_rows:
        ctx.log(f"[yellow]every checkpoint scores accuracy {scores[0]['accuracy']:.3f}: breaking the tie by the "
                "held-out target loss[/yellow]")
        tie_break = "loss"
        losses = [scorer.score(name, step, path, "loss") for step, name, path in candidates]
        best = _best(losses, "loss")
        for row, lost in zip(scores, losses, strict=True):
            row["loss"] = lost["loss"]
    else:
        best = _best(scores, metric)
    shown = ", ".join(f"{s['checkpoint']} {s[metric]:.3f}" for s in scores)
    ctx.log(f"checkpoint {metric}: {shown}; keeping {best['checkpoint']}")
    return {"metric": metric, "tie_break": tie_break, "holdout": len(holdout), "scores": scores,
            "selected": best["checkpoint"], "selected_step": best["step"], "best": best}
