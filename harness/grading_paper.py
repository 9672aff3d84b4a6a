"""The CGD paper's answer grader: `math_equal` as the authors' evaluation runs it (`eval.grader: paper`).

Reproduces `math_equal` (and the helpers it calls: `parse_digits`, `round_to_two_decimals`, `numeric_equal`,
`str_to_pmatrix`, `convert_to_number`, `convert_to_decimal`, `clean_math_func_1`, `is_numbers_equal_post`,
`symbolic_equal`, `choice_answer_clean`) from CapitalOne-Research/Critique-Guided-Distillation,
`eval/evaluate_math/grader.py` at commit 10f651cb (MIT; itself from Hendrycks' MATH, ToRA, PRM800K and
DeepSeek-Math), re-written here step for step. What it accepts that math-verify (harness.grading) does not:

- rounding: two numbers that round to the same ONE decimal are equal (`round_to_two_decimals` rounds to 1 place),
  so 3.14 = 3.1 and 0.04 = 0.01;
- relative tolerance 1e-4 between numbers (`numeric_equal`: 1000 = 1000.05);
- percent forms: a number equals the reference, the reference x 100 or the reference / 100 (0.25 = 25, 25 = 0.25);
- `10^{n}` in an answer without an "e" reads as 10^n (`convert_to_decimal`), so 2\\cdot10^{3} = 1000 (a leniency);
- one-sided `x = ...` answers, equations equal up to sign, and sympy equality (`simplify(a - b) == 0`, or the
  numeric values within 1e-4).

The shipped table harness/data/grader_disagreements.jsonl lists such cases with both graders' verdicts (tested).

Before `math_equal`, both answers are cleaned as the official pipeline does with Qwen2.5-Math's
`parser.strip_string` (imported, not shipped, by the CGD repo): `strip_string` below keeps its steps (percent signs
dropped, dfrac -> frac, \\text{} and trailing units removed, `x=` dropped, 2.000 -> 2, \\frac12 -> \\frac{1}{2},
a/b -> \\frac{a}{b}, spaces removed) but removes units with the harness's unit-word pattern instead of the MathQA
list of ~140 words (which also deletes lone letters such as `a` from `x+a`).

Deviations, all forced by this environment or by safety, none changing a verdict on the shipped table:
- symbolic parsing: the official `symbolic_equal` tries sympy's `parse_latex` (antlr 4.11), `parse_expr`, then
  `latex2sympy` (latex2sympy2). Here the first is sympy's `parse_latex` when it can run and otherwise
  latex2sympy2_extended (the maintained fork math-verify installs), and `parse_expr` (which `eval`s its input) only
  sees text made of numbers, operators and known math names; text no parser took stays text (upstream's later
  `N(a)` / `a.equals(b)` would hand it to `sympify`, another `eval`), so a model's answer never runs as Python;
- time: each comparison gets 3 s (SIGALRM, on the main thread), a timeout counting as not equal, as in the
  Qwen2.5-Math `evaluate.py` the official code runs `math_equal` from (a process pool with `timeout=3`);
- the official code's debugging prints are left out.
Answer extraction (last \\boxed{}, "answer is", last number) is the harness's, shared with the math-verify grader.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections.abc import Iterator
from math import isclose
from typing import Any

TIMEOUT_S = 3
_CHOICES = ("A", "B", "C", "D", "E")


# ----------------------------------------------------------------------------------------------- cleaning
def _fix_fracs(s: str) -> str:
    parts = s.split("\\frac")
    out = parts[0]
    for sub in parts[1:]:
        out += "\\frac"
        if sub[:1] == "{":
            out += sub
            continue
        if len(sub) < 2:
            return s
        a, b = sub[0], sub[1]
        if b != "{":
            out += "{" + a + "}{" + b + "}" + sub[2:]
        else:
            out += "{" + a + "}" + b + sub[2:]
    return out


def _fix_a_slash_b(s: str) -> str:
    if len(s.split("/")) != 2:
        return s
    a, b = s.split("/")
    try:
        a_val: Any = a if "sqrt" in a else int(a)
        b_val: Any = b if "sqrt" in b else int(b)
        if s != f"{a_val}/{b_val}":
            return s
        return "\\frac{" + str(a_val) + "}{" + str(b_val) + "}"
    except ValueError:
        return s


def _word_number(s: str) -> str:
    try:
        from word2number import w2n

        return str(w2n.word_to_num(s))
    except Exception:  # noqa: BLE001 - not a number word (or word2number absent): unchanged, as upstream
        return s


def strip_string(string: str) -> str:
    """An answer cleaned as Qwen2.5-Math's `parser.strip_string` does (see the module docstring)."""
    from harness.grading import _UNIT_WORDS

    s = str(string).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    unitless = re.sub(r"\\text{.*?}$", "", s).strip()
    if unitless and unitless != s:
        s = unitless
    unitless = re.sub(rf"(?<=[\d}}])\s*{_UNIT_WORDS}\s*$", "", s).strip()
    if unitless:
        s = unitless
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = _word_number(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for key in ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"):
        s = s.replace(key, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    # (upstream's next step unwraps "{x}", "(x)", "[x]" only when the whole string is alphanumeric: never)
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty").replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox{.*?}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    if len(s.split("=")) == 2 and len(s.split("=")[0]) <= 2:
        s = s.split("=")[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s).replace(" ", "")
    return _fix_a_slash_b(_fix_fracs(s))


# ----------------------------------------------------------------------------------------------- numbers
def choice_answer_clean(pred: str) -> str:
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    found = re.findall(r"\b(A|B|C|D|E)\b", pred.upper())
    last = found[-1] if found else pred.strip().strip(".")
    return last.rstrip(".").rstrip("/")


def parse_digits(num: Any) -> float | None:
    num = str(num).replace(",", "")
    try:
        return float(num)
    except ValueError:
        if num.endswith("%"):
            num = num[:-1].removesuffix("\\")
            try:
                return float(num) / 100
            except ValueError:
                pass
    return None


def is_digit(num: Any) -> bool:
    return parse_digits(num) is not None


def round_to_two_decimals(num_str: str) -> float | None:
    """Upstream's name; it rounds to ONE decimal (and two unparsable numbers, e.g. two percents, compare equal)."""
    try:
        return round(float(num_str.replace(",", "").replace("\\", "")), 1)
    except ValueError:
        return None


def numeric_equal(prediction: float, reference: float) -> bool:
    return isclose(reference, prediction, rel_tol=1e-4)


def str_to_pmatrix(input_str: str) -> str:
    rows = re.findall(r"\{.*,.*\}", input_str.strip())
    return ", ".join(r"\begin{pmatrix}" + m.strip("{}").replace(",", "\\") + r"\end{pmatrix}" for m in rows)


def _scaled(base: float, exponent: int) -> float:
    try:
        return base * (10 ** exponent)
    except OverflowError:
        return 0.0  # upstream's fallback


def convert_to_number(text: Any) -> Any:
    if "e" in str(text).lower().replace("times", ""):
        try:
            result = float(text)
        except ValueError:
            return text
        return int(result) if result.is_integer() else result
    match = re.search(r"(\d+\.?\d*?)\\times10\^{?([+-]?\d+)}?", str(text))
    if match:
        result = _scaled(float(match.group(1)), int(match.group(2)))
        return int(result) if float(result).is_integer() else result
    return text


def _plain(number: float) -> str:
    return format(number, "f").rstrip("0").rstrip(".")


def convert_to_decimal(text: Any) -> Any:
    if "e" in str(text).lower():
        try:
            return _plain(float(text))
        except ValueError:
            return text
    match = re.search(r"10\^{([+-]?\d+)}", str(text))
    if match:
        return _plain(_scaled(1.0, int(match.group(1))))
    match = re.search(r"(\d+\.?\d*?)\\times10\^{([+-]?\d+)}", str(text))
    if match:
        return _plain(_scaled(float(match.group(1)), int(match.group(2))))
    return text


def clean_math_func_1(text: str) -> str:
    return re.sub(r"(\d+\.?\d*?)\\times10\^{([+-]?\d+)}\\",
                  lambda m: f"{float(m.group(1))}e{int(m.group(2))}", text.replace(",", ""))


def is_numbers_equal_post(num1_str: str, num2_str: str, tolerance: float = 1e-10) -> bool:
    def parse_scientific(s: str) -> float:
        if "e" in s.lower():
            return float(s)
        s = s.replace("\\", "").replace(",", "")
        match = re.search(r"(\d+\.?\d*?)times10\^{([+-]?\d+)}", s)
        if match:
            return float(match.group(1)) * (10 ** int(match.group(2)))
        return float(s)

    try:
        num1, num2 = parse_scientific(num1_str), parse_scientific(num2_str)
    except ValueError:
        return False

    def significant_digits(s: str) -> int:
        s = str(s).lower()
        if "e" in s:
            s = f"{float(s):f}"
        return sum(c.isdigit() for c in s.rstrip("0").rstrip("."))

    digits = min(significant_digits(num1_str), significant_digits(num2_str))
    scale = max(abs(num1), abs(num2))
    if scale == 0:
        return abs(num1 - num2) < tolerance
    return abs(num1 - num2) / scale <= 0.5 * 10 ** (-(digits - 1))


# ----------------------------------------------------------------------------------------------- symbols
_SAFE_NAMES = frozenset({
    "sqrt", "pi", "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "sinh", "cosh", "tanh", "log",
    "ln", "exp", "oo", "Abs", "abs", "factorial", "binomial", "Rational", "Integer", "Float", "E", "I", "Matrix",
    "Interval", "Union", "FiniteSet", "Eq", "True", "False"})


def _safe_for_eval(s: str) -> bool:
    """Text `parse_expr` may see: numbers, operators, brackets and short or known math names, no quotes, no
    attribute access, no dunder (parse_expr evaluates its input as Python)."""
    if re.search(r"[\"'`;@#$\\]|__|\.[A-Za-z_]", s):
        return False
    return all(len(name) <= 2 or name in _SAFE_NAMES for name in re.findall(r"[A-Za-z_]\w*", s))


def _parse_latex(s: str) -> Any:
    try:
        from sympy.parsing.latex import parse_latex

        return parse_latex(s)
    except ImportError:  # sympy's parser needs antlr 4.11; math-verify pins another: use latex2sympy2's fork
        from latex2sympy2_extended import latex2sympy

        return latex2sympy(s)


def _parse_expr(s: str) -> Any:
    if not _safe_for_eval(s):
        raise ValueError("not evaluated: text outside the safe set")
    from sympy.parsing.sympy_parser import parse_expr

    return parse_expr(s)


def _latex2sympy(s: str) -> Any:
    from latex2sympy2_extended import latex2sympy

    return latex2sympy(s)


def symbolic_equal(a: str, b: str) -> bool:
    from sympy import N, simplify

    def parse(s: str) -> Any:
        for f in (_parse_latex, _parse_expr, _latex2sympy):
            for text in (s.replace("\\\\", "\\"), s):
                try:
                    return f(text)
                except Exception:  # noqa: BLE001,S112 - upstream tries the next parser on any failure
                    continue
        return s

    x, y = parse(a), parse(b)
    if str(x) == str(y) or x == y:
        return True
    if isinstance(x, str) or isinstance(y, str):  # unparsed text: upstream's next checks would sympify (eval) it
        return False
    checks = (
        lambda: x.equals(y) or simplify(x - y) == 0,
        lambda: (abs(x.lhs - x.rhs)).equals(abs(y.lhs - y.rhs)),
        lambda: numeric_equal(float(N(x)), float(N(y))),
        lambda: x.shape == y.shape and x.applyfunc(lambda v: round(v, 3)).equals(y.applyfunc(lambda v: round(v, 3))),
    )
    for check in checks:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001,S112 - as upstream: a failing check is "not shown equal"
            continue
    return False


# ----------------------------------------------------------------------------------------------- math_equal
def _parts_equal(pred_parts: list[str], ref_parts: list[str], include_percentage: bool, is_close: bool) -> bool:
    return len(pred_parts) == len(ref_parts) and all(
        math_equal(p, r, include_percentage, is_close) for p, r in zip(pred_parts, ref_parts, strict=True))


def _matrix_equal(prediction: str, reference: str, include_percentage: bool, is_close: bool) -> bool:
    opens, closes = ("\\begin{pmatrix}", "\\begin{bmatrix}"), ("\\end{pmatrix}", "\\end{bmatrix}")
    if not (prediction.startswith(opens) and prediction.endswith(closes) and reference.startswith(opens)
            and reference.endswith(closes)):
        return False

    def lines(m: str) -> list[str]:
        return [line.strip() for line in m[len(opens[0]):-len(closes[0])].split("\\\\") if line.strip()]

    pred_lines, ref_lines = lines(prediction), lines(reference)
    if len(pred_lines) != len(ref_lines):
        return False
    return all(_parts_equal(p.split("&"), r.split("&"), include_percentage, is_close)
               for p, r in zip(pred_lines, ref_lines, strict=True))


def _numbers_equal(prediction: str, reference: str, include_percentage: bool, is_close: bool) -> bool | None:
    """The numeric step: True / False when both are numbers, None when the symbolic steps must decide."""
    if not (is_digit(prediction) and is_digit(reference)):
        return None
    if round_to_two_decimals(prediction) == round_to_two_decimals(reference):
        return True
    pred, ref = parse_digits(prediction), parse_digits(reference)
    assert pred is not None and ref is not None
    targets = [ref / 100, ref, ref * 100] if include_percentage else [ref]
    return any(numeric_equal(pred, t) if is_close else t == pred for t in targets)


def math_equal(prediction: Any, reference: Any, include_percentage: bool = True, is_close: bool = True) -> bool:
    """The official `math_equal` (eval/evaluate_math/grader.py), step for step: numbers first (rounding, tolerance,
    percent forms), then strings without brackets, tuples and matrices part by part, scientific notation,
    equations, and sympy."""
    if prediction is None or reference is None:
        return False
    if str(prediction).strip().lower() == str(reference).strip().lower():
        return True
    if reference in _CHOICES and choice_answer_clean(str(prediction)) == reference:
        return True
    with contextlib.suppress(Exception):
        numeric = _numbers_equal(str(prediction), str(reference), include_percentage, is_close)
        if numeric is not None:
            return numeric
    if not prediction and prediction not in (0, False):
        return False

    reference, prediction = str(reference).strip(), str(prediction).strip()
    if "pmatrix" in prediction and "pmatrix" not in reference:
        reference = str_to_pmatrix(reference)
    pred_str, ref_str = prediction, reference
    if ((prediction.startswith("[") and prediction.endswith("]") and not reference.startswith("("))
            or (prediction.startswith("(") and prediction.endswith(")") and not reference.startswith("["))):
        pred_str, ref_str = pred_str.strip("[]()"), ref_str.strip("[]()")
    for bracket in "{}()":
        pred_str, ref_str = pred_str.replace(bracket, ""), ref_str.replace(bracket, "")
    if pred_str.lower() == ref_str.lower():
        return True

    tuple_re = r"(\(|\[).+(\)|\])"
    if (re.match(tuple_re, prediction) and re.match(tuple_re, reference)
            and _parts_equal(prediction[1:-1].split(","), reference[1:-1].split(","), include_percentage, is_close)):
        return True
    if _matrix_equal(prediction, reference, include_percentage, is_close):
        return True
    if convert_to_number(prediction) == convert_to_number(reference):
        return True

    if prediction.count("=") == 1 and reference.count("=") == 1:
        pl, pr = prediction.split("=")
        rl, rr = reference.split("=")
        pred, ref = f"{pl.strip()} - ({pr.strip()})", f"{rl.strip()} - ({rr.strip()})"
        if symbolic_equal(pred, ref) or symbolic_equal(f"-({pred})", ref):
            return True
    elif prediction.count("=") == 1 and len(prediction.split("=")[0].strip()) <= 2 and "=" not in reference:
        if math_equal(prediction.split("=")[1], reference, include_percentage, is_close):
            return True
    elif (reference.count("=") == 1 and len(reference.split("=")[0].strip()) <= 2 and "=" not in prediction
          and math_equal(prediction, reference.split("=")[1], include_percentage, is_close)):
        return True
    if ("=" in prediction or "=" in reference) and math_equal(
            prediction.split("=")[-1].replace("{", "("), reference.split("=")[-1].replace("{", "("),
            include_percentage, is_close):
        return True

    if convert_to_decimal(prediction) == convert_to_decimal(reference):
        return True
    if symbolic_equal(prediction, reference):
        return True
    with contextlib.suppress(Exception):
        if is_numbers_equal_post(clean_math_func_1(prediction), clean_math_func_1(reference)):
            return True
    return False


# ----------------------------------------------------------------------------------------------- the grader
class _Timeout(BaseException):  # not an Exception: math_equal's broad handlers must not swallow it
    pass


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, expire)
    remaining = signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if remaining:
            signal.alarm(remaining)


def equivalent(predicted: str, gold: str) -> bool:
    """Is the extracted answer `predicted` equal to the bare `gold` answer by the paper's grader? Both are cleaned
    with `strip_string`, then compared by `math_equal` within TIMEOUT_S seconds."""
    if not predicted or not predicted.strip():
        return False
    try:
        with _time_limit(TIMEOUT_S):
            return bool(math_equal(strip_string(predicted), strip_string(gold)))
    except _Timeout:
        return False
    except RecursionError:
        return False
