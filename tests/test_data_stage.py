"""The data stage: stable ids, skipped and duplicate rows counted, bad rows located by file and line."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from harness.errors import HarnessError
from harness.stages import data
from harness.stages.base import StageContext
from harness.store import RunStore

PARAMS = {"prompt_field": "question", "answer_field": "answer", "id_field": None, "limit": None}


def run(tmp_path, text: str, **params):
    path = tmp_path / "d.jsonl"
    path.write_text(text)
    out = io.StringIO()
    store = RunStore(tmp_path / "runs")
    ctx = StageContext("data", {**PARAMS, **params, "path": str(path)}, {}, store.stage("data", "0" * 64), store,
                       Console(file=out, width=200), None)
    return data.run(ctx, {}), out.getvalue(), path


def test_rows_get_stable_ids_and_skips_are_counted(tmp_path):
    text = ('{"question": "q1", "answer": 1}\n{"question": ""}\n{"answer": 3}\n'
            '{"question": "q1", "answer": 1}\n\n{"question": "q2"}\n')
    result, log, path = run(tmp_path, text)
    assert [r["prompt"] for r in result.records] == ["q1", "q2"]
    assert result.records[0]["reference"] == "1" and result.records[1]["reference"] is None
    assert result.info == {"rows": 2, "skipped": 2, "duplicates": 1}
    assert f"first at {path}:2" in log
    again, _, _ = run(tmp_path, text)
    assert [r["id"] for r in again.records] == [r["id"] for r in result.records]


@pytest.mark.parametrize(("text", "where", "what"), [
    ('{"question": "q1"}\n{"question": \n', ":2:", "not valid JSON"),
    ('{"question": "q1"}\n["q2"]\n', ":2:1:", "expected a JSON object"),
    ('{"prompt": "q1"}\n', "", "fields of the first row: prompt"),
])
def test_bad_rows_are_reported_with_file_and_line(tmp_path, text, where, what):
    with pytest.raises(HarnessError) as err:
        run(tmp_path, text)
    assert what in str(err.value) and f"d.jsonl{where}" in str(err.value)
