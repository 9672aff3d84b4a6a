"""A model card (README.md) for one trained model: base model, recipe, a link to its data card, and its scores."""

from __future__ import annotations

from typing import Any

from harness.cards import TAGS, front_matter, md_cell
from harness.cards.dataset_card import decontamination_lines, recipe_lines, source_lines


def score_lines(scores: list[dict[str, Any]] | None) -> list[str]:
    if not scores:
        return ["Not evaluated (the run stopped before `evaluate`, or its suites gave no score for this model)."]
    lines = ["| benchmark | metric | score | ± stderr | n |", "|---|---|---|---|---|"]
    for s in scores:
        value = s.get("value")
        shown = f"{100 * value:.1f}" if isinstance(value, int | float) else md_cell(value)
        err = f"{100 * s['stderr']:.1f}" if isinstance(s.get("stderr"), int | float) else "—"
        lines.append(f"| {md_cell(s.get('benchmark'))} | {md_cell(s.get('metric'))} | {shown} | {err} | "
                     f"{md_cell(s.get('n') if s.get('n') is not None else '—')} |")
    return lines


def render_model_card(f: dict[str, Any], links: dict[str, str] | None = None) -> str:
    """`links`: "dataset" (where the data card is: a relative path locally, a Hub URL once published) and
    "dataset_repo" (the Hub dataset id, for the header's `datasets:`)."""
    links = links or {}
    meta: dict[str, Any] = {"license": "unknown", "tags": [*TAGS, f["variant"]], "library_name": "transformers",
                            "pipeline_tag": "text-generation"}
    if f.get("base_model_hub"):
        meta["base_model"] = f["base_model_hub"]
    if links.get("dataset_repo"):
        meta["datasets"] = [links["dataset_repo"]]
    train = f.get("train") or {}
    seed = "" if f.get("seed") is None else f", seed {f['seed']}"
    data = (f"[{f['dataset']}]({links['dataset']})" if links.get("dataset") else _or_dash(f.get("dataset")))
    lines = [
        front_matter(meta),
        f"# {f['run']}: {f['variant']} model{seed}",
        "",
        f"`{f['base_model']}` fine-tuned by cgd-harness with the `{f['variant']}` recipe variant of run "
        f"`{f['run']}`.",
        "",
        "| | |", "|---|---|",
        f"| base model | {md_cell(f['base_model'])} |",
        f"| training data | {data} (its dataset card) |",
        f"| training | {md_cell(train.get('method'))}, lr {md_cell(train.get('learning_rate'))}, "
        f"{md_cell(train.get('epochs'))} epochs, global batch {md_cell(train.get('global_batch_size'))}, "
        f"sequence_len {md_cell(train.get('sequence_len'))}{seed} |",
        *recipe_lines(f),
        *source_lines(f["source"]),
        "",
        "## Scores",
        "",
        *score_lines(f.get("scores")),
        "",
        "## Decontamination of the training prompts",
        "",
        *decontamination_lines(f.get("decontamination")),
        "",
        "## Licence",
        "",
        "The base model's licence applies, together with the training data's (source licence: "
        f"{f['source'].get('license')}) and the teacher's terms of use.",
        "",
    ]
    return "\n".join(lines)


def _or_dash(value: Any) -> str:
    return "—" if not value else md_cell(value)
