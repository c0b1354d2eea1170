"""Per-key token buckets: Kaiko's rate limits are per API key (``KAIKO_API.md``).

Each key gets a bucket of capacity ``max(1, rate)`` (one second's worth of burst) that
refills at ``rate`` tokens per second. The clock is injectable, so the arithmetic is
tested without sleeping::

    now = [0.0]
    limiter = KeyedRateLimiter(2.0, clock=lambda: now[0])
    limiter.acquire("k")   # 0.0: granted
    limiter.acquire("k")   # 0.0: granted (burst of 2)
    limiter.acquire("k")   # 0.5: refused, a token comes back in half a second
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["KeyedRateLimiter", "TokenBucket"]

Clock = Callable[[], float]
_EPSILON = 1e-9


class TokenBucket:
    """A bucket that grants one request per token, refilled continuously."""

    __slots__ = ("_capacity", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, capacity: float, clock: Clock = time.monotonic) -> None:
        self._rate = rate
        self._capacity = capacity
        self._clock = clock
        self._tokens = capacity  # a new key starts with a full burst
        self._stamp = clock()

    def acquire(self) -> float:
        """Take a token: ``0.0`` when granted, else the seconds until one is available.

        A refused request takes nothing, so hammering a limited key does not push its
        recovery further away.
        """
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        # The epsilon forgives float rounding: a client pacing itself at exactly the
        # rate must not be refused for being 1e-14 tokens short.
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self._rate


class KeyedRateLimiter:
    """One :class:`TokenBucket` per API key, created on first use."""

    def __init__(self, rate: float, *, clock: Clock = time.monotonic) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def acquire(self, key: str) -> float:
        """Take a token from ``key``'s bucket; see :meth:`TokenBucket.acquire`."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._rate, self._capacity, self._clock)
        return bucket.acquire()
