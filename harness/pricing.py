"""Teacher prices in USD per million tokens, and cost arithmetic. A recipe's `teacher.price` overrides a row.

List prices as published by the providers when this table was written; check them before budgeting a large run.
Local and served open-weight models cost nothing here (their cost is GPU time, not tokens): only back-ends
registered as `paid` (harness/llm/__init__.py) are looked up in the table.

Input tokens come in three kinds: plain, read from the provider's prompt cache (`cached_input`, cheaper) and, for
Anthropic, written to it (`cache_write`, 1.25x input). Both OpenAI's and Anthropic's batch APIs bill half price
(`batch_discount`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.llm import find_provider, names_with


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None
    batch_discount: float = 0.5  # both OpenAI and Anthropic batch APIs bill half price
    cache_write: float | None = None

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0, batch: bool = False,
             cache_write_tokens: int = 0) -> float:
        """USD for one request. `input_tokens` counts every input token, cached reads and writes included."""
        cached_rate = self.cached_input if self.cached_input is not None else self.input
        write_rate = self.cache_write if self.cache_write is not None else self.input
        plain = max(0, input_tokens - cached_input_tokens - cache_write_tokens)
        usd = (plain * self.input + cached_input_tokens * cached_rate + cache_write_tokens * write_rate
               + output_tokens * self.output) / 1e6
        return usd * (self.batch_discount if batch else 1.0)

    @property
    def free(self) -> bool:
        return self.input == 0 and self.output == 0


FREE = Price(0.0, 0.0)


def _anthropic(input_: float, output: float) -> Price:
    return Price(input_, output, cached_input=input_ * 0.1, cache_write=input_ * 1.25)


PRICES: dict[str, Price] = {
    "claude-3-7-sonnet": _anthropic(3.0, 15.0),
    "claude-sonnet-4": _anthropic(3.0, 15.0),
    "claude-sonnet-4-5": _anthropic(3.0, 15.0),
    "claude-opus-4": _anthropic(15.0, 75.0),
    "claude-opus-4-1": _anthropic(15.0, 75.0),
    "claude-haiku-4-5": _anthropic(1.0, 5.0),
    "claude-3-5-haiku": _anthropic(0.8, 4.0),
    "gpt-4o": Price(2.5, 10.0, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4.1": Price(2.0, 8.0, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "o4-mini": Price(1.10, 4.40, 0.275),
}


def is_paid(provider: str) -> bool:
    """Billed per token: the back-end's registration says `paid` (unknown names are not)."""
    info = find_provider(provider)
    return info is not None and info.paid


def __getattr__(name: str) -> Any:
    if name == "PAID_PROVIDERS":  # derived from the registry when read (a back-end registered later is in it)
        return names_with("paid")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def price_for(provider: str, model: str, override: dict[str, float] | None = None) -> Price:
    """The table row for a model (longest known prefix, so dated snapshots find their family), with the recipe's
    override on top of it; free for local and served back-ends unless the recipe gives a price."""
    base = FREE
    if is_paid(provider):
        matches = [name for name in PRICES if model.startswith(name)]
        # unknown: 0 rather than a guess; `cgd plan` says the price is unknown
        base = PRICES[max(matches, key=len)] if matches else Price(0.0, 0.0)
    if not override:
        return base
    return Price(input=override.get("input", base.input), output=override.get("output", base.output),
                 cached_input=override.get("cached_input", base.cached_input),
                 batch_discount=override.get("batch_discount", base.batch_discount),
                 cache_write=override.get("cache_write", base.cache_write))


def is_priced(provider: str, model: str, override: dict[str, float] | None = None) -> bool:
    return bool(override) or not is_paid(provider) or any(model.startswith(n) for n in PRICES)
