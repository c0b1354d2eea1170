"""Argument validation, time parsing and the grid: pure, every bad input named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from kaiko_liq.errors import InvalidArgumentError
from kaiko_liq.query import (
    format_time,
    parse_interval,
    parse_time,
    validate_asset,
    validate_page_size,
    validate_sort,
    validate_window,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h", 3600), ("4h", 14400), ("5h", 18000), ("24h", 86400), ("1d", 86400), (" 2h ", 7200)],
)
def test_intervals_between_one_hour_and_one_day(text: str, seconds: int) -> None:
    assert parse_interval(text).seconds == seconds


@pytest.mark.parametrize("text", ["0h", "25h", "2d", "1m", "60s", "h", "1H", "1.5h", "", "-1h"])
def test_bad_intervals_say_what_is_allowed(text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="interval .*allowed: 1h to 24h, or 1d"):
        parse_interval(text)


def test_interval_grid_is_the_utc_epoch_grid() -> None:
    five = parse_interval("5h")
    t = datetime(2025, 1, 31, 9, 0, 1, tzinfo=UTC)
    # 5h buckets from the epoch: 2025-01-31 05:00 is safely on it (hours since epoch % 5).
    floor = five.floor(t)
    assert (floor - datetime(1970, 1, 1, tzinfo=UTC)) % timedelta(hours=5) == timedelta(0)
    assert floor <= t < floor + timedelta(hours=5)
    one = parse_interval("1h")
    assert one.floor(t) == datetime(2025, 1, 31, 9, tzinfo=UTC)
    assert one.ceil(t) == datetime(2025, 1, 31, 10, tzinfo=UTC)
    assert one.ceil(datetime(2025, 1, 31, 9, tzinfo=UTC)) == datetime(2025, 1, 31, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-31T09:00:01Z", datetime(2025, 1, 31, 9, 0, 1, tzinfo=UTC)),
        ("2025-01-31T09:00:01.250Z", datetime(2025, 1, 31, 9, 0, 1, 250000, tzinfo=UTC)),
        ("2025-01-31T10:00:00+01:00", datetime(2025, 1, 31, 9, tzinfo=UTC)),
        ("2025-01-31", datetime(2025, 1, 31, tzinfo=UTC)),
        ("2025-01-31T09:00:00", datetime(2025, 1, 31, 9, tzinfo=UTC)),
    ],
)
def test_iso_strings_parse_to_utc(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected and parsed.tzinfo == UTC


def test_aware_datetimes_convert_and_naive_ones_are_refused() -> None:
    cet = timezone(timedelta(hours=1))
    assert parse_time(datetime(2025, 1, 1, 1, tzinfo=cet)) == datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidArgumentError, match="naive datetime.*timezone-aware"):
        parse_time(datetime(2025, 1, 1), "start")


@pytest.mark.parametrize("value", ["yesterday", "2025-13-01", "", "2025/01/01"])
def test_unparseable_times_are_named(value: str) -> None:
    with pytest.raises(InvalidArgumentError, match="start .* is not an ISO 8601 time"):
        parse_time(value, "start")


def test_non_string_time_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="ISO 8601 string or a timezone-aware"):
        parse_time(1735689600, "end")  # type: ignore[arg-type]


def test_window_must_run_forward() -> None:
    t = datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidArgumentError, match="is not before end"):
        validate_window(t, t)


def test_sort_page_size_and_asset() -> None:
    assert validate_sort("asc") == "asc"
    with pytest.raises(InvalidArgumentError, match="use 'asc' or 'desc'"):
        validate_sort("ascending")
    assert validate_page_size(1000) == 1000
    for bad in (0, 1001, -5):
        with pytest.raises(InvalidArgumentError, match="allowed: 1 to 1000"):
            validate_page_size(bad)
    with pytest.raises(InvalidArgumentError, match="integer"):
        validate_page_size(True)
    assert validate_asset("ETH") == "eth"
    assert validate_asset("usd-coin_2") == "usd-coin_2"
    with pytest.raises(InvalidArgumentError, match="non-empty"):
        validate_asset("")
    for bad in ("eth/../btc", "e th", "eth?x=1", "ét"):
        with pytest.raises(InvalidArgumentError, match="letters, digits"):
            validate_asset(bad)


def test_format_time_is_utc_z_with_ms_only_when_needed() -> None:
    assert format_time(datetime(2025, 1, 1, tzinfo=UTC)) == "2025-01-01T00:00:00Z"
    assert (
        format_time(datetime(2025, 1, 1, 0, 0, 1, 5000, tzinfo=UTC)) == "2025-01-01T00:00:01.005Z"
    )
