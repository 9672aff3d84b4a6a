"""The uncertainty analysis: NLL and entropy of ŷ on a 3-row fixture against plain torch, batching, run() shapes."""

from __future__ import annotations

import io
import random
import shutil
from pathlib import Path

import pytest
from rich.console import Console

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from harness.analysis import uncertainty  # noqa: E402
from harness.prompts import load_style  # noqa: E402
from harness.stages.base import StageContext, StageInput  # noqa: E402
from harness.store import RunStore  # noqa: E402
from tests.helpers.tiny_model import build_random_tiny_model  # noqa: E402

ROWS = [
    {"id": "r1", "prompt": "What is 3 + 4?", "draft": "3 + 4 = 8. The answer is 8.",
     "critique": "The sum is wrong: 3 + 4 = 7.\nConclusion: wrong", "verdict": "wrong",
     "refined": "3 + 4 = 7. The answer is \\boxed{7}.", "refined_correct": True, "reference": "7", "status": "ok"},
    {"id": "r2", "prompt": "Compute 12 - 5.", "draft": "12 - 5 = 7, so the answer is 7.",
     "critique": "Correct subtraction.\nConclusion: right", "verdict": "right",
     "refined": "12 - 5 = 7. The answer is \\boxed{7}.", "refined_correct": True, "reference": "7", "status": "ok"},
    {"id": "r3", "prompt": "What is 6 times 7? Show the steps.", "draft": "6 * 7 = 42",
     "critique": "Right, but no steps are shown.\nConclusion: right", "verdict": "right",
     "refined": "6 * 7 = 6 * 5 + 6 * 2 = 30 + 12 = 42. The answer is \\boxed{42}.", "refined_correct": True,
     "reference": "42", "status": "ok"},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def loaded(tiny: Path):
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny)
    return model, tokenizer


def _conversations(condition: str) -> list[tuple[list[dict[str, str]], str]]:
    style = load_style("paper")
    msgs = {
        "x": lambda r: [{"role": "user", "content": r["prompt"]}],
        "x_y_c": lambda r: style.train_messages("cgd", prompt=r["prompt"], draft=r["draft"], critique=r["critique"]),
    }[condition]
    return [(msgs(r), r["refined"]) for r in ROWS]


def _reference(model, tokenizer, messages, target):
    """Plain torch, one row: chat template + target + eos, log_softmax at each target position."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    answer = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor([prompt + answer])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    nll = entropy = 0.0
    for k, token in enumerate(answer):
        logp = torch.log_softmax(logits[len(prompt) + k - 1], dim=-1)
        nll += -float(logp[token])
        entropy += -float((logp.exp() * logp).sum())
    return nll, entropy, len(answer)


@pytest.mark.parametrize("condition", ["x", "x_y_c"])
def test_score_targets_matches_plain_torch(loaded, condition: str) -> None:
    model, tokenizer = loaded
    convs = _conversations(condition)
    got = uncertainty.score_targets(model, tokenizer, convs, batch_size=3, max_tokens=1024)
    for (messages, target), row in zip(convs, got, strict=True):
        nll, entropy, n = _reference(model, tokenizer, messages, target)
        assert row["tokens"] == n
        assert row["nll_sum"] == pytest.approx(nll, abs=1e-5 * n, rel=1e-5)
        assert row["entropy_sum"] == pytest.approx(entropy, abs=1e-5 * n, rel=1e-5)
        assert row["nll_sum"] / n == pytest.approx(nll / n, abs=1e-5)
        assert row["entropy_sum"] / n == pytest.approx(entropy / n, abs=1e-5)


def test_batched_equals_one_at_a_time(loaded) -> None:
    model, tokenizer = loaded
    convs = _conversations("x_y_c") + _conversations("x")
    batched = uncertainty.score_targets(model, tokenizer, convs, batch_size=4, max_tokens=1024)
    single = uncertainty.score_targets(model, tokenizer, convs, batch_size=1, max_tokens=1024)
    for b, s in zip(batched, single, strict=True):
        assert b["tokens"] == s["tokens"]
        assert b["nll_sum"] / b["tokens"] == pytest.approx(s["nll_sum"] / s["tokens"], abs=1e-5)
        assert b["entropy_sum"] / b["tokens"] == pytest.approx(s["entropy_sum"] / s["tokens"], abs=1e-5)


def test_full_logits_path_gives_the_same(loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer = loaded
    convs = _conversations("x_y_c")
    kept = uncertainty.score_targets(model, tokenizer, convs, batch_size=3)
    monkeypatch.setattr(uncertainty, "_forward_accepts", lambda model, name: False)
    full = uncertainty.score_targets(model, tokenizer, convs, batch_size=3)
    for a, b in zip(kept, full, strict=True):
        assert a["tokens"] == b["tokens"]
        assert a["nll_sum"] / a["tokens"] == pytest.approx(b["nll_sum"] / b["tokens"], abs=1e-5)


def test_max_tokens_cuts_the_target(loaded) -> None:
    model, tokenizer = loaded
    convs = _conversations("x")
    full = uncertainty.score_targets(model, tokenizer, convs, batch_size=2, max_tokens=1024)
    cut = uncertainty.score_targets(model, tokenizer, convs, batch_size=2, max_tokens=3)
    assert all(c["tokens"] == 3 for c in cut)
    assert all(c["nll_sum"] < f["nll_sum"] for c, f in zip(cut, full, strict=True))


def test_conditions_use_the_training_inputs() -> None:
    style = load_style("paper")
    msgs = uncertainty.condition_messages(style, ROWS[0])
    assert msgs["x"] == style.train_messages("plain", prompt=ROWS[0]["prompt"])
    assert msgs["x_y"] == style.train_messages("cgd_no_critique", prompt=ROWS[0]["prompt"], draft=ROWS[0]["draft"])
    assert msgs["x_y_c"] == style.train_messages("cgd", prompt=ROWS[0]["prompt"], draft=ROWS[0]["draft"],
                                                 critique=ROWS[0]["critique"])
    assert ROWS[0]["critique"] in msgs["x_y_c"][-1]["content"]
    assert ROWS[0]["draft"] in msgs["x_y"][-1]["content"] and ROWS[0]["critique"] not in msgs["x_y"][-1]["content"]


def test_a_style_without_a_draft_only_input_gets_the_documented_template() -> None:
    from harness.prompts import PromptStyle

    paper = load_style("paper")
    spec = {**paper.spec, "train": {k: v for k, v in paper.spec["train"].items() if k != "cgd_no_critique"}}
    msgs = uncertainty.condition_messages(PromptStyle("bare", spec), ROWS[0])
    assert msgs["x_y"] == [{"role": "user", "content": uncertainty.DRAFT_ONLY["user"].format(**ROWS[0])}]


def test_seeded_sample_is_stable_and_nested() -> None:
    records = [{**ROWS[i % 3], "id": f"row{i}"} for i in range(50)]
    a = uncertainty.sample_records(records, 10, seed=0)
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    assert [r["id"] for r in uncertainty.sample_records(shuffled, 10, seed=0)] == [r["id"] for r in a]
    assert [r["id"] for r in uncertainty.sample_records(records, 5, seed=0)] == [r["id"] for r in a[:5]]
    assert {r["id"] for r in uncertainty.sample_records(records, 10, seed=1)} != {r["id"] for r in a}


def _ctx(tmp_path: Path, name: str = "analysis:uncertainty") -> StageContext:
    store = RunStore(tmp_path / "runs")
    return StageContext(name, {}, {"device": "cpu"}, store.stage(name, "0" * 64), store,
                        Console(file=io.StringIO()), None)


def _inputs(tiny: Path, variant: Path, records: list[dict], holdout: list[str] | None = None) -> dict:
    train_info = {"model_path": str(variant), "final_loss": 1.0}
    if holdout is not None:
        train_info["holdout_ids"] = holdout
    return {
        "student": StageInput("student", [], {"model_path": str(tiny), "built": True}),
        "train:cgd:0": StageInput("train:cgd:0", [], train_info),
        "refine": StageInput("refine", records, {"ok": len(records)}),
    }


@pytest.fixture(scope="module")
def variant(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 'trained' model: the tiny one with its weights nudged (same tokenizer, different numbers)."""
    out = tmp_path_factory.mktemp("variant") / "model"
    shutil.copytree(tiny, out)
    model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(out)
    return out


def test_run_end_to_end(tmp_path: Path, tiny: Path, variant: Path) -> None:
    records = [{**ROWS[i % 3], "id": f"row{i}"} for i in range(8)]
    records.append({**ROWS[0], "id": "failed", "status": "failed", "refined": None})
    settings = uncertainty.Settings(sample=6, batch_size=4, resamples=300)
    ctx = _ctx(tmp_path)
    out = uncertainty.run(ctx, _inputs(tiny, variant, records), settings)

    main, order = out["tables"]
    assert main["columns"] == uncertainty.TABLE_COLUMNS
    assert [r[:2] for r in main["rows"]] == [[m, c] for m in ("base", "cgd@seed0") for c in ("x", "x_y", "x_y_c")]
    col = {name: i for i, name in enumerate(main["columns"])}
    for row in main["rows"]:
        assert len(row) == len(main["columns"])
        for metric in ("nll", "entropy"):
            assert row[col[f"{metric}_low"]] <= row[col[metric]] <= row[col[f"{metric}_high"]]
            assert row[col[metric]] > 0
        assert row[col["rows"]] == 6 and row[col["tokens"]] > 6
        assert out["numbers"][f"{row[0]}.{row[1]}.nll"] == row[col["nll"]]
        assert out["numbers"][f"{row[0]}.{row[1]}.entropy"] == row[col["entropy"]]
    # every condition scores the same tokens of ŷ (paired)
    assert len({r[col["tokens"]] for r in main["rows"]}) == 1
    assert order["columns"] == uncertainty.ORDER_COLUMNS
    assert [r[:2] for r in order["rows"]] == [[m, k] for m in ("base", "cgd@seed0") for k in ("entropy", "nll")]
    n = out["numbers"]
    for m in ("base", "cgd@seed0"):
        for k in ("entropy", "nll"):
            diff = n[f"{m}.diff.x-x_y.{k}"]
            assert diff == pytest.approx(n[f"{m}.x.{k}"] - n[f"{m}.x_y.{k}"])
            assert n[f"{m}.diff.x-x_y.{k}_low"] <= diff <= n[f"{m}.diff.x-x_y.{k}_high"]
            holds = n[f"{m}.x.{k}"] >= n[f"{m}.x_y.{k}"] >= n[f"{m}.x_y_c.{k}"]
            assert n[f"{m}.ordering.{k}"] == float(holds)
    assert n["base.x.nll"] != n["cgd@seed0.x.nll"]
    assert all(isinstance(v, float) for v in n.values())
    assert any("not held out" in note for note in out["notes"])
    assert any("rows/s" in note for note in out["notes"])
    scores = (ctx.path / "uncertainty_scores.jsonl").read_text().splitlines()
    assert len(scores) == 2 * 3 * 6

    # seeded: the same settings give the same numbers; models: only the asked ones
    again = uncertainty.run(_ctx(tmp_path / "again"), _inputs(tiny, variant, records),
                            settings.model_copy(update={"models": ["base"]}))
    assert {k: v for k, v in n.items() if k.startswith("base.")} == again["numbers"]


def test_run_uses_the_held_out_rows(tmp_path: Path, tiny: Path, variant: Path) -> None:
    records = [{**ROWS[i % 3], "id": f"row{i}"} for i in range(8)]
    settings = uncertainty.Settings(sample=200, resamples=100, models=["base"])
    out = uncertainty.run(_ctx(tmp_path), _inputs(tiny, variant, records, holdout=["row1", "row4", "row9"]), settings)
    assert out["numbers"]["base.rows"] == 2.0
    assert any("held-out rows: 2" in note for note in out["notes"])
    with pytest.raises(ValueError, match="unknown model 'sft@seed0'; available: base, cgd@seed0"):
        uncertainty.run(_ctx(tmp_path / "b"), _inputs(tiny, variant, records),
                        settings.model_copy(update={"models": ["sft@seed0"]}))
