"""The paper's protocol, setting by setting: each paper recipe's value beside the official one and where the
official value comes from (the authors' repository CapitalOne-Research/Critique-Guided-Distillation, the
LLaMA-Factory set-up it trained with, and the paper). `cgd protocol` prints the table and writes
docs/protocol.md; tests/test_protocol.py fails when the recipes and the table disagree, or the file is stale.

A setting that differs on purpose says why (`deviation`); every other setting must match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.paths import CHECKOUT, RECIPES_DIR

DOC = (CHECKOUT or Path.cwd()) / "docs" / "protocol.md"  # an installed wheel has no docs/: `--write` writes here
MISSING = "(no such setting)"


@dataclass(frozen=True)
class Setting:
    label: str
    """What is compared, in words."""
    read: Callable[[Any], Any]
    """recipe -> the harness's value."""
    official: Any
    """The official value."""
    source: str
    """Where the official value is written (file and function, or the paper)."""
    deviation: str | None = None
    """Why the harness differs on purpose (None: it must match)."""


def key(dotted: str) -> Callable[[Any], Any]:
    """A reader of one recipe key; a key the schema does not have reads as MISSING."""
    def read(recipe: Any) -> Any:
        node: Any = recipe
        for part in dotted.split("."):
            if node is None or not hasattr(node, part):
                return MISSING
            node = getattr(node, part)
        return node

    read.__name__ = dotted
    return read


def vllm_max_len(role: str) -> Callable[[Any], Any]:
    """The --max-model-len a recipe passes to `vllm serve` for the student or the teacher."""
    def read(recipe: Any) -> Any:
        spec = getattr(recipe, role).vllm
        args = list(spec.extra_args) if spec is not None else []
        return int(args[args.index("--max-model-len") + 1]) if "--max-model-len" in args else None

    return read


def math_gen_cap(recipe: Any) -> Any:
    """The generation cap the math suite runs with: eval.max_gen_toks, else the suite's own."""
    from harness.evaluation import load_suite

    return recipe.eval.max_gen_toks or (load_suite("math").get("lm_eval") or {}).get("max_gen_toks")


PIPELINE = "src/cgd_pipeline.py"
LF_TEMPLATE = ("LLaMA-Factory's template of the student's family (README step 3; the repository names none, so "
               "inferred as CFT's LLaMA-Factory configs do)")
RUN_SH = "src/run_cgd_pipeline.sh"
RUN_NAMES = "run names in the repository (`64gbs_gradAcc4_1epochs_1e6`, `csd/packing/...`)"

COMMON: list[Setting] = [
    Setting("prompts (critique, refine, training triplet)", key("critique.style"), "paper",
            f"{PIPELINE} PromptFormatter (prompts/paper.yaml holds them byte for byte; tests/test_prompts.py)"),
    Setting("training set size", key("data.limit"), 100000, "paper: 100K samples per method"),
    Setting("student sampling temperature", key("student.generation.temperature"), 0.0,
            f"{PIPELINE} VLLMClient.generate"),
    Setting("teacher sampling temperature", key("teacher.generation.temperature"), 0.0,
            f"{PIPELINE} VLLMClient.generate"),
    Setting("teacher top_p", key("teacher.generation.top_p"), 0.95, f"{PIPELINE} VLLMClient.generate"),
    Setting("teacher max_tokens", key("teacher.generation.max_tokens"), 16384, f"{PIPELINE} VLLMClient.generate"),
    Setting("student context (vLLM --max-model-len)", vllm_max_len("student"), 8192, f"{RUN_SH} MAX_STUDENT_LEN"),
    Setting("teacher outputs kept as generated (no re-asks)", key("teacher.reask"), False,
            f"{PIPELINE} (one generate call per step, no retry)"),
    Setting("learning rate", key("train.learning_rate"), 1.0e-6, f"{RUN_NAMES}; README training-stability table"),
    Setting("global batch size", key("train.global_batch_size"), 64, RUN_NAMES),
    Setting("epochs", key("train.epochs"), 1, RUN_NAMES),
    Setting("sample packing", key("train.sample_packing"), True, RUN_NAMES),
    Setting("training rows (Alpaca through LLaMA-Factory)", key("train.format"), "llamafactory_alpaca",
            "src/README.md: 03_refined_dataset.json in Alpaca form, trained with LLaMA-Factory"),
    Setting("over-long rows", key("train.overlong"), "truncate", "LLaMA-Factory cutoff_len truncates"),
    Setting("how an over-long row is cut", lambda r: "first sequence_len tokens (Axolotl)",
            "prompt and target share cutoff_len (LLaMA-Factory infer_seqlen)", "LLaMA-Factory data/processor",
            deviation="Axolotl keeps a row's first sequence_len tokens; rows within the limit are token-identical "
                      "(bench/llamafactory_equivalence.py), truncated ones are not; the export manifest counts them"),
    Setting("grader", key("eval.grader"), "paper", "eval/evaluate_math grader.py math_equal"),
    Setting("checkpoint selection set", lambda r: "held-out training prompts" if r.train.select_checkpoint
            else "last checkpoint", "MATH-500", "eval/scripts/start_validate.sh",
            deviation="MATH-500 is also a reported test set; the harness selects on held-out training prompts"),
]

PAPER_RECIPES: dict[str, list[Setting]] = {
    "llama-3.1-8b-llama-3.3-70b": [
        Setting("student", key("student.model"), "meta-llama/Llama-3.1-8B-Instruct", "README headline table"),
        Setting("teacher", key("teacher.model"), "meta-llama/Llama-3.3-70B-Instruct", "README headline table"),
        Setting("teacher context (vLLM --max-model-len)", vllm_max_len("teacher"), 32768, f"{RUN_SH} MAX_TEACHER_LEN"),
        Setting("training chat template", key("train.chat_template"), "llama3", LF_TEMPLATE),
        Setting("math eval prompt", key("eval.template"), "llama3-math-cot",
                "eval/evaluate_math/utils.py PROMPT_TEMPLATES (math_eval.py --prompt_type llama3-math-cot)"),
        Setting("math eval generation cap", math_gen_cap, 8192, "eval/scripts (max_tokens_per_call)"),
        Setting("GPQA protocol", lambda r: "generative 5-shot CoT" if "gpqa_cot" in r.eval.suites else "other",
                "generative 5-shot CoT", "eval/scripts/evaluate_gpqa.sh (run_open.py --shots 5 --form llama3)"),
    ],
    "qwen-math-7b-claude": [
        Setting("student", key("student.model"), "Qwen/Qwen2.5-Math-7B", "README (Qwen2.5-Math-7B with Claude)"),
        Setting("training chat template", key("train.chat_template"), "qwen", LF_TEMPLATE),
        Setting("math eval prompt", key("eval.template"), "qwen25-math-cot",
                "eval/evaluate_math/utils.py PROMPT_TEMPLATES (math_eval.py --prompt_type qwen25-math-cot)"),
        Setting("math eval generation cap", math_gen_cap, 16384, "eval/scripts (max_tokens_per_call)",
                deviation="above Qwen2.5-Math-7B's 4096-token context, which caps generation either way"),
        Setting("student context (vLLM --max-model-len)", vllm_max_len("student"), 8192, f"{RUN_SH} MAX_STUDENT_LEN",
                deviation="Qwen2.5-Math-7B's context window is 4096 tokens"),
        Setting("teacher top_p", key("teacher.generation.top_p"), 0.95, f"{PIPELINE} VLLMClient.generate",
                deviation="a Claude teacher through Anthropic's API (the official pipeline is vLLM-only); "
                          "temperature 0 is sent alone"),
        Setting("teacher max_tokens", key("teacher.generation.max_tokens"), 16384, f"{PIPELINE} VLLMClient.generate",
                deviation="Claude 3.7 Sonnet's standard output cap is 8192 tokens (16384 is the vLLM setting)"),
    ],
    "s1.1-3b-s1.1-32b": [
        Setting("student", key("student.model"), "simplescaling/s1.1-3B", "README (S1.1-3B student)"),
        Setting("teacher", key("teacher.model"), "simplescaling/s1.1-32B", "README (S1.1-32B teacher)"),
        Setting("GPQA protocol", lambda r: "generative 5-shot CoT" if "gpqa_cot" in r.eval.suites else "other",
                "generative 5-shot CoT", "eval/evaluate_gpqa (run_open.py --shots 5)"),
        Setting("training chat template", key("train.chat_template"), "qwen",
                LF_TEMPLATE + " (s1.1-3B is built on Qwen2.5-3B-Instruct)"),
        Setting("student context (vLLM --max-model-len)", vllm_max_len("student"), 8192, f"{RUN_SH} MAX_STUDENT_LEN",
                deviation="s1.1-3B drafts of up to 8192 new tokens need room for the prompt besides"),
        Setting("student output parsing", key("student.parser"), "s1",
                f"{PIPELINE}: s1.1 outputs split at the `answer\\s+Answer` marker"),
        Setting("teacher output parsing", key("teacher.parser"), "s1",
                f"{PIPELINE}: s1.1 outputs split at the `answer\\s+Answer` marker"),
    ],
}


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def rows(name: str) -> list[dict[str, Any]]:
    """The table of one paper recipe: label, harness value, official value, source, status."""
    from harness.recipe import load_recipes

    [recipe] = load_recipes(RECIPES_DIR / f"{name}.yaml")
    own = PAPER_RECIPES[name]
    labels = {s.label for s in own}  # a recipe's own entry replaces the common one of the same label
    out = []
    for setting in [*(s for s in COMMON if s.label not in labels), *own]:
        ours = setting.read(recipe)
        same = ours == setting.official
        status = "same" if same else (f"differs on purpose: {setting.deviation}" if setting.deviation else "DIFFERS")
        out.append({"setting": setting.label, "harness": _shown(ours), "official": _shown(setting.official),
                    "source": setting.source, "status": status})
    return out


def mismatches() -> list[str]:
    """Settings that differ from the official value without a stated reason."""
    return [f"{name}: {row['setting']}: harness {row['harness']}, official {row['official']} ({row['source']})"
            for name in PAPER_RECIPES for row in rows(name) if row["status"] == "DIFFERS"]


def render() -> str:
    lines = ["# The paper's protocol, setting by setting", "",
             "Generated by `cgd protocol` from harness/protocol.py and the recipes; do not edit by hand. Official",
             "values come from the authors' repository CapitalOne-Research/Critique-Guided-Distillation (paths below",
             "are in it), the LLaMA-Factory set-up it trained with, and the paper (arXiv 2505.11628).", ""]
    for name in PAPER_RECIPES:
        lines += [f"## recipes/{name}.yaml", "", "| setting | harness | official | source | |", "|---|---|---|---|---|"]
        lines += [f"| {r['setting']} | `{r['harness']}` | `{r['official']}` | {r['source']} | {r['status']} |"
                  for r in rows(name)]
        lines.append("")
    return "\n".join(lines)


def write(path: Path = DOC) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path
