"""sft_refined: plain prompt -> the teacher's refined answer (x -> ŷ), no draft and no critique in the input.

The control that separates "better targets" from "conditioning on draft and critique": it trains on exactly the
targets CGD trains on (the same verification filter), with the plain prompt as input.
"""

from __future__ import annotations

from typing import Any

from harness.prompts import PromptStyle
from harness.variants.cgd import mix_params, training_records
from harness.variants.rows import Record, chat_row
from harness.variants.spec import VariantSpec, register_variant


def build_rows(records: list[Record], style: PromptStyle, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [chat_row(r["id"], style.train_messages("plain", prompt=r["prompt"]), r["refined"])
            for r in training_records(records, params)]


def export_params(recipe: Any) -> dict[str, Any]:
    return {"seed": recipe.seed, **mix_params(recipe)}  # with a mix, the same examples as CGD's


SPEC = register_variant(VariantSpec(name="sft_refined", doc="prompt → the teacher's refined answer", order=35,
                                    baseline=True, source="refine", build_rows=build_rows,
                                    reads=("id", "prompt", "refined"), export_params=export_params,
                                    verified_field="refined"))
