"""The tiny world: shipped data matches its generator, splits are disjoint, the oracle's critiques are exact."""

from __future__ import annotations

import json

from harness.grading import grade, verdict_of
from harness.prompts import load_style
from harness.tiny.oracle import critique, respond
from harness.tiny.problems import DATA_DIR, Problem, build_splits, parse_question

STYLE = load_style("paper")
P = Problem(12, "+", 7, "*", 3)  # 12+7=19, 19*3=57


def test_shipped_splits_are_the_generator_output_and_disjoint():
    splits = build_splits()
    for name, rows in splits.items():
        shipped = [json.loads(line) for line in (DATA_DIR / f"{name}.jsonl").read_text().splitlines()]
        assert shipped == rows, f"data/tiny/{name}.jsonl is stale: run python -m harness.tiny.problems"
    questions = [{r["question"] for r in rows} for rows in splits.values()]
    assert sum(map(len, questions)) == len(set().union(*questions))


def test_solutions_are_right_and_questions_parse_back():
    for row in build_splits()["test"][:50]:
        problem = parse_question(row["question"])
        assert problem is not None and problem.question == row["question"]
        assert grade(row["answer"], row["final"]) and str(problem.answer) == row["final"]


def test_critique_names_the_first_wrong_step_and_ends_with_a_verdict():
    right = critique(P, P.solution)
    assert verdict_of(right) == "right" and "Step 2 is correct: 19*3=57." in right
    slip = critique(P, "12+7=19. 19*3=56. The answer is \\boxed{56}.")
    assert "Step 2 has an arithmetic error: 19*3 is 57, not 56." in slip and verdict_of(slip) == "wrong"
    wrong_numbers = critique(P, "12+8=20. 20*3=60. The answer is \\boxed{60}.")
    assert "Step 1 uses the wrong numbers" in wrong_numbers and verdict_of(wrong_numbers) == "wrong"
    garbage = critique(P, "")
    assert "Step 1 is missing" in garbage and verdict_of(garbage) == "wrong"


def test_oracle_tells_the_three_teacher_requests_apart():
    q = P.question
    assert verdict_of(respond(STYLE.critique_messages(q, "12+7=19."))) == "wrong"
    refined = respond(STYLE.refine_messages(q, "12+7=19.", "Step 2 is missing."))
    assert refined == P.solution and grade(refined, "57")
    assert respond(STYLE.answer_messages(q)) == P.solution
    assert "cannot find a problem" in respond([{"role": "user", "content": "hello"}])


def test_warm_up_refine_requests_hold_a_wrong_draft_and_its_critique():
    import random

    from harness.tiny.student import _refine_messages

    row = {"question": P.question, "answer": P.solution}
    rng = random.Random(0)
    for _ in range(20):
        system, user = _refine_messages(row, rng)
        assert system["role"] == "system" and user["content"].startswith(f"Question: {P.question}")
        draft = user["content"].split("Student's Initial Answer: ")[1].split("\n\nCritique: ")[0]
        assert draft != P.solution
        assert verdict_of(user["content"]) == "wrong"
