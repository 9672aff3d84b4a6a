"""Refinement uncertainty: how sure the student is of the refined answer ŷ given (x), (x, y') and (x, y', c).

For the base student and every trained variant, on a sample of refine records, the student reads ŷ teacher-forced
after three inputs and we measure, on ŷ's tokens only, the per-token negative log-likelihood -log p(ŷ_t | ...) and
the entropy of the full next-token distribution at each of ŷ's positions. The paper (arXiv 2505.11628 v1/v2) reads
H(ŷ|x) ≥ H(ŷ|x,y') ≥ H(ŷ|x,y',c) as "conditioning on the critique reduces refinement uncertainty"; this analysis
reports the three values with seeded bootstrap intervals over rows and the paired differences between conditions.

The three inputs are the prompt style's own training inputs, so the (x, y', c) condition is exactly what the cgd
variant trains on:
- (x): `train.plain` (what SFT / distilled SFT train on and what every model sees at inference);
- (x, y'): `train.cgd_no_critique` (what cgd trains on with `critique.specificity: none`); a style without it gets
  `DRAFT_ONLY` below (the cgd user turn without the critique);
- (x, y', c): `train.cgd` with the teacher's specific critique of this draft (whatever specificity the cgd variant
  trained with; the analysis asks about the real critique).

Target alignment follows the export's loss mask (harness/axolotl/masking.py): the prompt is the tokenizer's chat
template with `add_generation_prompt=True`, the scored tokens are ŷ's content tokenized on its own plus the
end-of-turn (eos) token, the same tokens every condition scores, so the comparison between conditions is paired
token for token. `max_tokens` caps the scored ŷ tokens (the prompt is never cut: cutting it would change the
condition).

Aggregation: a mean is per token over all scored tokens (sum over rows / tokens over rows, as a training loss
averages), and its interval is the percentile interval of that ratio over seeded resamples of the rows; one set
of resampled rows serves the three conditions, so the differences are paired.
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.recipe.schema import Strict

NAME = "uncertainty"
DOC = "student NLL and entropy of the refined answer given (x), (x, y') and (x, y', c), with bootstrap intervals"
VERSION = 1
NEEDS: tuple[str, ...] = ("student", "train", "refine")

CONDITIONS: tuple[tuple[str, str], ...] = (("x", "H(ŷ|x)"), ("x_y", "H(ŷ|x,y')"), ("x_y_c", "H(ŷ|x,y',c)"))
DRAFT_ONLY = {"system": None, "user": "Question: {prompt}\n\nStudent's Initial Answer: {draft}"}
"""The (x, y') input for a style that has no `train.cgd_no_critique`: the paper's cgd user turn minus the critique."""
SAMPLE_SALT = "cgd-uncertainty"
TABLE_COLUMNS = ["model", "condition", "label", "nll", "nll_low", "nll_high", "entropy", "entropy_low",
                 "entropy_high", "rows", "tokens"]
ORDER_COLUMNS = ["model", "metric", "x - x_y", "x - x_y low", "x - x_y high", "x_y - x_y_c", "x_y - x_y_c low",
                 "x_y - x_y_c high", "holds", "holds (95%)"]


class Settings(Strict):
    sample: int = 200
    """How many refine records to score. When every trained variant held prompts out of training
    (`train.select_checkpoint`), the sample is drawn from those held-out rows only; otherwise from all usable refine
    records, which are the CGD training rows (a note says so: the numbers then measure fit, not generalization).
    The draw ranks rows by a hash of (seed, id), so it depends on nothing but the ids and a larger sample contains
    a smaller one."""
    batch_size: int = 8
    """Rows per teacher-forced forward pass (rows are sorted by length first, so batches pad little)."""
    max_tokens: int = 1024
    """At most this many tokens of ŷ (its content plus the end-of-turn token) are scored per row; longer answers
    are cut to their first max_tokens tokens in every condition alike. Prompts are never cut."""
    seed: int = 0
    """Seeds the sample and the bootstrap."""
    models: list[str] | None = None
    """Which models to score, by report label (`base`, `cgd@seed0`, ...); default: base and every trained variant."""
    resamples: int = 1000
    """Bootstrap resamples of the rows."""
    confidence: float = 0.95
    """Coverage of the percentile intervals."""


# --- scoring ------------------------------------------------------------------------------------------------


def encode(tokenizer: Any, messages: list[dict[str, str]], target: str, max_tokens: int) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids): the chat template with the generation prompt, then ŷ's tokens and the eos token,
    exactly the span the export trains (harness/axolotl/masking.py `judge`), cut to `max_tokens`."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    target_ids = list(tokenizer(target, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        target_ids.append(int(tokenizer.eos_token_id))
    return prompt_ids, target_ids[:max_tokens]


def _forward_accepts(model: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def score_targets(model: Any, tokenizer: Any, conversations: list[tuple[list[dict[str, str]], str]],
                  batch_size: int = 8, max_tokens: int = 1024,
                  on_batch: Callable[[int, int], None] | None = None) -> list[dict[str, float | int]]:
    """Per conversation (input messages, target text): the summed NLL of the target tokens, the summed entropy of
    the model's full next-token distribution at those positions, and the number of target tokens.

    Teacher-forced, batched with right padding and an attention mask (pads change nothing: the model is causal and
    positions start at 0 in every row), float32, no gradients. `on_batch(rows, tokens)` is called after each batch.
    The result is in the order of `conversations`."""
    import torch

    encoded = [encode(tokenizer, messages, target, max_tokens) for messages, target in conversations]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]) + len(encoded[i][1]))
    results: list[dict[str, float | int]] = [{"nll_sum": 0.0, "entropy_sum": 0.0, "tokens": 0} for _ in encoded]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    device = next(model.parameters()).device
    keep_logits = _forward_accepts(model, "logits_to_keep")
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), max(1, batch_size)):
            batch = [i for i in order[start:start + max(1, batch_size)] if encoded[i][1]]
            if not batch:
                continue
            width = max(len(encoded[i][0]) + len(encoded[i][1]) for i in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids = encoded[i][0] + encoded[i][1]
                input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
                mask[row, :len(ids)] = 1
            # logits at position t predict token t+1: the first target token is predicted at prompt_len - 1
            first = min(len(encoded[i][0]) for i in batch) - 1
            if first < 0:
                raise ValueError("score_targets: an empty prompt leaves the first target token unpredicted")
            kwargs: dict[str, Any] = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
            if keep_logits:  # only the positions from the earliest target on (saves [B, T, V] memory on prompts)
                kwargs["logits_to_keep"] = width - first
                offset = first
            else:
                offset = 0
            logits = model(**kwargs).logits
            tokens = 0
            for row, i in enumerate(batch):
                p_len, t_ids = len(encoded[i][0]), encoded[i][1]
                lo = p_len - 1 - offset
                logp = torch.log_softmax(logits[row, lo:lo + len(t_ids)].float(), dim=-1)
                target = torch.tensor(t_ids, dtype=torch.long, device=logp.device)
                nll = -logp.gather(-1, target[:, None]).squeeze(-1)
                entropy = -(logp.exp() * logp).sum(-1)
                results[i] = {"nll_sum": float(nll.double().sum()), "entropy_sum": float(entropy.double().sum()),
                              "tokens": len(t_ids)}
                tokens += len(t_ids)
            del logits
            if on_batch is not None:
                on_batch(len(batch), tokens)
    return results


# --- rows, models and conditions ----------------------------------------------------------------------------


def usable_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Refine records that can be scored in all three conditions."""
    fields = ("prompt", "draft", "critique", "refined")
    return [r for r in records if r.get("status", "ok") == "ok" and r.get("id") is not None
            and all(isinstance(r.get(f), str) and r[f].strip() for f in fields)]


def _rank(seed: int, record_id: Any) -> str:
    return hashlib.sha256(f"{SAMPLE_SALT}:{seed}:{record_id}".encode()).hexdigest()


def sample_records(records: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """The `n` records ranked first by a hash of (seed, id): independent of record order, nested in n."""
    return sorted(records, key=lambda r: _rank(seed, r["id"]))[:max(0, n)]


def model_label(stage_name: str) -> str:
    """The report's model label of an upstream stage: student -> base, train:cgd:0 -> cgd@seed0."""
    if stage_name.startswith("train:"):
        return stage_name.removeprefix("train:").replace(":", "@seed")
    return "base" if stage_name.split(":")[0] == "student" else stage_name


def models_of(inputs: dict[str, Any]) -> tuple[dict[str, str], list[Any]]:
    """({label: model folder} for base then each trained model in name order, the train inputs)."""
    found: dict[str, str] = {}
    trains = []
    for key, inp in inputs.items():
        name = inp.name or key
        kind = name.split(":")[0]
        if kind not in ("student", "train") or not inp.info.get("model_path"):
            continue
        found[model_label(name)] = str(inp.info["model_path"])
        if kind == "train":
            trains.append(inp)
    base = {k: v for k, v in found.items() if k == "base"}
    return base | dict(sorted((k, v) for k, v in found.items() if k != "base")), trains


def refine_records(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    for key, inp in inputs.items():
        if (inp.name or key).split(":")[0] == "refine":
            return inp.records
    raise ValueError(f"uncertainty needs the refine records; inputs: {', '.join(sorted(inputs)) or 'none'}")


def style_of(ctx: Any) -> Any:
    """The prompt style the variants trained with: the stage's fingerprinted style, else the recipe's, else paper."""
    from harness.prompts import PromptStyle, load_style

    params = getattr(ctx, "params", None) or {}
    if isinstance(params.get("style"), dict) and "spec" in params["style"]:
        return PromptStyle.from_params(params["style"])
    recipe = getattr(ctx, "recipe", None)
    critique = getattr(recipe, "critique", None)
    return load_style(getattr(critique, "style", None) or "paper")


def condition_messages(style: Any, rec: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """{condition: input messages} of one record, built the way the variants build their training inputs."""
    from harness.prompts import _messages

    train = style.spec.get("train", {})
    draft_only = train.get("cgd_no_critique") or DRAFT_ONLY
    return {
        "x": style.train_messages("plain", prompt=rec["prompt"]),
        "x_y": _messages(draft_only, {"prompt": rec["prompt"], "draft": rec["draft"]}),
        "x_y_c": style.train_messages("cgd", prompt=rec["prompt"], draft=rec["draft"], critique=rec["critique"]),
    }


# --- statistics ---------------------------------------------------------------------------------------------


def bootstrap_ratios(sums: dict[str, np.ndarray], tokens: np.ndarray, *, resamples: int, seed: int,
                     chunk: int = 256) -> dict[str, np.ndarray]:
    """Per key, the resampled per-token means sum(sums[idx]) / sum(tokens[idx]); one set of row indices serves
    every key (paired)."""
    n = len(tokens)
    rng = np.random.default_rng(seed)
    out = {k: np.empty(resamples) for k in sums}
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(size, n))
        denom = np.maximum(tokens[idx].sum(axis=1), 1)
        for k, values in sums.items():
            out[k][start:start + size] = values[idx].sum(axis=1) / denom
    return out


def _interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return float(low), float(high)


def summarize(label: str, scores: dict[str, list[dict[str, Any]]], settings: Settings
              ) -> tuple[list[list[Any]], list[list[Any]], dict[str, float], list[str]]:
    """One model's table rows, ordering rows, numbers and notes from its per-condition row scores.

    Rows whose target scored no token in some condition are left out of every condition (pairing)."""
    conds = [c for c, _ in CONDITIONS]
    n_rows = len(scores[conds[0]])
    keep = [i for i in range(n_rows) if all(scores[c][i]["tokens"] for c in conds)]
    tokens = np.array([scores[conds[0]][i]["tokens"] for i in keep], dtype=np.float64)
    sums = {f"{c}.{m}": np.array([scores[c][i][f"{m}_sum"] for i in keep], dtype=np.float64)
            for c in conds for m in ("nll", "entropy")}
    rows: list[list[Any]] = []
    order_rows: list[list[Any]] = []
    numbers: dict[str, float] = {}
    notes: list[str] = []
    if not keep:
        return rows, order_rows, numbers, [f"{label}: no scored tokens"]
    total = float(tokens.sum())
    means = {k: float(v.sum() / total) for k, v in sums.items()}
    # the paired differences are ratios too: (sum_a - sum_b) / tokens, on the same resampled rows
    diff_sums = {f"{a}-{b}.{m}": sums[f"{a}.{m}"] - sums[f"{b}.{m}"]
                 for a, b in (("x", "x_y"), ("x_y", "x_y_c")) for m in ("nll", "entropy")}
    draws = bootstrap_ratios({**sums, **diff_sums}, tokens, resamples=settings.resamples, seed=settings.seed)
    for cond, cond_label in CONDITIONS:
        row: list[Any] = [label, cond, cond_label]
        for metric in ("nll", "entropy"):
            key = f"{cond}.{metric}"
            low, high = _interval(draws[key], settings.confidence)
            row += [means[key], low, high]
            numbers[f"{label}.{key}"] = means[key]
            numbers[f"{label}.{key}_low"] = low
            numbers[f"{label}.{key}_high"] = high
        row += [len(keep), int(total)]
        rows.append(row)
    numbers[f"{label}.rows"] = float(len(keep))
    numbers[f"{label}.tokens"] = total
    for metric in ("entropy", "nll"):
        cells: list[Any] = [label, metric]
        lows = []
        diffs = []
        for a, b in (("x", "x_y"), ("x_y", "x_y_c")):
            key = f"{a}-{b}.{metric}"
            diff = means[f"{a}.{metric}"] - means[f"{b}.{metric}"]
            low, high = _interval(draws[key], settings.confidence)
            cells += [diff, low, high]
            diffs.append(diff)
            lows.append(low)
            numbers[f"{label}.diff.{key}"] = diff
            numbers[f"{label}.diff.{key}_low"] = low
            numbers[f"{label}.diff.{key}_high"] = high
        holds = all(d >= 0 for d in diffs)
        sure = all(low > 0 for low in lows)
        cells += [holds, sure]
        order_rows.append(cells)
        numbers[f"{label}.ordering.{metric}"] = float(holds)
        numbers[f"{label}.ordering.{metric}_sure"] = float(sure)
        if metric == "entropy":
            if not holds:
                verdict = "does not hold"
            elif sure:
                verdict = f"holds (both steps above 0 at {settings.confidence:.0%})"
            else:
                verdict = "holds on the point estimates, not at every step's interval"
            notes.append(f"{label}: H(ŷ|x) ≥ H(ŷ|x,y') ≥ H(ŷ|x,y',c) {verdict}: "
                         f"{means['x.entropy']:.4f} / {means['x_y.entropy']:.4f} / {means['x_y_c.entropy']:.4f} "
                         f"nats per token over {len(keep)} rows")
    if len(keep) < n_rows:
        notes.append(f"{label}: {n_rows - len(keep)} rows with no scored token left out")
    return rows, order_rows, numbers, notes


# --- the analysis -------------------------------------------------------------------------------------------


def _progress(ctx: Any, total: int) -> Any:
    from harness.progress import StageProgress

    class RowProgress(StageProgress):
        def stats(self) -> str:
            elapsed = max(time.monotonic() - self._start, 1e-9)
            return f"{self.done / elapsed:.1f} rows/s  {self.tokens:,} tok"

    return RowProgress(ctx.console, f"{getattr(ctx, 'name', NAME)} (teacher-forced)", total)


def load_model(path: str, base_path: str | None, device: str) -> tuple[Any, Any]:
    """A model folder's model (float32, eval) and tokenizer (its own, else the base model's), offline."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        if not base_path:
            raise
        tokenizer = AutoTokenizer.from_pretrained(base_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    return model.to(device).eval(), tokenizer


def _device(ctx: Any) -> str:
    import torch

    runtime = getattr(ctx, "runtime", None) or {}
    return str(runtime.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))


def run(ctx: Any, inputs: dict[str, Any], settings: Settings) -> dict[str, Any]:
    from harness.stages.base import StageFailed

    models, trains = models_of(inputs)
    if settings.models is not None:
        unknown = [m for m in settings.models if m not in models]
        if unknown:
            raise ValueError(f"uncertainty: unknown model {', '.join(map(repr, unknown))}; available: "
                             f"{', '.join(models) or 'none'}")
        models = {m: models[m] for m in settings.models}
    if not models:
        raise ValueError("uncertainty: no model to score (needs the student and train stages)")
    pool = usable_records(refine_records(inputs))
    notes: list[str] = []
    held = [set(map(str, t.info.get("holdout_ids") or ())) for t in trains]
    if trains and all(held):
        common = set.intersection(*held)
        candidates = [r for r in pool if str(r["id"]) in common]
        notes.append(f"held-out rows: {len(candidates)} refine records whose prompts no trained variant saw "
                     "(train.select_checkpoint holdout)")
    else:
        candidates = pool
        notes.append("not held out: the sample is drawn from all usable refine records, which are the CGD training "
                     "rows (no train.select_checkpoint holdout), so trained models are scored on rows they fit")
    chosen = sample_records(candidates, settings.sample, settings.seed)
    if not chosen:
        raise StageFailed(getattr(ctx, "name", NAME), "uncertainty: no refine record to score "
                          f"({len(pool)} usable of {len(refine_records(inputs))})")
    notes.append(f"{len(chosen)} rows (seed {settings.seed}) of {len(candidates)}; ŷ cut to {settings.max_tokens} "
                 "tokens; means are per token over all scored tokens")
    style = style_of(ctx)
    if not style.spec.get("train", {}).get("cgd_no_critique"):
        notes.append("(x, y') input: the style has no train.cgd_no_critique; used the cgd user turn without the "
                     "critique")
    per_cond = [condition_messages(style, r) for r in chosen]
    conversations = {c: [(m[c], r["refined"]) for m, r in zip(per_cond, chosen, strict=True)] for c, _ in CONDITIONS}

    device = _device(ctx)
    table_rows: list[list[Any]] = []
    order_rows: list[list[Any]] = []
    numbers: dict[str, float] = {}
    scored: list[dict[str, Any]] = []
    started = time.monotonic()
    with _progress(ctx, len(models) * len(CONDITIONS) * len(chosen)) as bar:
        for label, path in models.items():
            try:
                model, tokenizer = load_model(path, models.get("base"), device)
            except (OSError, ValueError) as exc:
                raise StageFailed(getattr(ctx, "name", NAME), f"uncertainty: cannot load {label} from {path}: "
                                  f"{exc}") from None
            scores = {}
            for cond, _ in CONDITIONS:
                scores[cond] = score_targets(model, tokenizer, conversations[cond], settings.batch_size,
                                             settings.max_tokens,
                                             on_batch=lambda rows, tokens: bar.advance(rows, tokens=tokens))
                scored += [{"id": r["id"], "model": label, "condition": cond, **s}
                           for r, s in zip(chosen, scores[cond], strict=True)]
            del model
            gc.collect()
            rows, orders, nums, model_notes = summarize(label, scores, settings)
            table_rows += rows
            order_rows += orders
            numbers |= nums
            notes += model_notes
    seconds = time.monotonic() - started
    rows_done = len(models) * len(CONDITIONS) * len(chosen)
    notes.append(f"scored {rows_done} (model, condition, row) passes in {seconds:.1f}s "
                 f"({rows_done / max(seconds, 1e-9):.1f} rows/s on {device})")
    path = getattr(ctx, "path", None)
    if path is not None:
        from harness.store import atomic_write_text

        atomic_write_text(Path(path) / "uncertainty_scores.jsonl",
                          "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in scored))
    return {
        "tables": [
            {"title": "Refinement uncertainty: per-token NLL and entropy of ŷ (nats)", "columns": TABLE_COLUMNS,
             "rows": table_rows},
            {"title": "Refinement uncertainty: H(ŷ|x) ≥ H(ŷ|x,y') ≥ H(ŷ|x,y',c), paired differences",
             "columns": ORDER_COLUMNS, "rows": order_rows},
        ],
        "numbers": numbers,
        "notes": notes,
    }
