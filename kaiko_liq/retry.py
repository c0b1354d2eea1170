"""Retry decisions, backoff, ``Retry-After`` and the adaptive request rate.

Everything here but :class:`AdaptiveRate` is pure: no I/O, no sleeping, and the clock and
the random source are parameters, so the transport asks and this module answers::

    if not should_retry_status(status) or not may_retry(attempts, policy, ...):
        raise api_error_for_status(status, message, url)
    delay = retry_delay(attempts - 1, policy, retry_after=parse_retry_after(header))
    await anyio.sleep(delay)

Where the rules come from:

* Kaiko documents 429 ("Rate limit reached"), 500 ("Try again later") and 503
  (maintenance); 502 and 504 are what proxies in front of any API answer while it
  restarts. Those are transient. Any other 4xx is a mistake in the request (or the key)
  that repeating will not fix, so it is never retried.
* Kaiko documents no ``Retry-After`` header; we honour one when present (RFC 9110 §10.2.3)
  and otherwise back off with exponential *full jitter* (AWS Architecture Blog,
  "Exponential Backoff And Jitter"), so clients that failed together do not retry in
  lockstep.
* Rate limits are per API key and every request of a client shares one
  :class:`aiolimiter.AsyncLimiter`; :class:`AdaptiveRate` steers that limiter down on
  429s and back up on successes (AIMD, as TCP does), and holds it for a 429's
  ``Retry-After``, so a client configured above the key's limit settles just below it
  instead of burning requests on 429s.
"""

from __future__ import annotations

import math
import random as _random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from aiolimiter import AsyncLimiter

from . import testing
from .errors import InvalidArgumentError

__all__ = [
    "NEVER_RETRY_STATUSES",
    "RETRY_AFTER_JITTER_FRACTION",
    "RETRY_STATUSES",
    "AdaptiveRate",
    "RetryPolicy",
    "backoff_delay",
    "may_retry",
    "parse_retry_after",
    "retry_delay",
    "should_retry_status",
]

#: Transient answers: 429 rate limited, 500/503 per Kaiko's docs, 502/504 from proxies.
RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
#: Kaiko's documented client errors. Listed for readers and tests: *every* status outside
#: :data:`RETRY_STATUSES` (405, 406, 501, ...) is final, these are just the common ones.
NEVER_RETRY_STATUSES: frozenset[int] = frozenset({400, 401, 403, 404})
#: Jitter added on top of an honoured ``Retry-After``: up to ``base_delay`` plus this
#: fraction of the wait. Clients released by the same header would otherwise all come
#: back in the same instant and trip the limit again; the jitter only ever *adds*, so we
#: never return earlier than the server asked.
RETRY_AFTER_JITTER_FRACTION = 0.1

# ``delay-seconds`` is ``1*DIGIT`` in RFC 9110; we also take a fraction (some servers send
# "1.5") and a sign (a negative delay means "now").
_DELAY_SECONDS_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# Beyond this many doublings every sane ``base_delay`` already exceeds ``max_delay``;
# clamping the exponent keeps ``2**attempt`` from overflowing a float.
_MAX_BACKOFF_EXPONENT = 64
# The AsyncLimiter attributes AdaptiveRate rewrites (see AdaptiveRate._apply); checked up
# front so that a future aiolimiter with another layout fails loudly instead of silently.
_LIMITER_ATTRIBUTES = ("max_rate", "time_period", "_rate_per_sec", "_level", "has_capacity")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How hard one request is retried. All times are in seconds.

    The defaults suit Kaiko: ten attempts, the waits starting small (a dropped
    connection or a lone 502 is usually gone at once, and a backfill should not idle on it)
    and doubling to a cap of 20 s, ride out a rate-limit burst or a restart of half a
    minute; the 180 s deadline bounds how long one page can hold up a fetch before the
    error reaches the caller.
    """

    #: Total attempts per request, the first one included (1 disables retries).
    max_attempts: int = 10
    #: Backoff before the first retry is drawn from ``[0, base_delay]``, then doubles.
    base_delay: float = 0.1
    #: Cap on one backoff sleep.
    max_delay: float = 20.0
    #: Cap on an honoured ``Retry-After``: a maintenance 503 may ask for an hour, but we
    #: would rather fail and tell the user than hang silently.
    max_retry_after: float = 60.0
    #: Budget for one request across all its attempts and sleeps.
    deadline: float = 180.0
    #: Budget while no connection can be made at all (a name that does not resolve,
    #: a port where nothing listens): a restarting proxy is back within it; offline or a
    #: wrong address is not, and is better said at once than after the whole deadline.
    connect_deadline: float = 3.0

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InvalidArgumentError(
                f"RetryPolicy.max_attempts must be an integer >= 1, got {self.max_attempts!r}"
            )
        if self.max_attempts < 1:
            raise InvalidArgumentError(
                f"RetryPolicy.max_attempts must be at least 1 (1 means no retries), "
                f"got {self.max_attempts}"
            )
        for name in ("base_delay", "max_delay", "max_retry_after", "deadline", "connect_deadline"):
            _require_positive(f"RetryPolicy.{name}", getattr(self, name))


def _require_positive(name: str, value: object, *, finite: bool = False) -> None:
    # ``not value > 0`` also rejects NaN, which compares false to everything.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0
        or (finite and not math.isfinite(value))
    ):
        kind = "positive finite number" if finite else "positive number"
        raise InvalidArgumentError(f"{name} must be a {kind}, got {value!r}")


def should_retry_status(status: int) -> bool:
    """Whether an HTTP status is worth another attempt (see :data:`RETRY_STATUSES`)."""
    return status in RETRY_STATUSES


def may_retry(attempts_made: int, policy: RetryPolicy, *, elapsed: float, delay: float) -> bool:
    """Whether another attempt may start after sleeping ``delay``.

    ``attempts_made`` counts the attempts already sent (at least 1) and ``elapsed`` the
    seconds since the first one. A retry that could only start after the deadline is not
    worth the wait: the caller learns about the failure now instead.
    """
    return attempts_made < policy.max_attempts and elapsed + delay <= policy.deadline


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, or ``None``.

    RFC 9110 §10.2.3 allows ``delay-seconds`` or an HTTP-date (all three of its formats).
    A negative delay or a date in the past means "now" (``0.0``). ``None`` when the header
    is absent or unreadable: the caller then falls back to its own backoff. ``now`` is
    the current time (timezone-aware) for dates; it defaults to the system clock.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS_RE.fullmatch(text):
        return max(float(text), 0.0)
    try:
        when = parsedate_to_datetime(text)
    except (ValueError, TypeError, OverflowError):
        return None
    if when.tzinfo is None:
        # asctime dates and "-0000" parse naive; HTTP-dates are always GMT (RFC 9110 §5.6.7).
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC) if now is None else now
    return max((when - current).total_seconds(), 0.0)


def backoff_delay(
    attempt: int,
    policy: RetryPolicy,
    *,
    random: Callable[[], float] = _random.random,
) -> float:
    """Exponential backoff with full jitter for retry number ``attempt`` (0 = first retry).

    Uniform in ``[0, min(max_delay, base_delay * 2**attempt)]``. Full jitter rather than
    "exponential plus a little noise": it spreads retries of requests that failed together
    over the whole window, which is what stops a burst of 429s from coming back as a burst.
    """
    if attempt < 0:
        raise InvalidArgumentError(f"attempt counts retries from 0, got {attempt}")
    growth = 2.0 ** min(attempt, _MAX_BACKOFF_EXPONENT)
    return min(policy.max_delay, policy.base_delay * growth) * random()


def retry_delay(
    attempt: int,
    policy: RetryPolicy,
    *,
    retry_after: float | None,
    random: Callable[[], float] = _random.random,
) -> float:
    """How long to sleep before retry number ``attempt`` (0 = first retry).

    With a ``Retry-After`` (seconds, from :func:`parse_retry_after`): that wait, capped at
    ``max_retry_after``, plus a jitter of up to ``base_delay`` and
    :data:`RETRY_AFTER_JITTER_FRACTION` of the wait. Without one: :func:`backoff_delay`.
    """
    if retry_after is None:
        return backoff_delay(attempt, policy, random=random)
    wait = min(max(retry_after, 0.0), policy.max_retry_after)
    spread = policy.base_delay + RETRY_AFTER_JITTER_FRACTION * wait
    return wait + spread * random()


class AdaptiveRate:
    """AIMD control of ONE shared :class:`aiolimiter.AsyncLimiter`.

    A 429 multiplies the rate by ``decrease`` (not below ``floor``); each success adds a
    little back, never above ``ceiling`` (the rate the user configured). Call them from
    the event loop that runs the limiter (a 429 reads the limiter's clock, the loop's)::

        limiter = AsyncLimiter(rate_limit, 1)
        adaptive = AdaptiveRate(limiter, ceiling=rate_limit)
        async with limiter:
            answer = await send()
        if answer.status == 429:
            adaptive.on_rate_limited(parse_retry_after(answer.headers.get("Retry-After")))
        else:
            adaptive.on_success()

    Why these rules and defaults:

    * **One decrease per signal, not per response.** When the server starts refusing,
      every request already sent at the old rate comes back 429 too. Those are one piece
      of news, so decreases are at least ``cooldown`` seconds apart; without that a burst
      of ten 429s would divide the rate by 1024.
    * **Halve** (``decrease=0.5``), as classic AIMD does: from a ceiling ``k`` times the
      server's limit it takes ``log2(k)`` cooldowns to get under it.
    * **No burst after a refusal, and the key waits as long as the server says.** Every
      429 empties the limiter's burst allowance, and a ``Retry-After`` holds *all*
      requests for that long, not just the refused one: the limit is per key, so the
      others would only be refused too. Without this, a fetch with many pending pages
      spends the limiter's spare capacity on a flood of requests that all come back 429
      before the first decrease has any effect.
    * **Increase additively, in time, relative to the last peak.** Each success adds
      ``increase * peak / rate``, where ``peak`` is the rate at the last decrease. At
      ``rate`` successes per second that is ``increase * peak`` per second, TCP-style
      (+1/cwnd per ack), so climbing back from a decrease takes ``(1 - decrease) /
      increase`` seconds (10 s by default) whatever the absolute rate. Each such cycle
      sends about ``0.75 * limit * 10 s`` requests and is refused only for the few sent in
      the round trip after crossing the limit; a step relative to the ceiling (say
      ``ceiling / 50``) would instead climb back within a second when the ceiling is far
      above the limit, and be refused every second. Above the last peak the step is
      ``increase`` per success (5 % a second): the server's limit may have gone up. A
      client sending less than its rate gets fewer successes, so its rate grows slower.
    """

    def __init__(
        self,
        limiter: AsyncLimiter,
        *,
        ceiling: float,
        floor: float = 0.5,
        decrease: float = 0.5,
        increase: float = 0.05,
        cooldown: float = 1.0,
        max_pause: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``ceiling`` and ``floor`` are requests/second; ``increase`` is the share of the
        last peak rate regained per second; ``cooldown`` (in seconds of ``clock``) is the
        least time between two decreases; ``max_pause`` caps the pause a ``Retry-After``
        imposes on the whole limiter (as :attr:`RetryPolicy.max_retry_after` does for one
        request).

        The limiter is set to ``ceiling`` at once. A ``floor`` above ``ceiling`` is lowered
        to it: a user who configured 0.2 requests/second meant it.
        """
        for name in _LIMITER_ATTRIBUTES:
            if not hasattr(limiter, name):
                raise TypeError(
                    f"AdaptiveRate needs an aiolimiter.AsyncLimiter with {name!r} "
                    "(aiolimiter 1.1 to 1.3); this limiter has a different layout"
                )
        _require_positive("ceiling", ceiling, finite=True)
        _require_positive("floor", floor, finite=True)
        _require_positive("increase", increase, finite=True)
        _require_positive("max_pause", max_pause, finite=True)
        if not 0 < decrease < 1:
            raise InvalidArgumentError(f"decrease must be between 0 and 1, got {decrease!r}")
        if not cooldown >= 0:
            raise InvalidArgumentError(f"cooldown must be >= 0 seconds, got {cooldown!r}")
        self._limiter = limiter
        self._ceiling = float(ceiling)
        self._floor = min(float(floor), self._ceiling)
        self._decrease = decrease
        self._increase = increase
        self._cooldown = cooldown
        self._max_pause = max_pause
        self._clock = clock
        # The limiter's own period stays the unit of its burst capacity (see _apply).
        self._period = float(limiter.time_period)
        self._rate = self._ceiling
        self._peak = self._ceiling
        self._last_decrease: float | None = None
        self._apply()

    @property
    def rate(self) -> float:
        """The current rate, in requests/second."""
        return self._rate

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        """A 429 came back, with ``retry_after`` seconds from its ``Retry-After`` if any.

        Decreases the rate unless it was decreased less than ``cooldown`` ago, then holds
        the limiter: no burst, and nothing at all for ``retry_after`` seconds. Without a
        ``Retry-After`` (Kaiko documents none) a fresh signal holds it for one limiter
        period: the server's bucket is empty, and requests already queued at the old rate
        would otherwise spend themselves on more 429s before the lower rate shows.
        """
        now = self._clock()
        fresh = self._last_decrease is None or now - self._last_decrease >= self._cooldown
        if fresh:
            self._last_decrease = now
            self._peak = self._rate
            self._set(self._rate * self._decrease)
        pause = max(retry_after, 0.0) if retry_after is not None else self._period * fresh
        self._hold(min(pause, self._max_pause))

    def on_success(self) -> None:
        """A request succeeded: add a little rate back, up to the ceiling."""
        if self._rate < self._ceiling:
            self._set(self._rate + self._increase * max(self._peak, self._rate) / self._rate)

    def _set(self, rate: float) -> None:
        self._rate = min(max(rate, self._floor), self._ceiling)
        self._apply()

    def _hold(self, pause: float) -> None:
        """Fill the limiter so that its next admission is ``pause`` seconds away.

        The bucket admits when ``_level + 1 <= max_rate`` and drains at the rate, so a
        level of ``max_rate - 1 + rate * pause`` admits one request after ``pause`` and then
        paces the rest at the rate. ``has_capacity()`` first drains the bucket up to now,
        so the pause counts from now; a level already higher (a longer pause) is kept.
        Under :func:`kaiko_liq.testing.set_testing` there is no pause.
        """
        if testing.sleeps_removed():
            return
        limiter = self._limiter
        limiter.has_capacity()
        limiter._level = max(limiter._level, limiter.max_rate - 1 + self._rate * pause)

    def _apply(self) -> None:
        """Make the limiter enforce ``self._rate``.

        aiolimiter (1.1 to 1.3) is a leaky bucket: it admits while ``_level + 1 <=
        max_rate`` and drains ``_level`` by ``_rate_per_sec`` every second, reading both on
        each check, so rewriting them takes effect at the next acquisition. We keep the
        limiter's period and scale its capacity with the rate, which keeps its invariant
        ``_rate_per_sec == max_rate / time_period`` and shrinks the burst it allows along
        with the rate. After a decrease ``_level`` may exceed the new ``max_rate``; the
        limiter then admits nothing until enough has drained, a pause that is exactly the
        backing off we want. Capacity never drops below 1, or ``acquire()`` would reject a
        single request as larger than the bucket; slow rates get a longer period instead.

        Waiters already sleeping keep the wake-up time computed at the old rate. aiolimiter
        re-checks capacity when they wake, so after a decrease they simply wait again, and
        after an increase (a tiny step) they wake at most one old interval late.
        """
        limiter = self._limiter
        capacity = self._rate * self._period
        if capacity >= 1:
            limiter.max_rate, limiter.time_period = capacity, self._period
        else:
            limiter.max_rate, limiter.time_period = 1.0, 1.0 / self._rate
        limiter._rate_per_sec = self._rate
        if testing.sleeps_removed():
            # No pause from a decrease either: the next request may go at once.
            limiter._level = min(limiter._level, max(limiter.max_rate - 1, 0.0))

    def __repr__(self) -> str:
        return (
            f"<AdaptiveRate rate={self._rate:.3g}/s ceiling={self._ceiling:.3g}/s "
            f"floor={self._floor:.3g}/s>"
        )
