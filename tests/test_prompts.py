"""Prompt styles: the paper's wording, inheritance, unknown names."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.prompts import available_styles, load_style


def test_paper_style_reproduces_the_published_templates():
    style = load_style("paper")
    msgs = style.critique_messages("What is 2+2?", "5")
    assert msgs[0]["role"] == "system" and "'Conclusion: right' or 'Conclusion: wrong'" in msgs[0]["content"]
    assert msgs[1]["content"] == "Question: What is 2+2?\n\nStudent's Answer: 5"
    refine = style.refine_messages("Q", "D", "C")
    assert refine[1]["content"] == "Question: Q\n\nStudent's Initial Answer: D\n\nCritique: C"
    cgd = style.train_messages("cgd", prompt="Q", draft="D", critique="C")
    assert cgd[1]["content"] == "Question: Q\n\nStudent's Initial Answer: D\n\nCritique: C"
    assert style.answer_messages("Q") == [{"role": "user", "content": "Q"}]
    assert style.fixed_critiques == []


def test_generic_style_extends_paper_with_boilerplate():
    style = load_style("generic")
    assert len(style.fixed_critiques) >= 3
    assert style.refine_messages("Q", "D", "C") == load_style("paper").refine_messages("Q", "D", "C")
    assert set(available_styles()) >= {"paper", "generic"}


def test_unknown_style_lists_what_exists():
    with pytest.raises(HarnessError, match="unknown prompt style 'papr'; available: .*paper"):
        load_style("papr")
