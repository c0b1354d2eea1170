"""Shard planning: bucket boundaries on the grid, caller's exact ends, the fewest requests.

Intervals that divide a day get shards of whole pages (N_min requests exactly); the others
whole units of ``lcm(interval, 1 day)`` (near-minimal).
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiko_liq.plan import MIN_PAGE_FILL, buckets_in, plan_subranges, unit_seconds
from kaiko_liq.query import parse_interval

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INTERVALS = [f"{n}h" for n in range(1, 25)] + ["1d"]


def requests_needed(start: datetime, end: datetime, interval: str, page_size: int) -> int:
    """Upper bound on requests a plan costs: every bucket present, shard by shard."""
    grid = parse_interval(interval)
    shards = plan_subranges(start, end, grid, page_size)
    return sum(max(1, math.ceil(buckets_in(s.start, s.end, grid) / page_size)) for s in shards)


def test_two_year_hourly_window_costs_the_minimum() -> None:
    grid = parse_interval("1h")
    start, end = datetime(2025, 1, 8, tzinfo=UTC), datetime(2027, 1, 8, tzinfo=UTC)
    shards = plan_subranges(start, end, grid, 1000)
    minimum = math.ceil(buckets_in(start, end, grid) / 1000)
    assert minimum == 18
    assert len(shards) == minimum == requests_needed(start, end, "1h", 1000)
    # 1000 buckets, one full page each; not whole days (41 days = 984 would cost 18.5).
    assert shards[0].end - shards[0].start == timedelta(hours=1000)


def test_the_issue_job_sends_n_min_not_whole_day_shards() -> None:
    # 2025-01-08 -> 2026-11-01 hourly: 15,888 buckets, 16 pages per asset (80 for 5
    # assets); 41-day shards cost 17 (85).
    start, end = datetime(2025, 1, 8, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    assert buckets_in(start, end, parse_interval("1h")) == 15_888
    assert requests_needed(start, end, "1h", 1000) == 16


def test_shards_tile_the_window_exactly_and_keep_the_callers_ends() -> None:
    grid = parse_interval("1h")
    start = datetime(2025, 1, 31, 9, 0, 1, tzinfo=UTC)
    end = datetime(2025, 6, 27, 23, 59, 59, tzinfo=UTC)
    shards = plan_subranges(start, end, grid, 100)
    assert shards[0].start == start and shards[-1].end == end
    for a, b in itertools.pairwise(shards):
        assert a.end == b.start
        assert (b.start - EPOCH) % timedelta(hours=1) == timedelta(0)
    # Pages counted from the bucket the server snaps the start to: 09:00.
    assert shards[0].end == datetime(2025, 2, 4, 13, tzinfo=UTC)
    assert {buckets_in(s.start, s.end, grid) for s in shards[:-1]} == {100}
    assert [s.index for s in shards] == list(range(len(shards)))


@pytest.mark.parametrize(("interval", "unit_hours"), [("5h", 120), ("7h", 168)])
def test_intervals_that_do_not_divide_a_day_keep_whole_unit_shards(
    interval: str, unit_hours: int
) -> None:
    start = datetime(2025, 1, 8, 3, tzinfo=UTC)
    shards = plan_subranges(start, start + timedelta(days=400), parse_interval(interval), 1000)
    unit = timedelta(hours=unit_hours)
    assert all((s.start - EPOCH) % unit == timedelta(0) for s in shards[1:])


def test_an_empty_window_plans_nothing() -> None:
    t = datetime(2025, 1, 1, tzinfo=UTC)
    assert plan_subranges(t, t, parse_interval("1h"), 1000) == []


def test_a_page_smaller_than_a_day_gives_whole_page_shards_of_at_least_a_day() -> None:
    # page_size=5 at 1h: 25 buckets (5 full pages), not a file per 5 hours.
    start, end = datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 2, 5, tzinfo=UTC)
    shards = plan_subranges(start, end, parse_interval("1h"), 5)
    assert [s.end - s.start for s in shards] == [timedelta(hours=25)] * 3 + [timedelta(hours=21)]
    assert requests_needed(start, end, "1h", 5) == math.ceil(96 / 5)


@settings(max_examples=300, deadline=None)
@given(
    start_minutes=st.integers(0, 60 * 24 * 800),
    length_minutes=st.integers(1, 60 * 24 * 900),
    interval=st.sampled_from(INTERVALS),
    page_size=st.integers(1, 1000),
)
def test_plans_are_aligned_and_near_minimal(
    start_minutes: int, length_minutes: int, interval: str, page_size: int
) -> None:
    grid = parse_interval(interval)
    start = datetime(2024, 6, 1, tzinfo=UTC) + timedelta(minutes=start_minutes)
    end = start + timedelta(minutes=length_minutes)
    shards = plan_subranges(start, end, grid, page_size)
    assert shards[0].start == start and shards[-1].end == end
    divides_a_day = 86_400 % grid.seconds == 0
    grain = grid.delta if divides_a_day else timedelta(seconds=unit_seconds(grid))
    for a, b in itertools.pairwise(shards):
        assert a.end == b.start and a.start < a.end
        assert (b.start - EPOCH) % grain == timedelta(0), "no bucket straddles two shards"
    # Together the shards snap to exactly the buckets of the whole window, none twice.
    assert sum(buckets_in(s.start, s.end, grid) for s in shards) == buckets_in(start, end, grid)
    minimum = math.ceil(buckets_in(start, end, grid) / page_size)
    if divides_a_day:
        assert requests_needed(start, end, interval, page_size) == minimum
        assert all(s.end - s.start >= timedelta(days=1) for s in shards[1:-1])
    elif page_size >= 100:
        assert requests_needed(start, end, interval, page_size) <= minimum / MIN_PAGE_FILL + 1
        assert requests_needed(start, end, interval, page_size) <= 1.1 * minimum + 1


@pytest.mark.parametrize("interval", ["1h", "5h", "7h", "1d"])
def test_units_are_whole_days(interval: str) -> None:
    assert unit_seconds(parse_interval(interval)) % 86_400 == 0
