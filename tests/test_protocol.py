"""The paper recipes run the paper's protocol: every setting in harness/protocol.py matches the official value or
says why it differs, and docs/protocol.md is what `cgd protocol --write` generates from the code."""

from __future__ import annotations

from harness import protocol
from tests.test_pipeline import cgd


def test_every_paper_setting_matches_the_official_one_or_says_why():
    assert protocol.mismatches() == []


def test_docs_protocol_is_generated_from_the_code():
    assert protocol.DOC.read_text(encoding="utf-8") == protocol.render(), "run `cgd protocol --write`"


def test_the_table_reads_real_recipe_values():
    rows = {r["setting"]: r for r in protocol.rows("llama-3.1-8b-llama-3.3-70b")}
    assert rows["learning rate"]["harness"] == "1e-06" and rows["learning rate"]["status"] == "same"
    assert rows["checkpoint selection set"]["status"].startswith("differs on purpose")
    assert "(no such setting)" not in {r["harness"] for name in protocol.PAPER_RECIPES for r in protocol.rows(name)}


def test_cgd_protocol_prints_each_paper_recipe():
    out = cgd("protocol").stdout
    for name in protocol.PAPER_RECIPES:
        assert f"recipes/{name}.yaml" in out
