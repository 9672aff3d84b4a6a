"""Write one Axolotl chat-format dataset per variant, then prove the masking with Axolotl's own preprocessing.

Row: {"id", "messages": [system?, user, assistant]}, each message with a `training` flag; only the final
assistant turn (the target) is trained.
  sft            plain prompt -> the dataset's reference answer
  distilled_sft  plain prompt -> the teacher's answer
  cft            prompt + draft -> the teacher's critique
  cgd            prompt + draft + critique (per critique.specificity) -> the refined answer

With critique.mix, the CGD dataset is a seeded sample with the asked right/wrong verdict shares, of
min(|right|, |wrong|) examples whatever the shares (the paper's filter_crit_ratios.py), so the members of a matrix
over the mix train on equally many examples.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from harness.prompts import PromptStyle, load_style
from harness.stages.base import Record, StageContext, StageFailed, StageInput, StageOutput
from harness.store import write_jsonl

KIND = "export"
VERSION = 1
SOURCE = {"sft": "data", "distilled_sft": "answer", "cft": "critique", "cgd": "refine"}
MASK_CHECK_EXAMPLES = 8


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation with no fixed points (Sattolo's algorithm: one cycle through every index)."""
    order = list(range(n))
    rng = random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)
        order[i], order[j] = order[j], order[i]
    return order


def _row(rid: str, messages: list[dict[str, str]], target: str) -> dict[str, Any]:
    msgs = [{**m, "training": False} for m in messages]
    msgs.append({"role": "assistant", "content": target, "training": True})
    return {"id": rid, "messages": msgs}


def _verified(rec: Record, field: str, policy: str) -> bool:
    return policy != "drop" or rec.get(f"{field}_correct") is not False


def build_rows(variant: str, records: list[Record], style: PromptStyle, params: dict[str, Any]) -> list[dict]:
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    policy = params["keep_unverified"]
    if variant == "sft":
        return [_row(r["id"], style.train_messages("plain", prompt=r["prompt"]), r["reference"])
                for r in ok if r.get("reference")]
    if variant == "distilled_sft":
        return [_row(r["id"], style.train_messages("plain", prompt=r["prompt"]), r["teacher_answer"])
                for r in ok if _verified(r, "teacher_answer", policy)]
    if variant == "cft":
        return [_row(r["id"], style.train_messages("cft", prompt=r["prompt"], draft=r["draft"]), r["critique"])
                for r in ok]
    if variant == "cgd":
        return _cgd_rows([r for r in ok if _verified(r, "refined", policy)], style, params)
    raise ValueError(f"no dataset for variant '{variant}'")


def mix_counts(n_right: int, n_wrong: int, right_share: float) -> tuple[int, int]:
    """How many right and wrong examples a mix takes: min(|R|, |W|) in all, split by the right share."""
    size = min(n_right, n_wrong)
    take_right = int(round(size * right_share))
    return take_right, size - take_right


def mix_records(records: list[Record], mix: dict[str, float], seed: int) -> list[Record]:
    """A seeded sample of the records with the mix's right/wrong verdict shares, in their original order.

    Records without a verdict are left out. Every mix of the same pool has min(|right|, |wrong|) records."""
    right = [r for r in records if r.get("verdict") == "right"]
    wrong = [r for r in records if r.get("verdict") == "wrong"]
    take_right, take_wrong = mix_counts(len(right), len(wrong), mix["right"])
    rng = random.Random(f"critique-mix:{seed}")
    chosen = {id(r) for r in rng.sample(right, take_right)} | {id(r) for r in rng.sample(wrong, take_wrong)}
    return [r for r in records if id(r) in chosen]


def _cgd_rows(records: list[Record], style: PromptStyle, params: dict[str, Any]) -> list[dict]:
    if params.get("mix"):
        records = mix_records(records, params["mix"], params["seed"])
    specificity = params["specificity"]
    if specificity == "none":
        return [_row(r["id"], style.train_messages("cgd_no_critique", prompt=r["prompt"], draft=r["draft"]),
                     r["refined"]) for r in records]
    if specificity == "specific":
        critiques = [r["critique"] for r in records]
    elif specificity == "irrelevant":
        # A real critique, but of a different problem; the target stays the refinement of this one.
        critiques = [records[j]["critique"] for j in derangement(len(records), params["seed"])]
    else:  # generic: boilerplate not tied to the problem
        boiler = load_style("generic").fixed_critiques
        rng = random.Random(params["seed"])
        critiques = [rng.choice(boiler) for _ in records]
    return [_row(r["id"], style.train_messages("cgd", prompt=r["prompt"], draft=r["draft"], critique=c), r["refined"])
            for r, c in zip(records, critiques, strict=True)]


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    variant = ctx.params["variant"]
    style = PromptStyle.from_params(ctx.params["style"])
    records = inputs[SOURCE[variant]].records
    rows = build_rows(variant, records, style, ctx.params)
    extra: dict[str, Any] = {}
    if variant == "cgd" and ctx.params.get("mix"):
        pool = [r for r in records if r.get("status", "ok") == "ok"
                and _verified(r, "refined", ctx.params["keep_unverified"])]
        n_right = sum(r.get("verdict") == "right" for r in pool)
        n_wrong = sum(r.get("verdict") == "wrong" for r in pool)
        take_right, take_wrong = mix_counts(n_right, n_wrong, ctx.params["mix"]["right"])
        extra["mix"] = {"shares": ctx.params["mix"], "pool": {"right": n_right, "wrong": n_wrong},
                        "taken": {"right": take_right, "wrong": take_wrong}}
        if not rows:
            raise StageFailed(ctx.name, f"critique.mix needs critiques of both verdicts; the usable records have "
                                        f"{n_right} right and {n_wrong} wrong")
        ctx.log(f"critique mix: {take_right} right + {take_wrong} wrong of {n_right} right / {n_wrong} wrong")
    if not rows:
        raise StageFailed(ctx.name, f"no usable records for the {variant} dataset")
    path = ctx.path / "dataset.jsonl"
    write_jsonl(path, rows)
    check = check_masking(ctx, path, inputs["student"].info["model_path"])
    dropped = left_out(variant, records, len(rows), ctx.params["keep_unverified"])
    shown = "".join(f", {n} {why}" for why, n in dropped.items())
    ctx.log(f"{variant}: {len(rows)} examples of {len(records)} records{shown}; masking verified on "
            f"{check['examples']} by Axolotl's preprocessing")
    return StageOutput(info={"dataset": str(path), "examples": len(rows), "source_records": len(records),
                             "left_out": dropped, "mask_check": check, **extra})


def left_out(variant: str, records: list[Record], examples: int, policy: str) -> dict[str, int]:
    """Why source records are not in the dataset, counted: failed generations (allowed by max_failed), answers
    that failed verification (keep_unverified: drop), rows without a reference, and what a critique mix left."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    field = {"distilled_sft": "teacher_answer", "cgd": "refined"}.get(variant)
    counts = {"failed": len(records) - len(ok),
              "unverified": sum(not _verified(r, field, policy) for r in ok) if field else 0,
              "no reference": sum(not r.get("reference") for r in ok) if variant == "sft" else 0}
    counts["not in the mix"] = len(records) - examples - sum(counts.values())
    return {why: n for why, n in counts.items() if n > 0}


def check_masking(ctx: StageContext, dataset: Path, model_path: str) -> dict[str, Any]:
    """Tokenize samples through Axolotl with the student's tokenizer; fail unless only the target is trained."""
    from harness.axolotl.config import render_axolotl_config
    from harness.axolotl.masking import MaskingError, check_trained_spans

    cfg = render_axolotl_config(ctx.recipe.train, base_model=model_path, dataset_path=dataset,
                                output_dir=ctx.path / "mask-check-out", prepared_dir=ctx.path / "mask-check-prepared",
                                seed=ctx.recipe.seed, on_gpu=False)
    report = check_trained_spans(cfg, n=MASK_CHECK_EXAMPLES)
    try:
        report.raise_for_problems()
    except MaskingError as exc:
        raise StageFailed(ctx.name, f"trained tokens are not exactly the target:\n{exc}") from None
    return {"examples": len(report.entries), "ok": True}
