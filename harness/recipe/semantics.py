"""Checks that need the project's registries (back-ends, prompt styles, eval suites), after the schema passed.

Each problem is (dotted path, message); the loader turns the path into FILE:LINE:COL.
"""

from __future__ import annotations

from typing import Any

TEACHER_ONLY = ("oracle",)  # the oracle answers tiny-world teacher prompts; it cannot draft as a student


def semantic_problems(recipe: Any) -> list[tuple[str, str]]:
    from harness.evaluation import available_suites
    from harness.llm import BACKENDS, BATCH_CAPABLE, canonical
    from harness.prompts import available_styles

    problems: list[tuple[str, str]] = []
    if recipe.teacher.provider not in BACKENDS:
        problems.append(("teacher.provider", f"unknown teacher provider '{recipe.teacher.provider}'; "
                                             f"available: {', '.join(BACKENDS.names())}"))
    student_backends = [n for n in BACKENDS.names() if n not in TEACHER_ONLY]
    if recipe.student.backend not in student_backends:
        problems.append(("student.backend", f"unknown student back-end '{recipe.student.backend}'; "
                                            f"available: {', '.join(student_backends)}"))
    styles = available_styles()
    if recipe.critique.style not in styles:
        problems.append(("critique.style", f"unknown prompt style '{recipe.critique.style}'; "
                                           f"available: {', '.join(styles)}"))
    suites = available_suites()
    for i, suite in enumerate(recipe.eval.suites):
        if suite not in suites:
            problems.append((f"eval.suites.{i}", f"unknown eval suite '{suite}'; available: {', '.join(suites)}"))
    if recipe.student.backend == "hf" and recipe.student.base_url:
        problems.append(("student.base_url", "the hf back-end runs in-process; base_url needs backend openai_compat"))
    if recipe.teacher.batch and canonical(recipe.teacher.provider) not in BATCH_CAPABLE:
        problems.append(("teacher.batch", f"provider '{recipe.teacher.provider}' has no batch API; batch mode "
                                          f"works with {', '.join(BATCH_CAPABLE)}"))
    if recipe.student.backend in ("openai", "anthropic") and not recipe.student.api_key_env:
        problems.append(("student.api_key_env", f"{recipe.student.backend} needs the name of the environment "
                                                "variable that holds its API key"))
    if recipe.teacher.provider in ("openai", "anthropic") and not recipe.teacher.api_key_env:
        problems.append(("teacher.api_key_env", f"{recipe.teacher.provider} needs the name of the environment "
                                                "variable that holds its API key"))
    return problems
