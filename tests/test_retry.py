"""Retry decisions, backoff, Retry-After and the adaptive rate.

The pure functions get their random source and "now" injected. The adaptive rate runs
against a real ``aiolimiter.AsyncLimiter`` whose clock, the running loop's ``time()``, is
patched to a number the test moves by hand (as aiolimiter's own tests do): admissions
are counted at exact instants, nothing sleeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import TracebackType
from typing import Any, cast
from unittest import mock

import pytest
from aiolimiter import AsyncLimiter

from kaiko_liq.errors import InvalidArgumentError
from kaiko_liq.retry import (
    NEVER_RETRY_STATUSES,
    RETRY_AFTER_JITTER_FRACTION,
    RETRY_STATUSES,
    AdaptiveRate,
    RetryPolicy,
    backoff_delay,
    may_retry,
    parse_retry_after,
    retry_delay,
    should_retry_status,
)
from kaiko_liq.testing import no_sleeps

# Explicit, so the arithmetic below does not move when a default is tuned.
POLICY = RetryPolicy(
    max_attempts=6, base_delay=0.5, max_delay=20.0, max_retry_after=60.0, deadline=180.0
)


def fixed(value: float) -> Any:
    """A ``random`` that always returns ``value``."""
    return lambda: value


# -- which answers are retried --------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    assert should_retry_status(status)


@pytest.mark.parametrize("status", sorted(NEVER_RETRY_STATUSES))
def test_documented_client_errors_are_never_retried(status: int) -> None:
    assert not should_retry_status(status)


@pytest.mark.parametrize("status", [200, 204, 301, 405, 406, 409, 418, 422, 501, 505, 599])
def test_every_other_status_is_final(status: int) -> None:
    assert not should_retry_status(status)


def test_the_status_sets_are_the_documented_ones() -> None:
    assert frozenset({429, 500, 502, 503, 504}) == RETRY_STATUSES
    assert frozenset({400, 401, 403, 404}) == NEVER_RETRY_STATUSES
    assert not RETRY_STATUSES & NEVER_RETRY_STATUSES


# -- the policy -----------------------------------------------------------------------------


def test_policy_defaults_are_visible() -> None:
    expected = RetryPolicy(
        max_attempts=10, base_delay=0.1, max_delay=20.0, max_retry_after=60.0, deadline=180.0
    )
    assert expected == RetryPolicy()


def test_policy_is_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.max_attempts = 1  # type: ignore[misc]


def test_one_attempt_and_an_infinite_deadline_are_allowed() -> None:
    policy = RetryPolicy(max_attempts=1, deadline=math.inf)
    assert not may_retry(1, policy, elapsed=0.0, delay=0.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", -1),
        ("max_attempts", 2.0),
        ("max_attempts", True),
        ("base_delay", 0),
        ("base_delay", -0.5),
        ("base_delay", math.nan),
        ("base_delay", "1"),
        ("max_delay", 0.0),
        ("max_retry_after", -1.0),
        ("deadline", 0),
        ("deadline", math.nan),
    ],
)
def test_policy_rejects_bad_values_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidArgumentError, match=f"RetryPolicy.{field}"):
        RetryPolicy(**{field: value})


def test_policy_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="positive"):
        RetryPolicy(base_delay=-1)


@pytest.mark.parametrize(
    ("attempts_made", "elapsed", "delay", "expected"),
    [
        (1, 0.0, 0.5, True),
        (5, 100.0, 20.0, True),  # the sixth and last attempt
        (6, 0.0, 0.0, False),  # attempts used up
        (2, 170.0, 10.0, True),  # starts exactly at the deadline
        (2, 170.0, 10.5, False),  # would start after it: fail now instead of waiting
    ],
)
def test_may_retry_counts_attempts_and_the_deadline(
    attempts_made: int, elapsed: float, delay: float, expected: bool
) -> None:
    assert may_retry(attempts_made, POLICY, elapsed=elapsed, delay=delay) is expected


# -- Retry-After ----------------------------------------------------------------------------

NOW = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("0", 0.0), (" 7 ", 7.0), ("1.5", 1.5), ("007", 7.0)],
)
def test_retry_after_in_seconds(header: str, seconds: float) -> None:
    assert parse_retry_after(header) == seconds


@pytest.mark.parametrize(
    "header",
    [
        "Wed, 21 Oct 2015 07:28:00 GMT",  # IMF-fixdate, the preferred format
        "Wednesday, 21-Oct-15 07:28:00 GMT",  # obsolete RFC 850
        "Wed Oct 21 07:28:00 2015",  # obsolete asctime: no zone, GMT by definition
        "Wed, 21 Oct 2015 09:28:00 +0200",  # not HTTP, but unambiguous
    ],
)
def test_retry_after_as_an_http_date(header: str) -> None:
    assert parse_retry_after(header, now=NOW) == 30.0


def test_retry_after_dates_default_to_the_system_clock() -> None:
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    seconds = parse_retry_after(format_datetime(tomorrow, usegmt=True))
    assert seconds is not None and 86_000 < seconds <= 86_400


@pytest.mark.parametrize("header", ["-5", "-0.5", "Wed, 21 Oct 2015 07:00:00 GMT"])
def test_a_negative_delay_or_a_past_date_means_now(header: str) -> None:
    assert parse_retry_after(header, now=NOW) == 0.0


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "soon", "5s", "1e3", "nan", "inf", "+5", "0x10", "1,5", "Wed, 32 Oct 2015"],
)
def test_an_absent_or_unreadable_retry_after_is_none(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


# -- backoff --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 20.0), (7, 20.0), (10_000, 20.0)],
)
def test_backoff_window_doubles_up_to_the_cap(attempt: int, ceiling: float) -> None:
    assert backoff_delay(attempt, POLICY, random=fixed(1.0)) == ceiling
    assert backoff_delay(attempt, POLICY, random=fixed(0.5)) == ceiling / 2


@pytest.mark.parametrize("attempt", [0, 3, 6, 100])
def test_full_jitter_can_retry_at_once(attempt: int) -> None:
    # Full jitter draws from the whole window, zero included: that is what spreads a
    # burst of failures out instead of shifting it later in one piece.
    assert backoff_delay(attempt, POLICY, random=fixed(0.0)) == 0.0


def test_backoff_spreads_clients_that_failed_together() -> None:
    draws = [0.05, 0.35, 0.65, 0.95]
    delays = [backoff_delay(2, POLICY, random=fixed(r)) for r in draws]
    assert delays == pytest.approx([0.1, 0.7, 1.3, 1.9])


def test_backoff_counts_retries_from_zero() -> None:
    with pytest.raises(InvalidArgumentError, match="from 0"):
        backoff_delay(-1, POLICY)


def test_backoff_uses_the_module_random_by_default() -> None:
    for attempt in range(8):
        assert 0.0 <= backoff_delay(attempt, POLICY) <= min(20.0, 0.5 * 2**attempt)


# -- the delay before a retry ---------------------------------------------------------------


def test_without_retry_after_the_delay_is_the_backoff() -> None:
    for attempt in range(8):
        got = retry_delay(attempt, POLICY, retry_after=None, random=fixed(0.3))
        assert got == backoff_delay(attempt, POLICY, random=fixed(0.3))


def test_retry_after_is_honoured_never_earlier() -> None:
    assert retry_delay(4, POLICY, retry_after=10.0, random=fixed(0.0)) == 10.0


def test_retry_after_gets_a_jitter_of_base_delay_plus_a_fraction() -> None:
    top = 10.0 + POLICY.base_delay + RETRY_AFTER_JITTER_FRACTION * 10.0
    assert retry_delay(0, POLICY, retry_after=10.0, random=fixed(1.0)) == pytest.approx(top)


def test_clients_released_by_one_retry_after_do_not_return_in_lockstep() -> None:
    delays = {retry_delay(0, POLICY, retry_after=5.0, random=fixed(r)) for r in (0.1, 0.5, 0.9)}
    assert len(delays) == 3
    assert all(5.0 < d < 5.0 + 0.5 + 0.5 for d in delays)


def test_retry_after_zero_still_spreads_over_base_delay() -> None:
    assert retry_delay(0, POLICY, retry_after=0.0, random=fixed(0.5)) == 0.25


def test_retry_after_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_retry_after=60.0)
    assert retry_delay(0, policy, retry_after=3600.0, random=fixed(0.0)) == 60.0
    assert retry_delay(0, policy, retry_after=math.inf, random=fixed(1.0)) == pytest.approx(66.5)


def test_the_attempt_does_not_stretch_an_honoured_retry_after() -> None:
    first = retry_delay(0, POLICY, retry_after=3.0, random=fixed(0.5))
    assert retry_delay(5, POLICY, retry_after=3.0, random=fixed(0.5)) == first


# -- the adaptive rate: its arithmetic ------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def adaptive(ceiling: float = 10.0, **kwargs: Any) -> tuple[AdaptiveRate, FakeClock]:
    clock = FakeClock()
    limiter = AsyncLimiter(ceiling, 1)
    return AdaptiveRate(limiter, ceiling=ceiling, clock=clock, **kwargs), clock


# on_rate_limited touches the limiter, which lives on the running loop: these are async.


async def test_starts_at_the_ceiling_and_halves_on_a_429() -> None:
    rate, _ = adaptive(10.0)
    assert rate.rate == 10.0
    rate.on_rate_limited()
    assert rate.rate == 5.0


async def test_a_burst_of_429s_within_the_cooldown_is_one_signal() -> None:
    rate, clock = adaptive(10.0)
    for _ in range(10):  # the answers to everything already sent at the old rate
        rate.on_rate_limited()
        clock.now += 0.09
    assert rate.rate == 5.0
    clock.now = 1.0  # a cooldown after the decrease: news again
    rate.on_rate_limited()
    assert rate.rate == 2.5


async def test_the_rate_never_falls_below_the_floor() -> None:
    rate, clock = adaptive(10.0, floor=0.5)
    for _ in range(20):
        rate.on_rate_limited()
        clock.now += 1.0
    assert rate.rate == 0.5


async def test_a_floor_above_the_ceiling_is_lowered_to_it() -> None:
    rate, _ = adaptive(0.2)  # default floor 0.5
    rate.on_rate_limited()
    assert rate.rate == 0.2


async def test_a_success_adds_increase_times_peak_over_rate() -> None:
    rate, _ = adaptive(10.0, increase=0.05)
    rate.on_rate_limited()  # 10 -> 5, peak 10
    rate.on_success()
    assert rate.rate == pytest.approx(5.0 + 0.05 * 10.0 / 5.0)


@pytest.mark.parametrize("ceiling", [2.0, 100.0, 5000.0])
async def test_climbing_back_takes_ten_seconds_at_any_scale(ceiling: float) -> None:
    # Successes arrive at the current rate; the rate then grows by increase * peak per
    # second, so from half the peak back to it takes (1 - 0.5) / 0.05 = 10 s.
    rate, clock = adaptive(ceiling)
    rate.on_rate_limited()
    while rate.rate < ceiling:
        clock.now += 1.0 / rate.rate
        rate.on_success()
    assert clock.now == pytest.approx(10.0, abs=1.0 / ceiling + 1e-9)


async def test_successes_never_lift_the_rate_above_the_ceiling() -> None:
    rate, _ = adaptive(10.0)
    rate.on_rate_limited()
    for _ in range(1000):
        rate.on_success()
    assert rate.rate == 10.0


async def test_above_the_last_peak_each_success_adds_increase() -> None:
    # The server's limit may have risen: past the rate it last refused, grow by
    # `increase` per success, i.e. 5 % a second at full use.
    rate, clock = adaptive(100.0)
    rate.on_rate_limited()  # 100 -> 50
    clock.now = 1.0
    rate.on_rate_limited()  # 50 -> 25, peak 50
    while rate.rate <= 50.0:
        rate.on_success()
    before = rate.rate
    rate.on_success()
    assert rate.rate - before == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ceiling": 0}, "ceiling"),
        ({"ceiling": -1.0}, "ceiling"),
        ({"ceiling": math.nan}, "ceiling"),
        ({"ceiling": math.inf}, "ceiling"),
        ({"floor": 0}, "floor"),
        ({"decrease": 0}, "decrease"),
        ({"decrease": 1}, "decrease"),
        ({"decrease": math.nan}, "decrease"),
        ({"increase": 0}, "increase"),
        ({"cooldown": -1.0}, "cooldown"),
        ({"cooldown": math.nan}, "cooldown"),
        ({"max_pause": 0}, "max_pause"),
    ],
)
def test_adaptive_rate_rejects_bad_settings(kwargs: dict[str, Any], match: str) -> None:
    settings: dict[str, Any] = {"ceiling": 10.0, **kwargs}
    with pytest.raises(InvalidArgumentError, match=match):
        AdaptiveRate(AsyncLimiter(10, 1), **settings)


def test_adaptive_rate_refuses_a_limiter_it_cannot_steer() -> None:
    with pytest.raises(TypeError, match="aiolimiter"):
        AdaptiveRate(cast(AsyncLimiter, object()), ceiling=10.0)


def test_repr_shows_the_rates() -> None:
    assert repr(adaptive(10.0)[0]) == "<AdaptiveRate rate=10/s ceiling=10/s floor=0.5/s>"


# -- the adaptive rate: what the limiter then enforces ----------------------------------------

STEP = 0.125  # a power of two: the bucket arithmetic below is exact


class LoopClock:
    """The running loop's ``time()``, which aiolimiter reads, set by hand."""

    def __init__(self) -> None:
        self.now = 0.0
        self._patch = mock.patch.object(asyncio.get_running_loop(), "time", self)

    def __call__(self) -> float:
        return self.now

    def __enter__(self) -> LoopClock:
        self._patch.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._patch.stop()


async def admitted(limiter: AsyncLimiter, clock: LoopClock, seconds: float) -> int:
    """How many acquisitions the limiter grants over ``seconds``, taking all it offers."""
    count = 0
    for _ in range(round(seconds / STEP)):
        while limiter.has_capacity():
            await limiter.acquire()  # has capacity: returns without waiting
            count += 1
        clock.now += STEP
    return count


async def settle(task: asyncio.Task[None]) -> bool:
    """Let due timers and callbacks run; whether ``task`` is done then."""
    for _ in range(5):
        await asyncio.wait([task], timeout=0)
    return task.done()


def test_the_limiter_is_set_to_the_ceiling_keeping_its_period() -> None:
    limiter = AsyncLimiter(6000, 60)
    AdaptiveRate(limiter, ceiling=50.0)
    assert (limiter.max_rate, limiter.time_period, limiter._rate_per_sec) == (3000, 60, 50)


async def test_after_a_decrease_the_limiter_admits_half_as_many() -> None:
    with LoopClock() as clock:
        limiter = AsyncLimiter(8, 1)
        rate = AdaptiveRate(limiter, ceiling=8.0, clock=clock)
        # 8 at once (the burst), then one per 1/8 s for the other 79 steps.
        assert await admitted(limiter, clock, 10.0) == 8 + 79
        rate.on_rate_limited()
        assert (limiter.max_rate, limiter._rate_per_sec) == (4.0, 4.0)
        # The bucket is still full from the old rate: it drains from 7 to 3 (the new
        # capacity less one) at 4/s before admitting, then admits one every 1/4 s.
        assert await admitted(limiter, clock, 10.0) == 36


async def test_a_task_already_waiting_is_released_at_the_new_rate() -> None:
    with LoopClock() as clock:
        limiter = AsyncLimiter(8, 1)
        rate = AdaptiveRate(limiter, ceiling=8.0, clock=clock)
        for _ in range(8):
            await limiter.acquire()
        waiting = asyncio.ensure_future(limiter.acquire())
        assert not await settle(waiting)  # would be released at 1/8 s at the old rate
        rate.on_rate_limited()
        clock.now = STEP
        assert not await settle(waiting)  # woke as scheduled, found no room, waits again
        clock.now = 1.0
        assert not await settle(waiting)
        clock.now = 1.25  # the level has drained from 8 to 3 at 4/s
        assert await settle(waiting)


async def test_a_429_leaves_no_burst() -> None:
    with LoopClock() as clock:
        limiter = AsyncLimiter(8, 1)
        rate = AdaptiveRate(limiter, ceiling=8.0, clock=clock)
        rate.on_rate_limited(retry_after=0.0)
        # An idle limiter at 4/s would grant 4 at once; after a refusal it paces instead.
        assert await admitted(limiter, clock, STEP) == 1
        assert await admitted(limiter, clock, 1.0 - STEP) == 3


async def test_a_429_without_retry_after_holds_one_period_once_per_signal() -> None:
    with LoopClock() as clock:
        limiter = AsyncLimiter(8, 1)
        rate = AdaptiveRate(limiter, ceiling=8.0, clock=clock)
        rate.on_rate_limited()
        rate.on_rate_limited()  # the same burst of refusals: no second hold or decrease
        assert rate.rate == 4.0
        # Nothing for one period (1 s), then one request and the rest paced at 4/s.
        assert await admitted(limiter, clock, 1.0) == 0  # checked at 0 .. 0.875 s
        assert await admitted(limiter, clock, STEP) == 1  # at 1.0 s
        assert await admitted(limiter, clock, 1.0) == 4  # 1.125 .. 2.0 s


async def test_retry_after_holds_every_request_then_paces_them() -> None:
    with LoopClock() as clock:
        limiter = AsyncLimiter(8, 1)
        rate = AdaptiveRate(limiter, ceiling=8.0, clock=clock)
        rate.on_rate_limited(retry_after=2.0)
        assert await admitted(limiter, clock, 2.0) == 0
        assert await admitted(limiter, clock, 1.0) == 4  # from t=2, one per 1/4 s


async def test_a_shorter_retry_after_does_not_cut_a_pause_short() -> None:
    with LoopClock() as clock:
        limiter = AsyncLimiter(8, 1)
        rate = AdaptiveRate(limiter, ceiling=8.0, clock=clock)
        rate.on_rate_limited(retry_after=2.0)
        clock.now = 0.5
        rate.on_rate_limited(retry_after=0.5)
        assert await admitted(limiter, clock, 1.5) == 0
        assert limiter.has_capacity()  # t = 2


async def test_a_retry_after_pause_is_capped() -> None:
    with LoopClock() as clock:
        limiter = AsyncLimiter(8, 1)
        rate = AdaptiveRate(limiter, ceiling=8.0, max_pause=5.0, clock=clock)
        rate.on_rate_limited(retry_after=3600.0)
        assert await admitted(limiter, clock, 5.0) == 0
        assert limiter.has_capacity()


async def test_at_the_floor_the_limiter_still_admits_whole_requests() -> None:
    # A capacity below 1 would make acquire() reject every request as too large; slow
    # rates get a longer period instead.
    with LoopClock() as clock:
        limiter = AsyncLimiter(1, 1)
        rate = AdaptiveRate(limiter, ceiling=1.0, floor=0.25, clock=clock)
        for _ in range(3):
            rate.on_rate_limited()
            clock.now += 1.0
        assert (limiter.max_rate, limiter.time_period, limiter._rate_per_sec) == (1, 4, 0.25)
        clock.now = 100.0
        assert await admitted(limiter, clock, 8.0) == 2  # at 0 and 4 s


async def test_successes_give_the_limiter_its_ceiling_back() -> None:
    limiter = AsyncLimiter(8, 1)
    rate = AdaptiveRate(limiter, ceiling=8.0, clock=FakeClock())
    rate.on_rate_limited()
    for _ in range(500):
        rate.on_success()
    assert (limiter.max_rate, limiter.time_period, limiter._rate_per_sec) == (8, 1, 8)


async def test_under_no_sleeps_a_429_neither_holds_nor_pauses_the_limiter() -> None:
    with LoopClock() as clock, no_sleeps():
        limiter = AsyncLimiter(8, 1)
        rate = AdaptiveRate(limiter, ceiling=8.0, clock=clock)
        assert await admitted(limiter, clock, STEP) == 8  # the burst: the bucket is full
        rate.on_rate_limited(retry_after=30.0)
        # The decision is still made (the rate halves) but nothing waits for it.
        assert rate.rate == 4.0
        assert await admitted(limiter, clock, STEP) == 1
    # Outside the block the same signal holds the limiter again.
    with LoopClock() as clock:
        limiter = AsyncLimiter(8, 1)
        AdaptiveRate(limiter, ceiling=8.0, clock=clock).on_rate_limited(retry_after=2.0)
        assert await admitted(limiter, clock, 2.0) == 0
