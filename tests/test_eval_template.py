"""`eval.template`: the CGD paper's hand-written maths prompt (llama3-math-cot) and its nine stop words, rendered by
lm-eval byte for byte as the official eval code builds them, and part of the evaluate fingerprints only when set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from harness.evaluation import load_suite, run_suite
from harness.evaluation.prompts import (
    apply_prompt_template,
    load_chat_template,
    official_stop_words,
    render_prompts,
)
from harness.paths import EVAL_SUITES_DIR, PROJECT_ROOT

pytest_plugins = ["tests.helpers.eval_env"]  # fixtures: eval_env, tiny

MATH500 = EVAL_SUITES_DIR / "fixtures" / "hf" / "HuggingFaceH4__MATH-500" / "default" / "test.jsonl"
# CapitalOne-Research/Critique-Guided-Distillation, eval/evaluate_math/utils.py, PROMPT_TEMPLATES["llama3-math-cot"]
# (input template, output template, splitter), copied as written there.
OFFICIAL_LLAMA3_MATH_COT = (
    "<|start_header_id|>system<|end_header_id|>\nPlease reason step by step, and put your final answer within "
    "\\boxed{{}}.<|eot_id|>\n"
    "<|start_header_id|>user<|end_header_id|>\n{input}<|eot_id|>\n"
    "<|start_header_id|>assistant<|end_header_id|>\n",
    "{output}",
    "\n\n",
)
# eval/evaluate_math/math_eval.py, main(): the stop words (no extra ones for prompt_type llama3-math-cot).
OFFICIAL_STOP_WORDS = ["</s>", "<|im_end|>", "<|endoftext|>", "(END)", "\\[END\\]", "**END**", "[END]", "</answer>",
                       "<|end_of_solution|>"]


def _official_prompt(question: str) -> str:
    """construct_prompt for zero shots: the input template formatted with the stripped question, then strip(" ")."""
    return OFFICIAL_LLAMA3_MATH_COT[0].format(input=question.strip()).strip(" ")


def _first_math500_problem() -> str:
    return json.loads(MATH500.read_text().splitlines()[0])["problem"]


def test_stop_words_are_the_official_nine():
    assert official_stop_words("llama3-math-cot") == OFFICIAL_STOP_WORDS
    assert len(OFFICIAL_STOP_WORDS) == 9 and "[END]" in OFFICIAL_STOP_WORDS and "</answer>" in OFFICIAL_STOP_WORDS


def test_llama3_math_cot_rendered_by_lm_eval_is_byte_identical():
    suite = load_suite("math")
    [shown] = render_prompts(suite, load_chat_template("llama3-math-cot"), tasks=["math500"], source="fixtures")
    assert shown["prompt"] == _official_prompt(_first_math500_problem())
    assert "Cutting Knowledge" not in shown["prompt"] and "<|begin_of_text|>" not in shown["prompt"]
    applied = apply_prompt_template(suite, "llama3-math-cot")
    lm = applied["lm_eval"]
    assert lm["apply_chat_template"] is False and lm["system_instruction"] is None
    assert lm["prompt_template"] == "llama3-math-cot" and applied["hash"] != suite["hash"]
    for entry in lm["tasks"]:
        assert entry["overrides"]["generation_kwargs"]["until"] == OFFICIAL_STOP_WORDS
    # suites the prompt does not name are left as they are
    general = load_suite("general")
    assert apply_prompt_template(general, "llama3-math-cot") is general


def test_real_lm_eval_sends_the_official_prompt_and_stops(eval_env, tiny, tmp_path):
    suite = apply_prompt_template(load_suite("math", max_gen_toks=4), "llama3-math-cot")
    suite["lm_eval"]["tasks"] = [t for t in suite["lm_eval"]["tasks"] if t["benchmark"] == "math500"]
    rows = run_suite(suite, model_path=str(tiny), out_dir=tmp_path, limit=1, batch_size=2, console=Console())
    [row] = [r for r in rows if r["primary"]]
    sample = json.loads(Path(row["samples"]).read_text().splitlines()[0])
    args = sample["arguments"]["gen_args_0"]
    assert args["arg_0"] == _official_prompt(_first_math500_problem())
    assert args["arg_1"]["until"][:9] == OFFICIAL_STOP_WORDS and args["arg_1"]["max_gen_toks"] == 4


def test_pass_at_k_keeps_the_official_stop_words():
    from lm_eval.tasks import TaskManager

    from harness.evaluation.lmeval import task_specs

    lm = apply_prompt_template(load_suite("math_passk"), "llama3-math-cot")["lm_eval"]
    [spec, *_] = task_specs(lm, TaskManager(include_path=lm["include_path"]))
    gen = spec["generation_kwargs"]
    assert gen["until"] == OFFICIAL_STOP_WORDS and gen["do_sample"] is True and gen["temperature"] == 0.6
    assert spec["doc_to_text"].startswith("<|start_header_id|>system<|end_header_id|>\nPlease reason")


def test_template_reaches_the_evaluate_fingerprints_only_when_set(tmp_path):
    from harness.paths import RECIPES_DIR
    from harness.pipeline import build_graph
    from harness.recipe import load_recipes
    from harness.store import RunStore

    base = load_recipes(RECIPES_DIR / "tiny.yaml")[0]

    def with_eval(**update):
        return base.model_copy(update={"eval": base.eval.model_copy(update=update)})

    def fingerprints(recipe):
        return {n: s.fingerprint for n, s in build_graph(recipe, RunStore(tmp_path), require_data=False).stages.items()}

    plain = fingerprints(base)
    assert fingerprints(with_eval(template="llama3-math-cot")) == plain  # the tiny suite is not a maths suite
    math_plain = fingerprints(with_eval(suites=["tiny", "math"]))
    math_llama = fingerprints(with_eval(suites=["tiny", "math"], template="llama3-math-cot"))
    changed = {n for n in math_plain if math_plain[n] != math_llama[n]}
    assert changed == {n for n in math_plain if n.startswith("evaluate:")}
    # Another suite adds benchmarks to decontaminate against; nothing else but the evaluations changes.
    assert {n: f for n, f in math_plain.items() if not n.startswith(("evaluate:", "decontaminate"))} == {
        n: f for n, f in plain.items() if not n.startswith(("evaluate:", "decontaminate"))}


def test_recipe_key_is_validated_and_the_llama_recipe_uses_it():
    from harness.paths import RECIPES_DIR
    from harness.recipe import load_recipes
    from harness.recipe.schema import EvalSpec

    [llama] = load_recipes(RECIPES_DIR / "llama-3.1-8b-llama-3.3-70b.yaml")
    assert llama.eval.template == "llama3-math-cot" and "gpqa_cot" in llama.eval.suites
    assert EvalSpec().template is None
    with pytest.raises(Exception, match="llama3-math-cot"):
        EvalSpec(template="llama-3.1")


def test_show_prompt_cli_with_the_official_template(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "empty-hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("HF_DATASETS_CACHE", None)
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "eval", "--show-prompt", "--suite", "math",
                           "--template", "llama3-math-cot", "--task", "math500", "--json"], capture_output=True,
                          text=True, cwd=PROJECT_ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["template"].startswith("llama3-math-cot (official prompt")
    [prompt] = out["prompts"]
    assert prompt["prompt"] == _official_prompt(_first_math500_problem())
