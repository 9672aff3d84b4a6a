"""The oracle teacher of the tiny world: it finds the problem in the request and answers exactly.

It tells the three teacher requests apart by what the user turn quotes (any prompt style that keeps the paper's
"Student's Answer" / "Critique" labels works): a critique checks each step of the draft, names the first wrong
one and ends with the verdict line; a refinement and a plain answer are the worked solution.
"""

from __future__ import annotations

import re

from harness.tiny.problems import Problem, parse_question

STEP_RE = re.compile(r"(-?\d+)\s*([-+*])\s*(-?\d+)\s*=\s*(-?\d+)")
BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")
DRAFT_RE = re.compile(r"Student's (?:Initial )?Answer:\s*(.*?)(?:\n\nCritique:|$)", re.S)


def critique(problem: Problem, draft: str) -> str:
    """A specific critique: every step checked against the right one, then 'Conclusion: right|wrong'."""
    found = [(int(a), op, int(b), int(r)) for a, op, b, r in STEP_RE.findall(draft)]
    lines: list[str] = []
    wrong = False
    for i, (a, op, b, r) in enumerate(problem.steps, 1):
        want = f"{a}{op}{b}={r}"
        if i > len(found):
            lines.append(f"Step {i} is missing: it should compute {a}{op}{b}, which is {r}.")
            wrong = True
            continue
        fa, fop, fb, fr = found[i - 1]
        if (fa, fop, fb) != (a, op, b):
            lines.append(f"Step {i} uses the wrong numbers: it writes {fa}{fop}{fb} but should compute {want}.")
            wrong = True
        elif fr != r:
            lines.append(f"Step {i} has an arithmetic error: {a}{op}{b} is {r}, not {fr}.")
            wrong = True
        else:
            lines.append(f"Step {i} is correct: {want}.")
    boxed = BOXED_RE.findall(draft)
    if not boxed:
        lines.append(f"The final answer is not given in a box; it should be {problem.answer}.")
        wrong = True
    elif boxed[-1].strip() != str(problem.answer):
        lines.append(f"The final answer {boxed[-1].strip()} is wrong; it should be {problem.answer}.")
        wrong = True
    else:
        lines.append(f"The final answer {problem.answer} is right.")
    lines.append(f"Conclusion: {'wrong' if wrong else 'right'}")
    return "\n".join(lines)


def respond(messages: list[dict[str, str]]) -> str:
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    problem = parse_question(user)
    if problem is None:
        return "I cannot find a problem in this request."
    if "Critique:" in user:
        return problem.solution  # refine: the corrected, complete solution
    draft = DRAFT_RE.search(user)
    if draft:
        return critique(problem, draft.group(1))
    return problem.solution  # plain prompt: the teacher's own answer (distilled SFT)


def critique_phrases() -> list[str]:
    """Sample critiques, so the tiny student's tokenizer learns the oracle's wording."""
    p = Problem(12, "+", 7, "*", 3)
    drafts = ["12+7=19. 19*3=57. The answer is \\boxed{57}.", "12+7=18. 18*3=54. The answer is \\boxed{54}.",
              "12+8=20.", "nothing"]
    return [critique(p, d) for d in drafts]
