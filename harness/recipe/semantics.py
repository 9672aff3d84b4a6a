"""Checks that need the project's registries (back-ends, prompt styles, eval suites), after the schema passed.

What a back-end can do (draft as a student, batch, needs a key, runs in-process) comes from its registration
(harness/llm/__init__.py), so a newly registered back-end is validated without an edit here.

Each problem is (dotted path, message); the loader turns the path into FILE:LINE:COL.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "TEACHER_ONLY":  # derived from the registry: back-ends that cannot draft as a student
        from harness.llm import providers

        return tuple(info.name for info in providers() if not info.student)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def semantic_problems(recipe: Any) -> list[tuple[str, str]]:
    from harness.evaluation import available_suites
    from harness.llm import BACKENDS, find_provider, names_with
    from harness.prompts import available_styles

    problems: list[tuple[str, str]] = []
    teacher = find_provider(recipe.teacher.provider)
    student = find_provider(recipe.student.backend)
    if teacher is None:
        problems.append(("teacher.provider", f"unknown teacher provider '{recipe.teacher.provider}'; "
                                             f"available: {', '.join(BACKENDS.names())}"))
    student_backends = [n for n in BACKENDS.names() if BACKENDS.get(n).student]
    if recipe.student.backend not in student_backends:
        problems.append(("student.backend", f"unknown student back-end '{recipe.student.backend}'; "
                                            f"available: {', '.join(student_backends)}"))
        student = None
    styles = available_styles()
    if recipe.critique.style not in styles:
        problems.append(("critique.style", f"unknown prompt style '{recipe.critique.style}'; "
                                           f"available: {', '.join(styles)}"))
    suites = available_suites()
    for i, suite in enumerate(recipe.eval.suites):
        if suite not in suites:
            problems.append((f"eval.suites.{i}", f"unknown eval suite '{suite}'; available: {', '.join(suites)}"))
    if student is not None and student.in_process and recipe.student.base_url:
        problems.append(("student.base_url", f"the {student.name} back-end runs in-process; base_url needs "
                                             "backend openai_compat"))
    if recipe.teacher.batch and (teacher is None or not teacher.batch):
        problems.append(("teacher.batch", f"provider '{recipe.teacher.provider}' has no batch API; batch mode "
                                          f"works with {', '.join(names_with('batch'))}"))
    if student is not None and student.needs_key and not recipe.student.api_key_env:
        problems.append(("student.api_key_env", f"{recipe.student.backend} needs the name of the environment "
                                                "variable that holds its API key"))
    if teacher is not None and teacher.needs_key and not recipe.teacher.api_key_env:
        problems.append(("teacher.api_key_env", f"{recipe.teacher.provider} needs the name of the environment "
                                                "variable that holds its API key"))
    return problems
