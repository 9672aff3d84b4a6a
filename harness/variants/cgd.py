"""cgd: prompt + the student's draft + a critique -> the teacher's refined answer (critique-guided distillation).

`critique.specificity` picks the critique the student sees: specific (the teacher's critique of this draft),
irrelevant (a real critique of another problem, by a seeded derangement), generic (boilerplate) or none (prompt +
draft only). With `critique.mix` the dataset is a seeded sample with the asked right/wrong verdict shares, of
min(|right|, |wrong|) examples whatever the shares (the paper's filter_crit_ratios.py), so the members of a matrix
over the mix train on equally many examples.
"""

from __future__ import annotations

import random
from typing import Any

from harness.prompts import PromptStyle, load_style
from harness.variants import noise
from harness.variants.rows import Record, chat_row, usable, verified
from harness.variants.spec import VariantSpec, register_variant


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation with no fixed points (Sattolo's algorithm: one cycle through every index)."""
    order = list(range(n))
    rng = random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)
        order[i], order[j] = order[j], order[i]
    return order


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


def pool(records: list[Record], params: dict[str, Any]) -> list[Record]:
    """The records a CGD dataset may use: generated, and verified when keep_unverified is drop."""
    return [r for r in usable(records) if verified(r, "refined", params["keep_unverified"])]


def critiques_for(records: list[Record], params: dict[str, Any]) -> list[str]:
    """The critique each example shows, by critique.specificity, with critique.noise applied."""
    specificity = params["specificity"]
    if specificity == "specific":
        critiques = [r["critique"] for r in records]
    elif specificity == "irrelevant":  # a real critique, but of a different problem; the target stays this one's
        critiques = [records[j]["critique"] for j in derangement(len(records), params["seed"])]
    else:  # generic: boilerplate not tied to the problem
        boiler = load_style("generic").fixed_critiques
        rng = random.Random(params["seed"])
        critiques = [rng.choice(boiler) for _ in records]
    if params.get("noise"):
        critiques, _ = noise.corrupt(critiques, params["noise"]["rate"], params["noise"]["kind"], params["seed"])
    return critiques


def training_records(records: list[Record], params: dict[str, Any]) -> list[Record]:
    """The records the dataset's examples come from, in order: the pool, sampled by critique.mix when set."""
    chosen = pool(records, params)
    return mix_records(chosen, params["mix"], params["seed"]) if params.get("mix") else chosen


def build_rows(records: list[Record], style: PromptStyle, params: dict[str, Any]) -> list[dict[str, Any]]:
    records = training_records(records, params)
    if params["specificity"] == "none":
        return [chat_row(r["id"], style.train_messages("cgd_no_critique", prompt=r["prompt"], draft=r["draft"]),
                         r["refined"]) for r in records]
    return [chat_row(r["id"], style.train_messages("cgd", prompt=r["prompt"], draft=r["draft"], critique=c),
                     r["refined"]) for r, c in zip(records, critiques_for(records, params), strict=True)]


def describe(records: list[Record], params: dict[str, Any], rows: list[dict[str, Any]]
             ) -> tuple[dict[str, Any], str | None]:
    """With a critique mix: the pool's right/wrong counts and what the mix took; with critique noise: which
    examples show a corrupted critique."""
    info: dict[str, Any] = {}
    notes = []
    if params.get("noise") and params["specificity"] != "none":
        chosen = training_records(records, params)
        _, corrupted = noise.corrupt([""] * len(chosen), params["noise"]["rate"], params["noise"]["kind"],
                                     params["seed"])
        info["noise"] = {**params["noise"], "corrupted": len(corrupted), "of": len(chosen),
                         "ids": [chosen[i]["id"] for i in corrupted]}
        notes.append(f"critique noise ({params['noise']['kind']}): {len(corrupted)} of {len(chosen)} critiques "
                     "corrupted")
    if not params.get("mix"):
        return info, "; ".join(notes) or None
    usable_pool = pool(records, params)
    n_right = sum(r.get("verdict") == "right" for r in usable_pool)
    n_wrong = sum(r.get("verdict") == "wrong" for r in usable_pool)
    take_right, take_wrong = mix_counts(n_right, n_wrong, params["mix"]["right"])
    if not rows:
        raise ValueError(f"critique.mix needs critiques of both verdicts; the usable records have {n_right} right "
                         f"and {n_wrong} wrong")
    info["mix"] = {"shares": params["mix"], "pool": {"right": n_right, "wrong": n_wrong},
                   "taken": {"right": take_right, "wrong": take_wrong}}
    notes.append(f"critique mix: {take_right} right + {take_wrong} wrong of {n_right} right / {n_wrong} wrong")
    return info, "; ".join(notes)


def mix_params(recipe: Any) -> dict[str, Any]:
    """The mix's shares, only when set (so recipes without a mix keep their fingerprints)."""
    if recipe.critique.mix is None:
        return {}
    right, wrong = recipe.critique.mix.shares
    return {"mix": {"right": right, "wrong": wrong}}


def export_params(recipe: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {"specificity": recipe.critique.specificity, "seed": recipe.seed, **mix_params(recipe)}
    if recipe.critique.noise is not None:  # likewise only when set
        extra["noise"] = recipe.critique.noise.model_dump()
    return extra


SPEC = register_variant(VariantSpec(name="cgd", doc="prompt + draft + critique → the teacher's refined answer",
                                    order=40, baseline=False, source="refine", build_rows=build_rows,
                                    reads=("id", "prompt", "draft", "critique", "verdict", "refined"),
                                    export_params=export_params, verified_field="refined", describe=describe,
                                    dropped="not in the mix"))
