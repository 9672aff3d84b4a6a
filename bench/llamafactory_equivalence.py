"""Does `train.format: llamafactory_alpaca` train what LLaMA-Factory trains? Compared against LLaMA-Factory's own code.

The official CGD code writes Alpaca rows and trains them with LLaMA-Factory. This bench renders the same rows both
ways and compares, token for token:

- LLaMA-Factory (installed from PyPI in its own virtualenv, since it pins its own transformers): its
  AlpacaDatasetConverter, `get_template_and_fix_tokenizer` (templates `qwen`, `llama3`) and
  SupervisedDatasetProcessor -> input_ids and labels;
- the harness: the variant's messages -> harness/formats `llamafactory_alpaca` -> the Axolotl config the harness
  renders (chat_template: jinja, the EOS, eot_tokens) -> Axolotl's own chat_template preprocessing
  (harness.axolotl.masking.tokenize_rows, the code `axolotl preprocess` runs) -> input_ids and labels.

No model hub: each template gets a small byte-level BPE tokenizer trained here on the rows' text, with the real
special tokens of its family (Qwen2.5: <|im_start|> <|im_end|> <|endoftext|>, EOS <|endoftext|> as in
Qwen2.5-Math-7B; Llama 3: <|begin_of_text|> <|start_header_id|> <|end_header_id|> <|eot_id|>, BOS added by the
post-processor, EOS <|end_of_text|> as in the base model) and its family's pre-tokenizer regex.

    .venv/bin/python bench/llamafactory_equivalence.py [--rows 96] [--venv bench/.venvs/llamafactory]

The first run creates the virtualenv (git-ignored): torch 2.13.0 first (the local CPU wheel, so nothing pulls a CUDA
build), then `llamafactory` with --no-deps and the dependencies its template and data code import (its full
requirement set pulls torchaudio/torchvision, which bring a CUDA torch; torchaudio is only imported by its
multimodal plugin and is stubbed out).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LLAMAFACTORY = "llamafactory==0.9.5"
LF_DEPS = ["transformers>=4.55.0,<=5.6.0,!=4.52.0,!=4.57.0", "datasets>=2.16.0,<=4.0.0", "accelerate>=1.3.0,<=1.11.0",
           "peft>=0.18.0,<=0.18.1", "trl>=0.18.0,<=0.24.0", "torchdata>=0.10.0,<=0.11.0", "einops", "fire", "numpy",
           "omegaconf", "packaging", "pandas", "protobuf", "pydantic", "pyyaml", "safetensors", "scipy",
           "sentencepiece", "tiktoken", "tyro<0.9.0", "pillow"]
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
              r"\s+(?!\S)|\s+")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
FAMILIES = {
    "qwen": {"split": QWEN_SPLIT, "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "bos": None,
             "eos": "<|endoftext|>", "pad": "<|endoftext|>", "config": "qwen2"},
    "llama3": {"split": LLAMA3_SPLIT, "special": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                                  "<|end_header_id|>", "<|eot_id|>", "<|finetune_right_pad_id|>"],
               "bos": "<|begin_of_text|>", "eos": "<|end_of_text|>", "pad": "<|finetune_right_pad_id|>",
               "config": "llama"},
}

# Runs inside the LLaMA-Factory virtualenv: its converter, template and supervised processor, nothing re-typed.
LF_SCRIPT = r'''
import importlib.machinery, json, sys, types
try:
    import torchaudio  # noqa: F401
except ImportError:  # only its multimodal plugin imports it
    stub = types.ModuleType("torchaudio"); stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
    sys.modules["torchaudio"] = stub
from transformers import AutoTokenizer
import llamafactory
from llamafactory.data.converter import AlpacaDatasetConverter
from llamafactory.data.parser import DatasetAttr
from llamafactory.data.processor.supervised import SupervisedDatasetProcessor
from llamafactory.data.template import get_template_and_fix_tokenizer
from llamafactory.hparams import DataArguments

job = json.load(open(sys.argv[1]))
out = {"version": llamafactory.__version__}
for name, spec in job["templates"].items():
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"])
    result = {}
    for label, cutoff in spec["cutoffs"].items():
        data_args = DataArguments(template=name, cutoff_len=cutoff)
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        converter = AlpacaDatasetConverter(DatasetAttr("file", "cgd"), data_args)
        converted = [converter(row) for row in job["rows"]]
        batch = {key: [c[key] for c in converted] for key in converted[0]}
        processor = SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=None,
                                               data_args=data_args)
        encoded = processor.preprocess_dataset(batch)
        result[label] = {"input_ids": encoded["input_ids"], "labels": encoded["labels"]}
    result["jinja"] = template._get_jinja_template(tokenizer)
    result["eos_token"] = tokenizer.eos_token
    out[name] = result
json.dump(out, open(sys.argv[2], "w"))
'''


def log(msg: str) -> None:
    print(msg, flush=True)


def ensure_venv(venv: Path) -> Path:
    """The LLaMA-Factory virtualenv's python, created on first use."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import llamafactory, transformers"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    log(f"creating {venv} (one time): torch 2.13.0, then {LLAMAFACTORY} --no-deps and what its data code imports")
    started = time.time()
    subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-U", "pip"], check=True)
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, "--no-deps", LLAMAFACTORY], check=True)
    subprocess.run([*pip, *LF_DEPS], check=True)
    subprocess.run(probe, check=True)
    log(f"  done in {time.time() - started:.0f} s")
    return python


def _base_python() -> str:
    """A Python that is not this project's virtualenv (a venv made from a venv's python still works, but keep the
    bench's environment apart)."""
    return getattr(sys, "_base_executable", None) or sys.executable


# --- rows -----------------------------------------------------------------------------------------------------


def variant_rows(n: int) -> list[dict]:
    """n rows as the variants build them (harness/variants/rows.chat_row with the paper style's train messages):
    CGD, CGD without critique, CFT and plain SFT rows over tiny-world problems with the oracle's critiques, mixed
    with WebInstruct-like text (LaTeX, quotes, unicode, blank lines, leading and trailing whitespace)."""
    import random

    from harness.prompts import load_style
    from harness.tiny.oracle import critique
    from harness.tiny.problems import DATA_DIR, parse_question
    from harness.variants.rows import chat_row

    style, rng = load_style("paper"), random.Random(0)
    questions = [json.loads(line)["question"] for line in (DATA_DIR / "train.jsonl").read_text().splitlines()[:n]]
    extra_prompts = [
        "Find $\\int_0^1 x^2\\,dx$. Explain each step.",
        "What's the derivative of $f(x) = \\sqrt{x}$? Don't skip steps.",
        "Résoudre: 3x + 5 = 20. Donnez x.",
        "计算 12 × 7 的值。",
        "  Leading spaces and a trailing newline\n",
        "A question with {{ braces }} and {% jinja %} markers: what is 2+2?",
        "Two paragraphs.\n\nThe second one asks: is 17 prime?",
    ]
    extra_answers = [
        ("We compute $\\int_0^1 x^2\\,dx = \\left[\\frac{x^3}{3}\\right]_0^1 = \\frac{1}{3}$.\n\n"
         "The answer is $\\boxed{\\frac13}$."),
        "Using the power rule, $f'(x) = \\frac{1}{2\\sqrt{x}}$. It's defined for $x > 0$.",
        "3x = 15, donc x = 5. La réponse est $\\boxed{5}$.",
        "12 × 7 = 84。答案是 $\\boxed{84}$。",
        "\nAn answer that starts with a newline and ends with spaces.  ",
        "It's 4. The braces {{ }} are just text.",
        "Yes: 17 has no divisor between 2 and 4.\n\n\nSo 17 is prime. 🎉",
    ]
    rows = []
    for i in range(n):
        if i % 3 == 0 and i // 3 < len(extra_prompts):
            prompt, target = extra_prompts[i // 3], extra_answers[i // 3]
            draft = "I think the answer is 5, but I'm not sure.\nMaybe it's 6."
            crit = "The draft guesses without working.\n\nConclusion: wrong"
        else:
            prompt = questions[i % len(questions)]
            problem = parse_question(prompt)
            result = problem.steps[-1][3]
            draft = f"The answer is \\boxed{{{result + rng.choice([-2, -1, 0, 1])}}}."
            crit = critique(problem, draft)
            target = (" ".join(f"{a}{op}{b}={r}." for a, op, b, r in problem.steps)
                      + f" The answer is \\boxed{{{result}}}.")
        kind = ("cgd", "cgd_no_critique", "cft", "plain")[i % 4]
        fields = {"cgd": {"prompt": prompt, "draft": draft, "critique": crit},
                  "cgd_no_critique": {"prompt": prompt, "draft": draft},
                  "cft": {"prompt": prompt, "draft": draft}, "plain": {"prompt": prompt}}[kind]
        out = crit if kind == "cft" else target
        rows.append(chat_row(f"{kind}-{i}", style.train_messages(kind, **fields), out))
    return rows


# --- tokenizers -----------------------------------------------------------------------------------------------


def build_tokenizer(family: str, corpus: list[str], out: Path) -> Path:
    """A byte-level BPE tokenizer with the family's special tokens and split regex, plus a tiny model config (Axolotl
    reads the model's config while normalizing its own)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

    spec = FAMILIES[family]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(spec["split"]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=spec["special"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    if spec["bos"]:  # Llama 3 adds <|begin_of_text|> when asked for special tokens
        bos_id = tok.token_to_id(spec["bos"])
        tok.post_processor = processors.TemplateProcessing(single=f"{spec['bos']} $A",
                                                           pair=f"{spec['bos']} $A {spec['bos']} $B",
                                                           special_tokens=[(spec["bos"], bos_id)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=spec["bos"], eos_token=spec["eos"],
                                 pad_token=spec["pad"], model_max_length=32768)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out)
    config_cls = Qwen2Config if spec["config"] == "qwen2" else LlamaConfig
    config_cls(vocab_size=len(hf), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
               num_key_value_heads=1, max_position_embeddings=32768, bos_token_id=hf.bos_token_id,
               eos_token_id=hf.eos_token_id, pad_token_id=hf.pad_token_id).save_pretrained(out)
    return out


# --- the harness side -----------------------------------------------------------------------------------------


def harness_encode(rows: list[dict], template: str, tokenizer_dir: Path, work: Path, cutoffs: dict[str, int]
                   ) -> dict[str, dict]:
    """The rows exported as `train.format: llamafactory_alpaca`, tokenized by Axolotl with the harness's config;
    for each cutoff, Axolotl's own `excess_length_strategy: truncate` function applied (as `train.overlong:
    truncate` has Axolotl do)."""
    from axolotl.utils.data.utils import truncate_long_seq

    from harness.axolotl.config import render_axolotl_config
    from harness.axolotl.masking import tokenize_rows
    from harness.formats import render_rows
    from harness.recipe.schema import TrainSpec

    exported = render_rows(rows, "llamafactory_alpaca", template)
    dataset = work / f"dataset-{template}.jsonl"
    dataset.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in exported))
    train = TrainSpec(format="llamafactory_alpaca", chat_template=template, overlong="truncate",
                      sequence_len=32768, global_batch_size=1)
    cfg = render_axolotl_config(train, base_model=str(tokenizer_dir), dataset_path=dataset, output_dir=work / "out",
                                prepared_dir=work / "prepared", seed=0, on_gpu=False)
    tokenized = tokenize_rows(cfg, exported)
    full = {"input_ids": [t["input_ids"] for t in tokenized], "labels": [t["labels"] for t in tokenized]}
    out = {}
    for label, cutoff in cutoffs.items():
        batch = {"input_ids": [list(x) for x in full["input_ids"]], "labels": [list(x) for x in full["labels"]]}
        out[label] = truncate_long_seq(batch, sequence_len=cutoff)
    out["config"] = cfg
    return out


def explain(ours: list[int], theirs: list[int], tokenizer_dir: Path) -> str:
    """Where two encodings of a row part: the tokens around the first difference, decoded one by one."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    pairs = enumerate(zip(ours, theirs, strict=False))
    i = next((k for k, (x, y) in pairs if x != y), min(len(ours), len(theirs)))
    show = lambda ids: [tok.decode([t]) for t in ids[max(i - 2, 0): i + 3]]  # noqa: E731
    return f"same text: {tok.decode(ours) == tok.decode(theirs)}; Axolotl {show(ours)} vs LLaMA-Factory {show(theirs)}"


def alpaca_rows(rows: list[dict]) -> list[dict]:
    from harness.formats.llamafactory_alpaca import to_alpaca

    return [to_alpaca([{k: v for k, v in m.items() if k != "training"} for m in r["messages"]]) for r in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--venv", type=Path, default=ROOT / "bench" / ".venvs" / "llamafactory")
    parser.add_argument("--cutoff", type=int, default=96, help="a short cutoff_len / sequence_len for the truncation "
                                                                 "comparison (most rows are longer)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    lf_python = ensure_venv(args.venv)
    rows = variant_rows(args.rows)
    alpaca = alpaca_rows(rows)
    corpus = [m["content"] for r in rows for m in r["messages"]]
    from harness.formats import get_template

    corpus += [get_template(t).default_system for t in FAMILIES]
    cutoffs = {"full": 32768, "cutoff": args.cutoff}
    failures = 0
    with tempfile.TemporaryDirectory(prefix="lf-bench-") as tmp:
        work = Path(tmp)
        toks = {t: build_tokenizer(t, corpus, work / f"tok-{t}") for t in FAMILIES}
        job = {"rows": alpaca, "templates": {t: {"tokenizer": str(d), "cutoffs": cutoffs} for t, d in toks.items()}}
        (work / "job.json").write_text(json.dumps(job, ensure_ascii=False))
        (work / "lf.py").write_text(LF_SCRIPT)
        started = time.time()
        done = subprocess.run([str(lf_python), str(work / "lf.py"), str(work / "job.json"), str(work / "lf.json")],
                              capture_output=True, text=True, env={**os.environ, "DISABLE_VERSION_CHECK": "1"})
        if done.returncode:
            print(done.stderr[-4000:], file=sys.stderr)
            return 1
        lf = json.loads((work / "lf.json").read_text())
        log(f"LLaMA-Factory {lf['version']} encoded {len(alpaca)} Alpaca rows x {len(FAMILIES)} templates in "
            f"{time.time() - started:.1f} s (its own converter, template and supervised processor)")
        for template in FAMILIES:
            ours = harness_encode(rows, template, toks[template], work, cutoffs)
            theirs = lf[template]
            ours_jinja = get_template(template).jinja
            log(f"\n[{template}] Axolotl config: chat_template={ours['config']['chat_template']}, special_tokens="
                f"{ours['config']['special_tokens']}, eot_tokens={ours['config'].get('eot_tokens')}")
            log(f"  Jinja template identical to LLaMA-Factory's _get_jinja_template: {ours_jinja == theirs['jinja']}"
                f"; EOS after get_template_and_fix_tokenizer: {theirs['eos_token']!r} (harness: "
                f"{get_template(template).eos_token!r})")
            failures += ours_jinja != theirs["jinja"]
            for label in cutoffs:
                a, b = ours[label], theirs[label]
                n = len(b["input_ids"])
                same_ids = sum(x == y for x, y in zip(a["input_ids"], b["input_ids"], strict=True))
                same_labels = sum(x == y for x, y in zip(a["labels"], b["labels"], strict=True))
                over = sum(len(x) > cutoffs[label] for x in ours["full"]["input_ids"])
                what = ("no truncation" if label == "full" else
                        f"cutoff_len = sequence_len = {cutoffs[label]}, {over} rows over it")
                log(f"  {what}: rows compared {n}, identical token ids {same_ids}, identical label masks "
                    f"{same_labels}")
                if label == "full":
                    for i, (x, y) in enumerate(zip(a["labels"], b["labels"], strict=True)):
                        if x != y or a["input_ids"][i] != b["input_ids"][i]:
                            why = explain(a["input_ids"][i], b["input_ids"][i], toks[template])
                            target = rows[i]["messages"][-1]["content"]
                            edge = target[:1].isspace()  # LLaMA-Factory encodes each slot apart; Axolotl the whole
                            failures += not edge
                            log(f"    differs: row {rows[i]['id']}{' (target starts with whitespace)' if edge else ''}"
                                f": {why}")
    log("\nA target that starts with whitespace can merge with the assistant header's last newline when Axolotl "
        "tokenizes the whole conversation; LLaMA-Factory tokenizes each slot apart. The official pipeline strips "
        "every generated text (src/cgd_pipeline.py, VLLMClient.generate), so its targets never start with one.")
    log("\nLLaMA-Factory's cutoff_len splits the budget between prompt and target (processor_utils.infer_seqlen); "
        "Axolotl's truncate keeps the first sequence_len tokens, so truncated rows can differ.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
