"""`cgd eval --show-prompt`: the math suite's prompt rendered with the shipped Qwen2.5-Math and Llama-3.1 chat
templates (no hub), through lm-eval's own prompt construction."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from harness.evaluation import load_suite
from harness.evaluation.prompts import load_chat_template, render_prompts, shipped_templates
from harness.paths import PROJECT_ROOT
from tests.helpers.tiny_model import build_random_tiny_model

QUESTION = "What is the value of $\\frac{1}{2} + \\frac{1}{3}$?"
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def test_show_prompt_qwen25_math_cli(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "empty-hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("HF_DATASETS_CACHE", None)
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "eval", "--show-prompt", "--suite", "math",
                           "--template", "qwen2.5-math", "--json"], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["template"].startswith("qwen2.5-math")
    by_task = {p["task"]: p for p in out["prompts"]}
    assert set(by_task) == {"cgd_math500", "cgd_minerva_math", "cgd_gsm8k", "cgd_olympiadbench", "cgd_amc23",
                            "cgd_aime24", "cgd_aime25", "cgd_theoremqa"}
    # exactly the paper's qwen25-math-cot prompt
    assert by_task["cgd_math500"]["prompt"] == (f"<|im_start|>system\n{INSTRUCTION}<|im_end|>\n<|im_start|>user\n"
                                                f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    assert by_task["cgd_math500"]["docs_from"] == "fixture rows"  # nothing cached in this HF_HOME


def test_show_prompt_llama31_and_a_model_folder(tmp_path):
    suite = load_suite("math")
    assert set(shipped_templates()) == {"qwen2.5-math", "llama-3.1"}
    [llama] = render_prompts(suite, load_chat_template("llama-3.1"), tasks=["math500"], source="fixtures")
    assert llama["prompt"] == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        f"Today Date: 26 Jul 2024\n\n{INSTRUCTION}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
        f"{QUESTION}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    model = build_random_tiny_model(tmp_path / "m")
    [own] = render_prompts(suite, load_chat_template(str(model)), tasks=["gsm8k"], source="fixtures")
    assert own["prompt"].startswith(f"<|im_start|>system\n{INSTRUCTION}<|im_end|>\n<|im_start|>user\nJanet has 16")
    assert own["prompt"].endswith("<|im_end|>\n<|im_start|>assistant\n")
