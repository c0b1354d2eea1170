"""Argument validation, time parsing and the grid: pure, every bad input named."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from kaiko_liq.errors import InvalidArgumentError
from kaiko_liq.query import (
    RATE_LIMIT_RANGE,
    format_time,
    parse_interval,
    parse_rate_limit,
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
    with pytest.raises(InvalidArgumentError, match="ISO 8601 string, a date or a timezone-aware"):
        parse_time([2025, 1, 1], "end")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1735689600, 1735689600000, 1.7356896e18, 0])
def test_epoch_numbers_are_refused_with_a_hint(value: float) -> None:
    with pytest.raises(
        InvalidArgumentError,
        match=r"end .* is a number; epoch numbers are ambiguous.*fromtimestamp",
    ):
        parse_time(value, "end")  # type: ignore[arg-type]


def test_a_date_is_its_midnight_utc() -> None:
    assert parse_time(date(2025, 1, 31)) == datetime(2025, 1, 31, tzinfo=UTC)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        parse_time(date(2200, 1, 1), "start")


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


def test_format_time_goes_at_most_to_the_millisecond_down_or_up() -> None:
    fine = datetime(2025, 1, 1, 0, 0, 1, 5001, tzinfo=UTC)
    assert format_time(fine) == "2025-01-01T00:00:01.005Z"
    assert format_time(fine, round_up=True) == "2025-01-01T00:00:01.006Z"
    assert format_time(datetime(2025, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC), round_up=True) == (
        "2025-01-01T00:00:01Z"
    )
    whole = datetime(2025, 1, 1, 0, 0, 1, 5000, tzinfo=UTC)
    assert format_time(whole, round_up=True) == format_time(whole) == "2025-01-01T00:00:01.005Z"


@pytest.mark.parametrize(
    ("value", "per_second"),
    [
        ("6000/min", 100.0),
        ("1000/min", 1000 / 60),
        ("100/s", 100.0),
        (" 100 / sec ", 100.0),
        ("3600/hour", 1.0),
        ("100", 100.0),
        ("2.5", 2.5),
        (100, 100.0),
        (0.5, 0.5),
    ],
)
def test_rate_limits_in_kaikos_forms(value: str | float, per_second: float) -> None:
    assert parse_rate_limit(value) == pytest.approx(per_second)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fast", "is not requests per second"),
        ("100/day", "is not requests per second"),
        ("-5", "is not requests per second"),
        ("1/h", "out of range"),
        ("0", "out of range"),
        (20_000, "out of range"),
        (float("nan"), "out of range"),
        (float("inf"), "out of range"),
        (True, "must be requests per second"),
    ],
)
def test_bad_rate_limits_say_what_is_allowed(value: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as info:
        parse_rate_limit(value, "--rate-limit")  # type: ignore[arg-type]
    assert "'6000/min'" in str(info.value) and str(info.value).startswith("--rate-limit")
    assert RATE_LIMIT_RANGE == (0.01, 10_000.0)
