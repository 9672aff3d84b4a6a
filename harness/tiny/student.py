"""Build the tiny student locally: a byte-level BPE tokenizer with a ChatML template, a small Qwen2-style model,
and a short plain-torch warm-up on worked solutions so its drafts are sometimes right and often wrong.

Digits are split one per token: arithmetic is learnable at this size only when numbers are spelled digit by digit.
The tokenizer is also trained on the prompt styles' fixed texts, so the long paper prompts take few tokens.

The build is byte-for-byte reproducible on any x86-64 machine: it runs in a child process whose numerics are pinned
(BUILD_ENV: one thread, ATen's AVX2 kernels even where AVX-512 exists, MKL's vendor-neutral reproducible branch),
because a float kernel chosen by the CPU changes low-order bits, and 1,200 warm-up steps turn those into a
different student, hence different demo scores. Measured on an AVX-512 AMD EPYC box: torch's AVX2 vs AVX-512
kernels and MKL's branch gave different weights; the thread count did not with MKL's default branch (1, 2 and 8
threads: identical files) but did with its reproducible one (1 vs 2 threads), so the count is fixed too.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
    " + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
VOCAB_SIZE = 768
REFINE_SHARE = 0.25
"""Share of warm-up steps spent on refine requests (see `warm_up`)."""
BUILD_THREADS = 1
"""torch threads of the build: fixed, so a reduction is never split by the machine's core count."""
BUILD_ENV = {
    "OMP_NUM_THREADS": str(BUILD_THREADS), "MKL_NUM_THREADS": str(BUILD_THREADS), "MKL_DYNAMIC": "FALSE",
    "OPENBLAS_NUM_THREADS": str(BUILD_THREADS), "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "0",
    "CUDA_VISIBLE_DEVICES": "",
}
"""The build process's environment on every machine (on top of the caller's)."""
X86_BUILD_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vector kernels: the AVX2+FMA ones, on every x86-64 CPU since 2013
    "MKL_CBWR": "COMPATIBLE",  # MKL's reproducible code branch, the same on Intel and AMD (AVX2/AVX512 are Intel-only)
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
"""Added on x86-64, where the vector kernels would otherwise follow the CPU (AVX-512, AMX, vendor)."""
_PROTOCOL = "@@cgd-tiny-build "


def build_tokenizer(corpus: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>",
                                 pad_token="<|pad|>", model_max_length=2048)
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_model(tokenizer: Any, hidden_size: int, num_layers: int, seed: int) -> Any:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return Qwen2ForCausalLM(config)


def _refine_messages(row: dict[str, str], rng: random.Random) -> list[dict[str, str]]:
    """A paper-style refine request about a slightly wrong draft of this problem, with the oracle's critique."""
    from harness.prompts import load_style
    from harness.tiny.oracle import critique
    from harness.tiny.problems import parse_question

    problem = parse_question(row["question"])
    steps = [list(s) for s in problem.steps]
    k = rng.randrange(len(steps))
    steps[k][3] += rng.choice([-10, -2, -1, 1, 2, 10])
    if k == 0:
        steps[1][0] = steps[0][3]
    draft = " ".join(f"{a}{op}{b}={r}." for a, op, b, r in steps) + f" The answer is \\boxed{{{steps[-1][3]}}}."
    return load_style("paper").train_messages("cgd", prompt=row["question"], draft=draft,
                                              critique=critique(problem, draft))


def _encode(tokenizer: Any, conversations: list[tuple[list[dict[str, str]], str]]) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) per (user-side messages, assistant target)."""
    out = []
    for messages, target in conversations:
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        t_ids = tokenizer(target + "<|im_end|>", add_special_tokens=False)["input_ids"]
        out.append((p_ids + t_ids, len(p_ids)))
    return out


def warm_up(model: Any, tokenizer: Any, rows: list[dict[str, str]], steps: int, seed: int,
            batch_size: int = 32, lr: float = 3e-3,
            on_step: Callable[[int, float], None] | None = None) -> dict[str, float]:
    """Plain-torch next-token training on the solutions only (the prompt is masked).

    A REFINE_SHARE of the steps train on refine requests (a wrong draft and the oracle's critique in the paper's
    CGD template -> the solution), so the student has seen long, template-shaped inputs the way an instruct model
    has; without them CGD's inputs lie far outside anything it saw. Each batch is all-plain or all-refine, so
    short batches are not padded to the long ones' width.
    """
    import torch

    if steps <= 0:
        return {"steps": 0}
    rng = random.Random(seed)
    plain = _encode(tokenizer, [([{"role": "user", "content": r["question"]}], r["answer"]) for r in rows])
    refine = _encode(tokenizer, [(_refine_messages(r, rng), r["answer"]) for r in rows])
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps))))
    pad = tokenizer.pad_token_id
    model.train()
    losses: list[float] = []
    for _ in range(steps):
        pool = refine if rng.random() < REFINE_SHARE else plain
        batch = rng.sample(pool, min(batch_size, len(pool)))
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (ids, prompt_len) in enumerate(batch):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            labels[i, prompt_len:len(ids)] = torch.tensor(ids[prompt_len:])
            mask[i, :len(ids)] = 1
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if on_step:
            on_step(len(losses), losses[-1])
    model.eval()
    tail = losses[-20:]
    return {"steps": steps, "first_loss": round(losses[0], 4), "final_loss": round(sum(tail) / len(tail), 4)}


def cpu_numerics_env(machine: str | None = None) -> dict[str, str]:
    """Environment variables that make CPU float results the same on any machine of this architecture: fixed
    thread counts and, on x86-64, the AVX2 / vendor-neutral kernels. Set them before torch runs its first op (for a
    child process: in its environment) wherever CPU numbers must reproduce (the tiny world's training and scoring)."""
    env = {k: BUILD_ENV[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_DYNAMIC", "OPENBLAS_NUM_THREADS")}
    if (machine or platform.machine()).lower() in ("x86_64", "amd64"):
        env.update(X86_BUILD_ENV)
    return env


def build_env(base: dict[str, str] | None = None, machine: str | None = None) -> dict[str, str]:
    """The environment the build runs in: `base` (default: this process's) with the numerics pinned."""
    env = dict(os.environ if base is None else base)
    env.update(BUILD_ENV)
    env.update(cpu_numerics_env(machine))
    from harness.paths import CHECKOUT

    if CHECKOUT is not None:  # the child imports this checkout's harness; an installed package is importable already
        env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def build_tiny_student(out: Path, *, train_rows: list[dict[str, str]], extra_corpus: list[str], warmup_steps: int,
                       hidden_size: int = 128, num_layers: int = 4, seed: int = 0,
                       num_threads: int | None = None,
                       on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Write a Hugging Face model folder (weights, tokenizer, chat template) to `out`; return warm-up stats.

    The same arguments give byte-identical files on any x86-64 machine: the work runs in a child process with
    BUILD_ENV (`num_threads`, default BUILD_THREADS, is part of that: another count may change the bits). `on_step`
    gets (step, loss) as the child reports them."""
    out = Path(out)
    start = time.monotonic()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # a killed build's leftovers must not end up in the folder
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = {"out": str(tmp), "train_rows": train_rows, "extra_corpus": extra_corpus, "warmup_steps": warmup_steps,
            "hidden_size": hidden_size, "num_layers": num_layers, "seed": seed,
            "num_threads": num_threads or BUILD_THREADS}
    env = build_env()
    stats: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix=".tiny-build-", dir=out.parent) as work:
        spec_path, log_path = Path(work) / "spec.json", Path(work) / "build.log"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        with log_path.open("w", encoding="utf-8") as log:
            proc = subprocess.Popen([sys.executable, "-m", "harness.tiny.student", str(spec_path)], env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True)
            try:
                for line in proc.stdout or ():
                    if not line.startswith(_PROTOCOL):
                        continue
                    message = json.loads(line[len(_PROTOCOL):])
                    if "step" in message and on_step:
                        on_step(message["step"], message["loss"])
                    elif "stats" in message:
                        stats = message["stats"]
                proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if proc.returncode != 0 or stats is None:
            tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"building the tiny student failed (exit code {proc.returncode}):\n{tail}")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)  # a folder appears whole or not at all
    return {**stats, "seconds": round(time.monotonic() - start, 1)}


def _build(spec: dict[str, Any], report: Callable[[dict[str, Any]], None]) -> None:
    """The build itself (in the child process that BUILD_ENV pinned): tokenizer, model, warm-up, save."""
    import torch

    from harness.tiny.oracle import critique_phrases

    torch.set_num_threads(int(spec["num_threads"]))
    torch.use_deterministic_algorithms(True, warn_only=True)
    train_rows = spec["train_rows"]
    corpus = [f"{r['question']}\n{r['answer']}" for r in train_rows] + spec["extra_corpus"] + critique_phrases()
    tokenizer = build_tokenizer(corpus)
    model = build_model(tokenizer, spec["hidden_size"], spec["num_layers"], spec["seed"])
    stats = warm_up(model, tokenizer, train_rows, spec["warmup_steps"], spec["seed"],
                    on_step=lambda step, loss: report({"step": step, "loss": loss}))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out = Path(spec["out"])
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    report({"stats": {**stats, "params": sum(p.numel() for p in model.parameters()), "vocab": len(tokenizer),
                      "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}})


def _main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    stdout = sys.stdout

    def report(message: dict[str, Any]) -> None:
        stdout.write(_PROTOCOL + json.dumps(message) + "\n")
        stdout.flush()

    with contextlib.redirect_stdout(sys.stderr):  # libraries' prints must not mix with the protocol lines
        _build(spec, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
