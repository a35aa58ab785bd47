"""Token buckets keyed by client or credential: `rate` requests a second, bursts of `burst`.

In memory: a restart refills every bucket, which costs an attacker nothing they could not get
by waiting a few seconds. Idle buckets are forgotten so the table stays small.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    rate: float  # tokens added per second
    burst: int  # the bucket's size: requests allowed at once

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs a rate above 0 and a burst of at least 1")


class RateLimiter:
    """`take(key)` spends one token: 0.0 when allowed, else the seconds until one is back."""

    MAX_KEYS = 10_000

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        now = self.clock()
        rate, burst = self.limit.rate, float(self.limit.burst)
        with self._lock:
            tokens, at = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            if tokens >= 1.0:
                self._store(key, tokens - 1.0, now)
                return 0.0
            self._store(key, tokens, now)
            return (1.0 - tokens) / rate

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self.MAX_KEYS:
            full = float(self.limit.burst)
            # A bucket that has refilled is the same as no bucket: drop those first.
            self._buckets = {
                k: (t, a)
                for k, (t, a) in self._buckets.items()
                if t + (now - a) * self.limit.rate < full
            }
        self._buckets[key] = (tokens, now)
