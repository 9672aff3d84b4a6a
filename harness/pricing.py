"""Teacher prices in USD per million tokens, and cost arithmetic. A recipe's `teacher.price` overrides a row.

List prices as published by the providers when this table was written; check them before budgeting a large run.
Local and served open-weight models cost nothing here (their cost is GPU time, not tokens).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None
    batch_discount: float = 0.5  # both OpenAI and Anthropic batch APIs bill half price

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0, batch: bool = False) -> float:
        cached_rate = self.cached_input if self.cached_input is not None else self.input
        usd = ((input_tokens - cached_input_tokens) * self.input + cached_input_tokens * cached_rate
               + output_tokens * self.output) / 1e6
        return usd * (self.batch_discount if batch else 1.0)


FREE = Price(0.0, 0.0)

PRICES: dict[str, Price] = {
    "claude-3-7-sonnet": Price(3.0, 15.0, 0.30),
    "claude-sonnet-4": Price(3.0, 15.0, 0.30),
    "claude-sonnet-4-5": Price(3.0, 15.0, 0.30),
    "claude-opus-4": Price(15.0, 75.0, 1.50),
    "claude-haiku-4-5": Price(1.0, 5.0, 0.10),
    "gpt-4o": Price(2.5, 10.0, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4.1": Price(2.0, 8.0, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
}

PAID_PROVIDERS = ("openai", "anthropic")


def price_for(provider: str, model: str, override: dict[str, float] | None = None) -> Price:
    if override:
        return Price(override.get("input", 0.0), override.get("output", 0.0), override.get("cached_input"))
    if provider not in PAID_PROVIDERS:
        return FREE
    # Longest known prefix wins, so dated snapshots ("claude-3-7-sonnet-20250219") find their family.
    matches = [name for name in PRICES if model.startswith(name)]
    if not matches:
        return Price(0.0, 0.0)  # unknown: report 0 rather than guess; `cgd plan` says the price is unknown
    return PRICES[max(matches, key=len)]


def is_priced(provider: str, model: str, override: dict[str, float] | None = None) -> bool:
    return bool(override) or provider not in PAID_PROVIDERS or any(model.startswith(n) for n in PRICES)
