"""Client-side rate limits: requests per minute and tokens per minute, as token buckets, plus a shared pause.

Each bucket refills continuously at its per-minute rate and holds at most `burst_s` seconds of it, so a stage
starts at full speed without a burst the provider would answer with 429s. Token costs are not known before the
answer: a request takes its worst case (prompt estimate + max_tokens) and `settle` refunds the difference.
After a 429 with retry-after, `pause` holds every sender until the server's deadline.
"""

from __future__ import annotations

import asyncio
import time


class Bucket:
    def __init__(self, per_minute: float, burst_s: float = 1.0) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(self.rate * burst_s, 1.0)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` can be taken (an amount above capacity waits for a full bucket, then goes
        into debt, so one huge request is slow but never stuck)."""
        self._refill()
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def give(self, amount: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + amount)


class RateLimiter:
    def __init__(self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 burst_s: float = 1.0) -> None:
        self.requests = Bucket(requests_per_minute, burst_s) if requests_per_minute else None
        self.tokens = Bucket(tokens_per_minute, burst_s) if tokens_per_minute else None
        self.paused_until = 0.0
        self._lock: asyncio.Lock | None = None

    @property
    def active(self) -> bool:
        return bool(self.requests or self.tokens or self.paused_until)

    async def acquire(self, tokens: int) -> None:
        if not self.active:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # first come, first served: waiting senders queue here in order
            while True:
                waits = [self.paused_until - time.monotonic()]
                if self.requests:
                    waits.append(self.requests.wait_time(1))
                if self.tokens:
                    waits.append(self.tokens.wait_time(tokens))
                wait = max(waits)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self.requests:
                self.requests.take(1)
            if self.tokens:
                self.tokens.take(tokens)

    def settle(self, reserved: int, actual: int) -> None:
        """Give back what a request reserved and did not use (or take what it used beyond)."""
        if self.tokens and reserved != actual:
            if actual < reserved:
                self.tokens.give(reserved - actual)
            else:
                self.tokens.take(actual - reserved)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)
