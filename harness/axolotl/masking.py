"""Prove the loss masking: tokenize exported rows through Axolotl's own preprocessing and check that the
trained tokens (label != -100) are exactly the target (the final `training: true` message) plus its
end-of-turn token.

The rows go through the same code `axolotl preprocess` runs (config validation and normalization, Axolotl's
tokenizer loader, `get_dataset_wrapper` with the config's chat_template strategy), in-process.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IGNORE = -100


class MaskingError(Exception):
    """Trained tokens differ from the target in at least one example."""


@dataclass
class MaskEntry:
    id: str
    ok: bool
    input_ids: list[int]
    labels: list[int]
    problem: str = ""
    """Why the row failed (empty when ok)."""
    trained_text: str = ""
    """The decoded trained tokens (joined with ' … ' where the trained tokens are not contiguous)."""
    expected_text: str = ""
    """The target's content followed by the end-of-turn token."""
    note: str = ""
    """Something worth knowing that is not a masking problem (e.g. Axolotl will drop the row as too long)."""

    @property
    def trained_count(self) -> int:
        return sum(label != IGNORE for label in self.labels)


@dataclass
class MaskReport:
    entries: list[MaskEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.entries)

    @property
    def failures(self) -> list[MaskEntry]:
        return [e for e in self.entries if not e.ok]

    def raise_for_problems(self) -> None:
        bad = self.failures
        if not bad:
            return
        lines = [f"{len(bad)} of {len(self.entries)} examples train the wrong tokens:"]
        for e in bad:
            lines.append(f"- row {e.id}: {e.problem}")
            lines.append(f"    trained:  {_show(e.trained_text)}")
            lines.append(f"    expected: {_show(e.expected_text)}")
        raise MaskingError("\n".join(lines))


def _show(text: str, limit: int = 300) -> str:
    text = repr(text)
    return text if len(text) <= limit else text[: limit - 20] + " … " + text[-17:]


def _read_rows(path: Path, n: int) -> list[dict[str, Any]]:
    rows = []
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if len(rows) >= n:
                break
            if line.strip():
                rows.append(json.loads(line))
    return rows


def _target_message(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The final message flagged `training: true`; without flags, the last assistant message."""
    flagged = [m for m in messages if m.get("training") is True]
    if flagged:
        return flagged[-1]
    assistants = [m for m in messages if m.get("role") == "assistant"]
    return assistants[-1] if assistants else None


def _spans(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) runs of trained positions."""
    spans, start = [], None
    for i, label in enumerate(labels):
        if label != IGNORE and start is None:
            start = i
        elif label == IGNORE and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(labels)))
    return spans


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def judge(row_id: str, row: dict[str, Any], input_ids: list[int], labels: list[int], tokenizer: Any,
          sequence_len: int | None = None, excess_length_strategy: str | None = None,
          after_eos: tuple[str, ...] = ()) -> MaskEntry:
    """Compare one tokenized row's trained tokens with its target (+ end-of-turn token, + the tokens the chat
    template trains after it: `after_eos`, e.g. LLaMA-Factory qwen's "\\n")."""
    entry = MaskEntry(id=row_id, ok=False, input_ids=list(input_ids), labels=list(labels))
    if sequence_len and len(input_ids) > sequence_len:
        action = {"truncate": "truncates", "raise": "raises an error on"}.get(excess_length_strategy or "",
                                                                               "drops")
        entry.note = (f"{len(input_ids)} tokens > sequence_len {sequence_len}: "
                      f"Axolotl {action} this row when training")
    target = _target_message(row.get("messages") or [])
    eos = tokenizer.eos_token or ""
    if target is None or not isinstance(target.get("content"), str):
        entry.problem = "no target: the row has no `training: true` message and no assistant message"
        return entry
    content = target["content"]
    tail = "".join(after_eos)
    entry.expected_text = content + eos + tail
    expected_ids = tokenizer(content, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    for text in after_eos:
        expected_ids += tokenizer(text, add_special_tokens=False)["input_ids"]
    spans = _spans(entry.labels)
    trained_ids = [input_ids[i] for s, e in spans for i in range(s, e)]
    entry.trained_text = " … ".join(_decode(tokenizer, input_ids[s:e]) for s, e in spans)
    mismatched = [i for s, e in spans for i in range(s, e) if labels[i] != input_ids[i]]
    if not spans:
        entry.problem = "no token is trained (the target is masked entirely)"
    elif mismatched:
        entry.problem = f"labels differ from the input ids at positions {mismatched[:5]}"
    elif len(spans) > 1:
        entry.problem = (f"trained tokens form {len(spans)} separate spans (more than the target is trained, "
                         "e.g. an earlier assistant turn or a prompt token)")
    elif tokenizer.eos_token_id in input_ids[spans[0][1]:]:
        entry.problem = "the trained span is not the final turn (a later turn follows it)"
    elif trained_ids == expected_ids:
        entry.ok = True
    elif entry.trained_text in (entry.expected_text, content.strip() + eos + tail):
        # Same text, different token boundaries (context-dependent merges, a template that trims content).
        entry.ok = True
    else:
        missing = len(expected_ids) - len(trained_ids)
        how = (f"{missing} target token(s) masked" if missing > 0
               else f"{-missing} extra token(s) trained" if missing < 0 else "different tokens trained")
        entry.problem = f"trained text differs from the target + end-of-turn token ({how})"
    return entry


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


def _tokenize(rows: list[dict[str, Any]], ds_cfg: Any, tokenizer: Any, acfg: Any) -> list[dict[str, Any]]:
    from axolotl.utils.data.wrappers import get_dataset_wrapper
    from datasets import Dataset

    dataset = Dataset.from_list(rows)
    wrapped, _ = get_dataset_wrapper(dataset_config=ds_cfg, tokenizer=tokenizer, cfg=acfg,
                                     dataset_base_type=ds_cfg.type, dataset=dataset)
    return [wrapped[i] for i in range(len(wrapped))]


def trained_after_eos(acfg: Any, ds_cfg: Any, tokenizer: Any) -> tuple[str, ...]:
    """The end-of-turn tokens (besides the EOS) a config trains after each trained turn."""
    if (ds_cfg.get("train_on_eot") or "") not in ("turn", "all"):
        return ()
    return tuple(t for t in (acfg.get("eot_tokens") or ()) if t != tokenizer.eos_token)


def _load(cfg: dict) -> tuple[Any, Any, Any]:
    """(Axolotl's normalized config, its tokenizer, the first dataset's config), as `axolotl preprocess` has them."""
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from harness.axolotl.config import axolotl_cfg

    acfg = axolotl_cfg(cfg)
    acfg.dataset_num_proc = 1  # a handful of rows: worker processes would cost more than they save
    acfg.dataset_keep_in_memory = True
    from axolotl.loaders import load_tokenizer

    return acfg, load_tokenizer(acfg), acfg.datasets[0]


def tokenize_rows(cfg: dict, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` tokenized by Axolotl's preprocessing for this config: each with `input_ids` and `labels`."""
    acfg, tokenizer, ds_cfg = _load(cfg)
    with _no_progress_bars():
        return _tokenize(rows, ds_cfg, tokenizer, acfg)


@dataclass
class LengthReport:
    lengths: list[int]
    sequence_len: int
    strategy: str
    prompt_over: int = 0
    """Over-long rows whose prompt alone (everything before the target) fills sequence_len: truncated, they train
    no token at all."""

    @property
    def over(self) -> int:
        return sum(n > self.sequence_len for n in self.lengths)


def row_lengths(cfg: dict, dataset: Path) -> LengthReport:
    """The token count of every row of a dataset as Axolotl's chat_template strategy tokenizes it (the whole
    conversation through the config's chat template, with Axolotl's tokenizer), to count what sequence_len cuts."""
    acfg, tokenizer, ds_cfg = _load(cfg)
    from axolotl.utils.chat_templates import get_chat_template_from_config

    template = get_chat_template_from_config(cfg=acfg, ds_cfg=ds_cfg, tokenizer=tokenizer)
    limit = int(acfg.sequence_len)
    lengths, prompt_over = [], 0
    with Path(dataset).open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            messages = [{"role": m["role"], "content": m["content"]} for m in json.loads(line)["messages"]]
            ids = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=True, return_dict=False)
            lengths.append(len(ids))
            if len(ids) > limit:  # the prompt and the assistant header, without the target
                prompt = tokenizer.apply_chat_template(messages[:-1], chat_template=template, tokenize=True,
                                                       add_generation_prompt=True, return_dict=False)
                prompt_over += len(prompt) >= limit
    return LengthReport(lengths, limit, acfg.excess_length_strategy or "drop", prompt_over)


def check_trained_spans(cfg: dict, n: int) -> MaskReport:
    """Tokenize the first `n` rows of the config's first dataset with Axolotl; check every trained span."""
    acfg, tokenizer, ds_cfg = _load(cfg)
    after = trained_after_eos(acfg, ds_cfg, tokenizer)
    rows = _read_rows(Path(ds_cfg.path), n)
    ids = [str(r.get("id", f"line {i + 1}")) for i, r in enumerate(rows)]
    report = MaskReport()
    if not rows:
        return report
    with _no_progress_bars():
        try:
            tokenized = _tokenize(rows, ds_cfg, tokenizer, acfg)
            if len(tokenized) != len(rows):
                raise ValueError(f"Axolotl returned {len(tokenized)} rows for {len(rows)}")
        except Exception:
            tokenized = None
        for i, row in enumerate(rows):
            try:
                tok = tokenized[i] if tokenized is not None else _tokenize([row], ds_cfg, tokenizer, acfg)[0]
            except Exception as exc:  # one bad row: report it, keep checking the others
                problem = f"Axolotl could not tokenize it: {type(exc).__name__}: {exc}"
                report.entries.append(MaskEntry(ids[i], ok=False, input_ids=[], labels=[], problem=problem))
                continue
            report.entries.append(judge(ids[i], row, tok["input_ids"], tok["labels"], tokenizer,
                                        acfg.sequence_len, acfg.excess_length_strategy, after))
    return report


def render_example(entry: MaskEntry, tokenizer: Any) -> Any:
    """The decoded example as rich Text: trained tokens bold green, masked tokens dim."""
    from rich.text import Text

    text = Text()
    for start, end, trained in _runs(entry.labels):
        piece = _decode(tokenizer, entry.input_ids[start:end])
        text.append(piece, style="bold green" if trained else "dim")
    if entry.problem:
        text.append(f"\n[{entry.problem}]", style="bold red")
    if entry.note:
        text.append(f"\n[{entry.note}]", style="yellow")
    return text


def _runs(labels: list[int]) -> list[tuple[int, int, bool]]:
    runs: list[tuple[int, int, bool]] = []
    for i, label in enumerate(labels):
        trained = label != IGNORE
        if runs and runs[-1][2] == trained:
            runs[-1] = (runs[-1][0], i + 1, trained)
        else:
            runs.append((i, i + 1, trained))
    return runs
