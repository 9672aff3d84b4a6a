"""self_refine: the student critiques its own draft with the same critique prompt (no teacher), then refines it;
trained like CGD on (prompt, draft, its own critique) -> its own refinement. With `self_refine.verify`, only the
refinements the grader accepts are kept. The baseline that asks whether it is the teacher's critique that helps.
"""

from __future__ import annotations

from typing import Any

from harness.prompts import PromptStyle
from harness.variants.rows import Record, chat_row, usable
from harness.variants.spec import VariantSpec, register_variant
from harness.variants.work import WorkStage, register_work, style_params


def _student_stage(recipe: Any) -> dict[str, Any]:
    s = recipe.student
    return {"style": style_params(recipe), "backend": s.backend, "generation": s.generation.model_dump()}


def _runtime(recipe: Any) -> dict[str, Any]:
    return {"batch_size": recipe.student.batch_size}


register_work(WorkStage("self_critique", "self_critique", {"probe": "probe", "student": "student"},
                        _student_stage, _runtime))
register_work(WorkStage("self_refine", "self_refine", {"self_critique": "self_critique", "student": "student"},
                        _student_stage, _runtime))


def build_rows(records: list[Record], style: PromptStyle, params: dict[str, Any]) -> list[dict[str, Any]]:
    kept = [r for r in usable(records) if r.get("self_refined", "").strip()  # an empty answer teaches nothing
            and (not params["verify"] or r.get("self_refined_correct") is True)]
    return [chat_row(r["id"], style.train_messages("cgd", prompt=r["prompt"], draft=r["draft"],
                                                   critique=r["self_critique"]), r["self_refined"]) for r in kept]


def export_params(recipe: Any) -> dict[str, Any]:
    return {"verify": recipe.self_refine.verify}


SPEC = register_variant(VariantSpec(name="self_refine", doc="prompt + draft + its own critique → its own refinement",
                                    order=38, baseline=True, source="self_refine", build_rows=build_rows,
                                    reads=("id", "prompt", "draft", "self_critique", "self_refined"),
                                    export_params=export_params, dropped="empty or rejected refinements"))
