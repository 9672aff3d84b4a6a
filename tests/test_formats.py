"""harness/formats: `train.format` and `train.chat_template` per paper recipe (the training example's turn layout and
the Axolotl config keys), `train.overlong`, and the masking proof through Axolotl for LLaMA-Factory's qwen layout.
Equality with LLaMA-Factory's own code is measured by bench/llamafactory_equivalence.py (it needs LLaMA-Factory in a
virtualenv of its own)."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import ValidationError

from harness.axolotl.config import render_axolotl_config
from harness.formats import get_template, render_rows, template_names
from harness.formats.llamafactory_alpaca import from_alpaca, to_alpaca
from harness.paths import RECIPES_DIR
from harness.prompts import load_style
from harness.recipe import load_recipes
from harness.recipe.schema import TrainSpec
from harness.report.model import RunData
from harness.report.table import left_out_notes
from harness.stages import export as export_stage
from harness.stages import train as train_stage
from harness.variants.rows import chat_row

PAPER = {"qwen-math-7b-claude": "qwen", "llama-3.1-8b-llama-3.3-70b": "llama3", "s1.1-3b-s1.1-32b": "qwen"}
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
PROMPT, DRAFT, CRITIQUE, REFINED = ("What is 12 plus 7?", "12 plus 7 is 18.",
                                    "The sum is off by one.\nConclusion: wrong", "12 + 7 = 19. The answer is 19.")


def _recipe(name: str):
    return load_recipes(RECIPES_DIR / f"{name}.yaml")[0]


def _rows() -> dict[str, dict]:
    style = load_style("paper")
    return {"cgd": chat_row("r1", style.train_messages("cgd", prompt=PROMPT, draft=DRAFT, critique=CRITIQUE), REFINED),
            "sft": chat_row("r2", style.train_messages("plain", prompt=PROMPT), REFINED)}


def _render(messages: list[dict], jinja: str) -> str:
    env = ImmutableSandboxedEnvironment(undefined=jinja2.Undefined)
    return env.from_string(jinja).render(messages=messages)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_recipe_renders_llamafactory_alpaca(name: str) -> None:
    recipe = _recipe(name)
    train = recipe.train
    assert (train.format, train.chat_template, train.overlong) == ("llamafactory_alpaca", PAPER[name], "truncate")
    rows = _rows()
    instruction = load_style("paper").spec["train"]["cgd"]["system"]
    user_input = f"Question: {PROMPT}\n\nStudent's Initial Answer: {DRAFT}\n\nCritique: {CRITIQUE}"
    cgd, sft = (render_rows([rows[k]], train.format, train.chat_template)[0]["messages"] for k in ("cgd", "sft"))
    system = [{"role": "system", "content": QWEN_SYSTEM, "training": False}] if PAPER[name] == "qwen" else []
    # the instruction joins the input in ONE user turn; the system turn is the template's default (llama3: none)
    assert cgd == [*system, {"role": "user", "content": instruction + "\n" + user_input, "training": False},
                   {"role": "assistant", "content": REFINED, "training": True}]
    assert sft == [*system, {"role": "user", "content": PROMPT, "training": False},
                   {"role": "assistant", "content": REFINED, "training": True}]
    text = _render(cgd, get_template(PAPER[name]).jinja)
    if PAPER[name] == "qwen":
        assert text == (f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n<|im_start|>user\n{instruction}\n{user_input}"
                        f"<|im_end|>\n<|im_start|>assistant\n{REFINED}<|im_end|>\n")
    else:
        assert text == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                        f"{instruction}\n{user_input}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
                        f"{REFINED}<|eot_id|>")
    # a bare user turn (inference) gets the default system prompt and the assistant header, as in LLaMA-Factory
    bare = _render([{"role": "user", "content": PROMPT}], get_template(PAPER[name]).jinja)
    assert bare.endswith("assistant\n" if PAPER[name] == "qwen" else "assistant<|end_header_id|>\n\n")
    assert (QWEN_SYSTEM in bare) == (PAPER[name] == "qwen")


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_recipe_axolotl_config_keys(name: str, tmp_path: Path) -> None:
    recipe = _recipe(name)
    template = get_template(PAPER[name])
    cfg = render_axolotl_config(recipe.train, base_model="student", dataset_path=tmp_path / "d.jsonl",
                                output_dir=tmp_path / "out", prepared_dir=tmp_path / "prep", seed=0, on_gpu=True)
    assert cfg["chat_template"] == "jinja" and cfg["chat_template_jinja"] == template.jinja
    assert cfg["special_tokens"] == {"eos_token": {"qwen": "<|im_end|>", "llama3": "<|eot_id|>"}[PAPER[name]]}
    assert cfg["excess_length_strategy"] == "truncate"
    if PAPER[name] == "qwen":  # LLaMA-Factory's qwen assistant slot trains "<|im_end|>\n"
        assert cfg["eot_tokens"] == ["\n"] and cfg["datasets"][0]["train_on_eot"] == "turn"
    else:
        assert "eot_tokens" not in cfg and "train_on_eot" not in cfg["datasets"][0]
    assert cfg["datasets"][0]["train_on_eos"] == "turn"
    # the export and train fingerprints carry the format keys
    assert export_stage.stage_params(recipe) == {"format": "llamafactory_alpaca", "chat_template": PAPER[name],
                                                 "overlong": "truncate", "sequence_len": recipe.train.sequence_len}
    assert train_stage.stage_params(recipe, 0)["train"]["chat_template"] == PAPER[name]


def test_defaults_leave_config_and_fingerprints_alone(tmp_path: Path) -> None:
    recipe = _recipe("tiny")
    assert (recipe.train.format, recipe.train.chat_template, recipe.train.overlong) == ("chat", None, "drop")
    cfg = render_axolotl_config(recipe.train, base_model="student", dataset_path=tmp_path / "d.jsonl",
                                output_dir=tmp_path / "out", prepared_dir=tmp_path / "prep", seed=0, on_gpu=False)
    assert cfg["chat_template"] == "tokenizer_default"
    assert not {"chat_template_jinja", "special_tokens", "eot_tokens", "excess_length_strategy"} & set(cfg)
    assert export_stage.stage_params(recipe) == {}
    assert not {"format", "chat_template", "overlong"} & set(train_stage.stage_params(recipe, 0)["train"])
    rows = list(_rows().values())
    assert render_rows(rows, "chat", None) == rows


def test_format_needs_a_template_and_names_are_checked() -> None:
    with pytest.raises(ValidationError, match="needs train.chat_template"):
        TrainSpec(format="llamafactory_alpaca")
    with pytest.raises(ValidationError):
        TrainSpec(chat_template="chatml")
    with pytest.raises(ValidationError):
        TrainSpec(overlong="raise")
    assert template_names() == ["llama3", "qwen"]
    assert set(TrainSpec.model_fields["chat_template"].annotation.__args__[0].__args__) == set(template_names())


def test_alpaca_round_trip() -> None:
    row = to_alpaca([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    assert row == {"instruction": "q", "input": "", "output": "a"}
    assert [m["content"] for m in from_alpaca(row, get_template("llama3"))] == ["q", "a"]
    with pytest.raises(ValueError, match="one user and one assistant"):
        to_alpaca([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                   {"role": "user", "content": "more"}, {"role": "assistant", "content": "b"}])


def test_report_shows_overlong_rows() -> None:
    run = RunData(name="paper", rows=[], info={"stages": {"data": {"records": 10}}, "dataset_sizes": {
        "cgd": {"examples": 10, "source_records": 10, "left_out": {},
                "overlong": {"rows": 3, "sequence_len": 4096, "action": "truncated", "longest": 5000}},
        "cft": {"examples": 10, "source_records": 10, "left_out": {},
                "overlong": {"rows": 2, "sequence_len": 4096, "action": "truncated", "prompt_over": 1}},
        "sft": {"examples": 10, "source_records": 10, "left_out": {},
                "overlong": {"rows": 0, "sequence_len": 4096, "action": "truncated", "longest": 100}}}})
    assert left_out_notes([run]) == ["training examples of 10 prompts in paper: cgd 10 (3 over 4096 tokens, "
                                     "truncated); cft 10 (2 over 4096 tokens, truncated (1 with no target token "
                                     "left))"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers.tiny_model import build_random_tiny_model

    return build_random_tiny_model(tmp_path_factory.mktemp("formats-model") / "student")


def test_qwen_layout_masking_and_lengths_through_axolotl(tiny_model: Path, tmp_path: Path) -> None:
    """Axolotl, with the config the harness renders, trains exactly the target + <|im_end|> + "\\n" (LLaMA-Factory's
    qwen assistant slot) on the tiny ChatML student, and the overlong count matches Axolotl's own tokenization."""
    from harness.axolotl.masking import check_trained_spans, row_lengths, tokenize_rows

    rows = render_rows(list(_rows().values()), "llamafactory_alpaca", "qwen")
    dataset = tmp_path / "dataset.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = TrainSpec(format="llamafactory_alpaca", chat_template="qwen", overlong="truncate", sequence_len=120,
                      global_batch_size=2)
    cfg = render_axolotl_config(train, base_model=str(tiny_model), dataset_path=dataset, output_dir=tmp_path / "o",
                                prepared_dir=tmp_path / "p", seed=0, on_gpu=False)
    report = check_trained_spans(cfg, n=8)
    report.raise_for_problems()
    assert len(report.entries) == 2
    assert all(e.expected_text.endswith("<|im_end|>\n") for e in report.entries)
    lengths = row_lengths(cfg, dataset)
    assert lengths.lengths == [len(t["input_ids"]) for t in tokenize_rows(cfg, rows)]
    assert lengths.strategy == "truncate" and lengths.over == sum(n > 120 for n in lengths.lengths) == 1
    # the CGD row's prompt alone (instruction, question, draft, critique) is longer than 120 tokens
    assert lengths.prompt_over == 1 and lengths.lengths[1] <= 120
