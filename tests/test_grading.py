"""The grader on a table of answer pairs: right forms that must match, and wrong-but-close ones that must not."""

from __future__ import annotations

import pytest

from harness.grading import all_boxed, equivalent, extract_answer, grade, grade_answer, last_boxed, verdict_of

# (model response, gold answer, expected)
TABLE = [
    # fractions
    ("The answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}", True),
    ("\\boxed{\\dfrac{1}{2}}", "\\frac12", True),
    ("\\boxed{1/2}", "\\frac{1}{2}", True),
    ("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}", True),
    ("\\boxed{-\\frac{1}{2}}", "\\frac{-1}{2}", True),
    ("\\boxed{\\tfrac{5}{6}}", "\\frac{5}{6}", True),
    ("\\boxed{\\frac{1}{3}}", "\\frac{1}{4}", False),
    ("\\boxed{\\frac{5}{6}}", "\\frac{6}{5}", False),
    # decimals
    ("\\boxed{0.5}", "\\frac{1}{2}", True),
    ("\\boxed{1.5}", "\\frac{3}{2}", True),
    ("\\boxed{6.0}", "6", True),
    ("\\boxed{0.3333333}", "\\frac{1}{3}", True),
    ("\\boxed{0.5001}", "0.5", False),
    ("\\boxed{0.333}", "\\frac{1}{3}", False),
    ("\\boxed{3.14}", "\\pi", False),
    ("\\boxed{0.866}", "\\frac{\\sqrt{3}}{2}", False),
    # integers, thousands separators, leading zeros, signs
    ("\\boxed{1,000}", "1000", True),
    ("\\boxed{3,600}", "3600", True),
    ("\\boxed{024}", "24", True),
    ("\\boxed{101}", "100", False),
    ("\\boxed{1000}", "1,000,000", False),
    ("\\boxed{-5}", "5", False),
    # LaTeX forms
    ("\\boxed{\\sqrt{2}/2}", "\\frac{\\sqrt{2}}{2}", True),
    ("\\boxed{3\\sqrt{13}}", "\\sqrt{117}", True),
    ("\\boxed{2\\sqrt{3}}", "3\\sqrt{2}", False),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3,\\frac{\\pi}{2})", True),
    ("\\boxed{10^{10}}", "10000000000", True),
    ("\\boxed{x(x+2)}", "x^2+2x", True),
    ("\\boxed{x^3}", "x^2", False),
    ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("\\boxed{\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}}", "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
     False),
    ("\\boxed{2^{1009}}", "2^{1009}", True),
    ("\\boxed{2^{1008}}", "2^{1009}", False),
    # intervals
    ("\\boxed{(-2, 2)}", "(-2,2)", True),
    ("\\boxed{[-2, 2]}", "(-2,2)", False),
    ("\\boxed{[1,3)}", "[1,3)", True),
    ("\\boxed{[1,3]}", "[1,3)", False),
    ("\\boxed{(-\\infty, 2]}", "(-\\infty,2]", True),
    ("\\boxed{(-\\infty,0)\\cup(1,\\infty)}", "(-\\infty,0)\\cup(1,\\infty)", True),
    ("\\boxed{(-\\infty,0]\\cup(1,\\infty)}", "(-\\infty,0)\\cup(1,\\infty)", False),
    ("\\boxed{x \\in [1,3)}", "[1,3)", True),
    # units, degrees, money, percent
    ("\\boxed{5\\text{ cm}}", "5", True),
    ("\\boxed{12 \\text{ km/h}}", "12", True),
    ("\\boxed{8 \\text{ feet}}", "8", True),
    ("\\boxed{90^\\circ}", "90", True),
    ("\\boxed{\\$18.00}", "18", True),
    ("\\boxed{20\\%}", "20", True),
    ("\\boxed{10\\%}", "0.1", True),
    ("\\boxed{21\\%}", "20", False),
    ("\\boxed{6 \\text{ cm}}", "5", False),
    # multiple answers (sets), tuples, \pm
    ("\\boxed{2, 3}", "3,2", True),
    ("\\boxed{\\{2,3\\}}", "2,3", True),
    ("The solutions are \\boxed{2} and \\boxed{3}.", "2,3", True),
    ("\\boxed{\\pm 2}", "2,-2", True),
    ("\\boxed{2, 4}", "2,3", False),
    ("\\boxed{(3, 2)}", "(2,3)", False),
    # \boxed nesting and extraction
    ("First \\boxed{1}, then correcting myself: \\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", True),
    ("\\boxed{\\boxed{7}}", "7", True),
    ("$\\boxed{\\text{(C)}}$", "C", True),
    ("\\boxed{\\text{(C)}}", "D", False),
    ("\\fbox{42}", "42", True),
    ("so it is \\boxed 5.", "5", True),
    ("The final answer is $\\frac{5}{6}$. I hope it is correct.", "\\frac{5}{6}", True),
    ("So 9 eggs are sold at $2 each.\n#### 18", "18", True),
    ("We get 3 + 4 = 7, so she has 7 apples left.", "7", True),
    ("We get 3 + 4 = 7, so she has 7 apples left.", "8", False),
    ("\\boxed{", "5", False),
    ("", "5", False),
    # words
    ("\\boxed{\\text{Evelyn}}", "Evelyn", True),
    ("\\boxed{Levyne}", "Evelyn", False),
    ("\\boxed{True}", "True", True),
    ("\\boxed{False}", "True", False),
    ("\\boxed{\\text{no solution}}", "\\text{none}", False),
    # equations
    ("\\boxed{x=5}", "5", True),
    ("\\boxed{x=-5}", "x=5", False),
    ("\\boxed{y = 2x + 1}", "2x+1", True),
]


def test_table_is_large_enough():
    assert len(TABLE) >= 60
    assert sum(1 for *_, ok in TABLE if not ok) >= 20  # plenty of wrong-but-close answers


@pytest.mark.parametrize(("response", "gold", "expected"), TABLE)
def test_grade_answer_table(response: str, gold: str, expected: bool):
    assert grade_answer(response, gold) is expected


def test_extraction():
    assert last_boxed("a \\boxed{\\frac{1}{\\sqrt{2}}} b \\boxed{x^{2}}") == "x^{2}"
    assert all_boxed("\\boxed{1} and \\fbox{2}") == ["1", "2"]
    assert last_boxed("no box here") is None
    assert last_boxed("\\boxed{unbalanced") is None
    assert extract_answer("The answer is 42.") == "42"
    assert extract_answer("Therefore the final answer is: $x+1$") == "x+1"
    assert extract_answer("blah 3 then 4.5 more", last_number=True) == "4.5"
    assert extract_answer("\\frac{1}{2}") == "\\frac{1}{2}"  # a bare reference stays whole


def test_grade_against_worked_references():
    assert grade("\\boxed{8}", "20+9=29. 29-21=8. The answer is \\boxed{8}.")
    assert grade("It comes to 18 dollars", "9 * 2 = <<9*2=18>>18 dollars.\n#### 18")
    assert not grade("\\boxed{9}", "The answer is 8.")


def test_equivalent_never_raises_on_garbage():
    assert equivalent("\\frac{", "1") is False
    assert equivalent("::::", "1") is False


def test_verdict():
    assert verdict_of("...\nConclusion: right") == "right"
    assert verdict_of("Conclusion: **wrong**") == "wrong"
    assert verdict_of("Conclusion: correct. Later: Conclusion: incorrect") == "wrong"
    assert verdict_of("no verdict") is None
