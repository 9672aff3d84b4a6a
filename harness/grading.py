"""Answer extraction and equivalence, shared by verification (refine/answer stages), the math eval tasks and reports.

Extraction (`extract_answer`): the content of the last \\boxed{...} / \\fbox{...} (nested braces allowed, also
`\\boxed 5`), else the text after "final answer is" / "answer is", else after "####" (GSM8K style); for a model's
response (`last_number=True`) finally the last number in the text, as the math-evaluation-harness the CGD paper used.

Equivalence (`equivalent`): normalized strings match, or math-verify proves them equal (fractions, decimals, LaTeX
forms, intervals, sets, tuples, matrices, units and \\text{} dropped), with a second try that drops percent signs on
both sides. Word answers ("Evelyn", "True", "no solution") are compared as words: math-verify would read them as
products of letters, which makes anagrams equal.
"""

from __future__ import annotations

import re
import threading

VERDICT_RE = re.compile(r"conclusion\s*:\s*\**\s*(right|wrong|correct|incorrect)\b", re.I)
ANSWER_IS_RE = re.compile(r"(?:final answer|answer) is\s*:?\s*(.+?)(?:\.\s*$|\.\s+I hope|\n|$)", re.I | re.S)
HASHES_RE = re.compile(r"####\s*(.+?)\s*$", re.M)
NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_BOX_CMDS = ("\\boxed", "\\fbox")


def _box_spans(text: str) -> list[tuple[int, str]]:
    """(start, content) of every \\boxed{...}/\\fbox{...} (balanced braces) or `\\boxed X`, in order."""
    spans = []
    i = 0
    while True:
        starts = [(text.find(cmd, i), cmd) for cmd in _BOX_CMDS]
        starts = [(s, cmd) for s, cmd in starts if s >= 0]
        if not starts:
            return spans
        start, cmd = min(starts)
        j = start + len(cmd)
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            depth, k = 1, j + 1
            while k < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[k], 0)
                k += 1
            if depth:  # unbalanced: cut off mid-answer
                return spans
            spans.append((start, text[j + 1:k - 1].strip()))
            i = k
        elif j > start + len(cmd) and j < len(text):  # "\boxed 5": up to the next space, $ or end
            m = re.match(r"[^\s$]+", text[j:])
            spans.append((start, m.group(0) if m else ""))
            i = j + (m.end() if m else 1)
        else:
            i = j
    return spans


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} or \\fbox{...}, with balanced braces; None if there is none."""
    spans = _box_spans(text)
    return spans[-1][1] if spans else None


def all_boxed(text: str) -> list[str]:
    return [content for _, content in _box_spans(text)]


def _strip_wrappers(answer: str) -> str:
    s = answer.strip()
    for _ in range(3):
        s = s.strip().strip("$").strip()
        m = re.fullmatch(r"\\(?:boxed|fbox)\{(.*)\}", s, re.S)
        if m:
            s = m.group(1)
    return s.rstrip(".").strip()


def extract_answer(text: str, *, last_number: bool = False) -> str:
    """The final answer of a response or reference (see the module docstring); '' when nothing is found."""
    text = text or ""
    boxed = last_boxed(text)
    if boxed is not None:
        return _strip_wrappers(boxed)
    found = ANSWER_IS_RE.findall(text)
    if found:
        return _strip_wrappers(found[-1])
    found = HASHES_RE.findall(text)
    if found:
        return _strip_wrappers(found[-1])
    if last_number:
        numbers = NUMBER_RE.findall(text)
        return numbers[-1].rstrip(".") if numbers else ""
    return _strip_wrappers(text)


_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mbox|textit|operatorname)\s*\{([^{}]*)\}")
_UNIT_WORDS = (r"(?:cm|mm|km|m|kg|g|mg|s|sec|seconds?|minutes?|hours?|days?|weeks?|years?|dollars?|cents?|"
               r"units?|inches|inch|feet|foot|ft|miles?|meters?|degrees?|km/h|mph|square\s+\w+|sq\s+\w+)")


def _normalize(answer: str) -> str:
    s = _strip_wrappers(answer)
    s = _TEXT_CMD.sub(r"\1", s)
    s = s.replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "").replace("~", "")
    s = s.replace("\\left", "").replace("\\right", "").replace("dfrac", "frac").replace("tfrac", "frac")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\$", "").replace("$", "")
    s = re.sub(rf"(?<=[\d}}])\s*{_UNIT_WORDS}\s*$", "", s)
    s = s.replace(" ", "").rstrip(".")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?|-?\d+(\.\d+)?", s):
        s = s.replace(",", "")
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        sign, digits = ("-", s[1:]) if s.startswith("-") else ("", s)
        digits = digits.lstrip("0") or "0"  # AIME's "024" is 24
        s = sign + ("0" + digits if digits.startswith(".") else digits)
    return s


_WORD_RE = re.compile(r"[A-Za-z][A-Za-z' -]*[A-Za-z]")


def _as_words(answer: str) -> str | None:
    """Lower-cased words when the answer is plain words (no LaTeX commands, digits or maths), else None."""
    s = _TEXT_CMD.sub(r"\1", _strip_wrappers(answer)).strip().strip("()")
    return " ".join(s.lower().split()) if _WORD_RE.fullmatch(s) else None


def _math_verify_equal(predicted: str, gold: str) -> bool:
    from math_verify import parse, verify

    # math-verify's timeouts use SIGALRM, which only works on the main thread; elsewhere run without them.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
    pred_parsed = parse(f"${predicted}$", parsing_timeout=timeout)
    return bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


def _drop_percent(s: str) -> str:
    return s.replace("\\%", "").replace("%", "").strip()


def equivalent(predicted: str, gold: str) -> bool:
    if not predicted or not predicted.strip():
        return False
    if _normalize(predicted) == _normalize(gold):
        return True
    words_p, words_g = _as_words(predicted), _as_words(gold)
    if words_p is not None or words_g is not None:
        single = {x for x in (words_p, words_g) if x is not None and len(x) == 1}
        if not single:  # word answers: only the words decide (single letters may be options: "(A)" vs "A")
            return words_p == words_g
    try:
        if _math_verify_equal(predicted, gold):
            return True
        if "%" in predicted or "%" in gold:
            return _math_verify_equal(_drop_percent(predicted), _drop_percent(gold))
    except Exception:  # noqa: BLE001 - a parser failure means "not shown equal", never a crash
        return False
    return False


def grade_answer(response: str, gold: str) -> bool:
    """Is the final answer of a model's `response` equal to the bare `gold` answer?

    When the gold has several comma-separated answers and the response boxes them one by one, the boxes are
    joined before comparing (OlympiadBench's multiple-answer questions).
    """
    gold = _strip_wrappers(str(gold))
    predicted = extract_answer(response, last_number=True)
    if equivalent(predicted, gold):
        return True
    boxes = all_boxed(response or "")
    if len(boxes) > 1 and "," in gold:
        return equivalent(", ".join(_strip_wrappers(b) for b in boxes), gold)
    return False


def grade(response: str, reference: str) -> bool:
    """Is the final answer of `response` the final answer of `reference` (a bare answer or a worked solution)?"""
    return grade_answer(response, extract_answer(reference))


def verdict_of(critique: str) -> str | None:
    """'right' / 'wrong' from the last 'Conclusion: ...' line of a critique; None when there is none."""
    found = VERDICT_RE.findall(critique)
    if not found:
        return None
    word = found[-1].lower()
    return "right" if word in ("right", "correct") else "wrong"
