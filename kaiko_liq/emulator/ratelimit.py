"""Per-key token buckets: Kaiko's rate limits are per API key per minute (``KAIKO_API.md``:
"6000 requests per API key per minute").

How a minute's budget is enforced (the docs do not say): each key gets a token bucket
refilled continuously at the budget / 60 per second, holding at most
:data:`BURST_SECONDS` of that rate (at least one request). So over any minute a key gets
its budget and a little more, never the whole minute's budget in one instant, and a
client pacing itself at the rate (``6000/min`` = 100/s, bursts of up to 100 included)
is never refused: the extra tenth of a second absorbs arrival jitter. The clock is
injectable, so the arithmetic is tested without sleeping::

    now = [0.0]
    limiter = KeyedRateLimiter(2.0, clock=lambda: now[0])
    limiter.acquire("k")   # 0.0: granted
    limiter.acquire("k")   # 0.0: granted (burst of 2.2, so two)
    limiter.acquire("k")   # 0.4: refused, a token is back in 0.4 s
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["BURST_SECONDS", "KeyedRateLimiter", "TokenBucket"]

Clock = Callable[[], float]
#: A bucket holds this many seconds of the rate: one second, plus a tenth for jitter (a
#: request sent on time may arrive a little late, behind the next).
BURST_SECONDS = 1.1
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
        self._capacity = max(1.0, rate * BURST_SECONDS)
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def acquire(self, key: str) -> float:
        """Take a token from ``key``'s bucket; see :meth:`TokenBucket.acquire`."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._rate, self._capacity, self._clock)
        return bucket.acquire()
