"""Build the tiny student locally: a byte-level BPE tokenizer with a ChatML template, a small Qwen2-style model,
and a short plain-torch warm-up on worked solutions so its drafts are sometimes right and often wrong.

Digits are split one per token: arithmetic is learnable at this size only when numbers are spelled digit by digit.
The tokenizer is also trained on the prompt styles' fixed texts, so the long paper prompts take few tokens.
"""

from __future__ import annotations

import math
import random
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


def _encode_pairs(tokenizer: Any, rows: list[dict[str, str]]) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) per row: the user turn is the question, the assistant turn the solution."""
    out = []
    for r in rows:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": r["question"]}],
                                               add_generation_prompt=True, tokenize=False)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        t_ids = tokenizer(r["answer"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
        out.append((p_ids + t_ids, len(p_ids)))
    return out


def warm_up(model: Any, tokenizer: Any, rows: list[dict[str, str]], steps: int, seed: int,
            batch_size: int = 32, lr: float = 3e-3,
            on_step: Callable[[int, float], None] | None = None) -> dict[str, float]:
    """Plain-torch next-token training on the solutions only (the prompt is masked)."""
    import torch

    if steps <= 0:
        return {"steps": 0}
    examples = _encode_pairs(tokenizer, rows)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps))))
    pad = tokenizer.pad_token_id
    model.train()
    losses: list[float] = []
    for _ in range(steps):
        batch = rng.sample(examples, min(batch_size, len(examples)))
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


def build_tiny_student(out: Path, *, train_rows: list[dict[str, str]], extra_corpus: list[str], warmup_steps: int,
                       hidden_size: int = 128, num_layers: int = 4, seed: int = 0,
                       num_threads: int | None = None,
                       on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Write a Hugging Face model folder (weights, tokenizer, chat template) to `out`; return warm-up stats."""
    import torch

    from harness.tiny.oracle import critique_phrases

    if num_threads:
        torch.set_num_threads(num_threads)
    start = time.monotonic()
    corpus = [f"{r['question']}\n{r['answer']}" for r in train_rows] + extra_corpus + critique_phrases()
    tokenizer = build_tokenizer(corpus)
    model = build_model(tokenizer, hidden_size, num_layers, seed)
    stats = warm_up(model, tokenizer, train_rows, warmup_steps, seed, on_step=on_step)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = out.with_name(out.name + ".partial")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(out)  # a folder appears whole or not at all
    return {**stats, "params": sum(p.numel() for p in model.parameters()), "vocab": len(tokenizer),
            "seconds": round(time.monotonic() - start, 1)}
