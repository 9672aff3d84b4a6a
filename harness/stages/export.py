"""Write one Axolotl chat-format dataset per variant, then prove the masking with Axolotl's own preprocessing.

Row: {"id", "messages": [system?, user, assistant]}, each message with a `training` flag; only the final
assistant turn (the target) is trained. What each variant trains on is declared in harness/variants/<name>.py;
`train.format` (harness/formats/) then lays the messages out (default `chat`: as built; `llamafactory_alpaca`:
LLaMA-Factory's Alpaca conversion). Rows longer than train.sequence_len are counted (info `overlong`): Axolotl
drops them, or truncates them with `train.overlong: truncate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.formats import format_params, render_rows
from harness.prompts import PromptStyle
from harness.stages.base import Record, StageContext, StageFailed, StageInput, StageOutput
from harness.store import write_jsonl
from harness.variants import get_variant
from harness.variants.cgd import derangement, mix_counts, mix_records  # noqa: F401  (their old home)
from harness.variants.rows import usable, verified

KIND = "export"
VERSION = 1
READS: tuple[str, ...] = ()  # per variant: harness/variants/<name>.py declares the fields its rows read
WRITES: tuple[str, ...] = ()
MASK_CHECK_EXAMPLES = 8


def source_of(variant: str) -> str:
    """The graph stage whose records a variant's dataset is built from."""
    return get_variant(variant).source or ""


def stage_params(recipe: Any) -> dict[str, Any]:
    """What an export reads from the train block: train.format, train.chat_template and train.overlong, each only
    when it differs from its default (so the fingerprints of recipes that do not set them stay as they were), and
    then train.sequence_len too, which the over-long count depends on. (On the defaults the count is taken with
    the sequence_len of the run that exported; info `overlong` records it.)"""
    params = format_params(recipe.train)
    return {**params, "sequence_len": recipe.train.sequence_len} if params else {}


def build_rows(variant: str, records: list[Record], style: PromptStyle, params: dict[str, Any]) -> list[dict]:
    spec = get_variant(variant)
    if spec.build_rows is None:
        raise ValueError(f"variant '{variant}' is not trained: it has no dataset")
    return spec.build_rows(records, style, params)


def run(ctx: StageContext, inputs: dict[str, StageInput]) -> StageOutput:
    variant = ctx.params["variant"]
    style = PromptStyle.from_params(ctx.params["style"])
    records = inputs[source_of(variant)].records
    rows = build_rows(variant, records, style, ctx.params)
    extra: dict[str, Any] = {}
    describe = get_variant(variant).describe
    if describe is not None:
        try:
            extra, note = describe(records, ctx.params, rows)
        except ValueError as exc:  # the variant says why its dataset came out empty
            raise StageFailed(ctx.name, str(exc)) from None
        if note:
            ctx.log(note)
    if not rows:
        raise StageFailed(ctx.name, f"no usable records for the {variant} dataset")
    try:
        rows = render_rows(rows, ctx.params.get("format", "chat"), ctx.params.get("chat_template"))
    except ValueError as exc:
        raise StageFailed(ctx.name, f"train.format {ctx.params.get('format')}: {exc}") from None
    path = ctx.path / "dataset.jsonl"
    write_jsonl(path, rows)
    model_path = inputs["student"].info["model_path"]
    check = check_masking(ctx, path, model_path)
    overlong = count_overlong(ctx, path, model_path)
    dropped = left_out(variant, records, len(rows), ctx.params["keep_unverified"])
    shown = "".join(f", {n} {why}" for why, n in dropped.items())
    ctx.log(f"{variant}: {len(rows)} examples of {len(records)} records{shown}; masking verified on "
            f"{check['examples']} by Axolotl's preprocessing{_overlong_note(overlong)}")
    return StageOutput(info={"dataset": str(path), "examples": len(rows), "source_records": len(records),
                             "left_out": dropped, "overlong": overlong, "mask_check": check, **extra})


def left_out(variant: str, records: list[Record], examples: int, policy: str) -> dict[str, int]:
    """Why source records are not in the dataset, counted: failed generations (allowed by max_failed), answers
    that failed verification (keep_unverified: drop), rows without a reference, and what the variant's own filter
    left (a critique mix, empty answers)."""
    ok, spec = usable(records), get_variant(variant)
    field = spec.verified_field
    counts = {"failed": len(records) - len(ok),
              "unverified": sum(not verified(r, field, policy) for r in ok) if field else 0,
              "no reference": sum(not r.get("reference") for r in ok) if variant == "sft" else 0}
    counts[spec.dropped] = len(records) - examples - sum(counts.values())
    return {why: n for why, n in counts.items() if n > 0}


def _check_config(ctx: StageContext, dataset: Path, model_path: str) -> dict[str, Any]:
    from harness.axolotl.config import render_axolotl_config

    return render_axolotl_config(ctx.recipe.train, base_model=model_path, dataset_path=dataset,
                                 output_dir=ctx.path / "mask-check-out",
                                 prepared_dir=ctx.path / "mask-check-prepared", seed=ctx.recipe.seed, on_gpu=False)


def count_overlong(ctx: StageContext, dataset: Path, model_path: str) -> dict[str, Any]:
    """How many rows are longer than train.sequence_len tokens as Axolotl tokenizes them, what training does with
    them (train.overlong: Axolotl drops them by default, or truncates them to their first sequence_len tokens), and
    how many of those have a prompt that alone fills sequence_len (truncated, they train no token)."""
    from harness.axolotl.masking import row_lengths

    lengths = row_lengths(_check_config(ctx, dataset, model_path), dataset)
    return {"rows": lengths.over, "sequence_len": lengths.sequence_len,
            "action": "truncated" if lengths.strategy == "truncate" else "dropped",
            "longest": max(lengths.lengths, default=0), "prompt_over": lengths.prompt_over}


def _overlong_note(overlong: dict[str, Any]) -> str:
    if not overlong["rows"]:
        return ""
    note = f"; {overlong['rows']} over sequence_len {overlong['sequence_len']} tokens "
    if overlong["action"] == "dropped":
        return note + "(Axolotl drops them)"
    empty = f", {overlong['prompt_over']} of them with no target token left" if overlong["prompt_over"] else ""
    return note + f"(Axolotl truncates them{empty})"


def check_masking(ctx: StageContext, dataset: Path, model_path: str) -> dict[str, Any]:
    """Tokenize samples through Axolotl with the student's tokenizer; fail unless only the target is trained."""
    from harness.axolotl.masking import MaskingError, check_trained_spans

    report = check_trained_spans(_check_config(ctx, dataset, model_path), n=MASK_CHECK_EXAMPLES)
    try:
        report.raise_for_problems()
    except MaskingError as exc:
        raise StageFailed(ctx.name, f"trained tokens are not exactly the target:\n{exc}") from None
    return {"examples": len(report.entries), "ok": True}
