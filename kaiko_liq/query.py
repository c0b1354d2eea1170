"""Argument validation, time parsing and the interval grid (pure, no I/O).

Every rule here comes from the endpoint doc and ``KAIKO_API.md``; the client checks all
of them before it sends anything, so a bad argument costs no request.

Times:
    * ISO 8601 strings with ``Z`` or an offset, fractional seconds allowed. A string with
      no offset (``2025-01-01`` or ``2025-01-01T00:00:00``) is UTC, as in Kaiko's API.
    * Timezone-aware :class:`datetime.datetime` objects, converted to UTC.
    * A :class:`datetime.date`: its midnight UTC.
    * A *naive* datetime is rejected: Python reads it as local time, Kaiko as UTC, and
      guessing between the two is how a range silently shifts by hours.
    * An epoch number is rejected too: seconds, milliseconds and nanoseconds all occur
      (this very API labels nanoseconds "milliseconds"), and a wrong guess is off by
      years without an error.
    * Times are sent at most to the millisecond, as the docs show them
      (``2025-01-01T00:00:00.000Z``): :func:`format_time`.

Rate limits (:func:`parse_rate_limit`) are requests per second, written as a number or as
Kaiko states them, per minute (``"6000/min"``).

The grid: buckets are aligned to the UTC epoch grid of the interval. For intervals that
divide 24h this is the same as aligning to UTC midnight.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from .errors import InvalidArgumentError

__all__ = [
    "DATA_START",
    "EARLIEST",
    "EPOCH",
    "LATEST",
    "MAX_CONCURRENCY_RANGE",
    "MAX_PAGE_SIZE",
    "MILLISECOND",
    "RATE_LIMIT_RANGE",
    "SORTS",
    "Grid",
    "Interval",
    "MillisecondGrid",
    "Request",
    "TimeLike",
    "Window",
    "epoch_ms",
    "format_time",
    "from_epoch_ms",
    "interval_name",
    "parse_duration",
    "parse_interval",
    "parse_rate_limit",
    "parse_time",
    "validate_asset",
    "validate_max_concurrency",
    "validate_page_size",
    "validate_request",
    "validate_sort",
]

TimeLike = str | datetime | date

#: Kaiko: historical data for this endpoint starts 2025-01-08 at 1h granularity.
DATA_START = datetime(2025, 1, 8, tzinfo=UTC)
#: Kaiko docs for this family of endpoints: default 100, maximum 1000.
DEFAULT_SERVER_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
SORTS = ("asc", "desc")

#: The Unix epoch, UTC: the one definition (the emulator keeps its own).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Times outside these are refused as arguments: nothing useful lies there.
EARLIEST = EPOCH
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_HOUR = 3600
_DAY = 86_400
_INTERVAL_RE = re.compile(r"([1-9][0-9]*)([hd])")
_ASSET_RE = re.compile(r"[A-Za-z0-9_-]+")
#: What a rate limit may be set to, in requests per second: from one request every 100 s
#: (a shared key kept for something else) to far above any published Kaiko limit.
RATE_LIMIT_RANGE = (0.01, 10_000.0)
#: Requests in flight at once that a client may be set to.
MAX_CONCURRENCY_RANGE = (1, 256)
_RATE_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?:/\s*([a-z]+))?")
_RATE_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_MILLISECOND = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Interval:
    """A validated bucket width: ``text`` as the caller wrote it, ``seconds`` its length."""

    text: str
    seconds: int

    @property
    def delta(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    @property
    def name(self) -> str:
        """Its canonical name (``"4h"``, ``"1d"``), whatever the caller wrote."""
        return interval_name(self.seconds)

    def floor(self, t: datetime) -> datetime:
        """The start of the bucket that holds ``t``."""
        offset = _whole_seconds(t) % self.seconds
        return t.replace(microsecond=0) - timedelta(seconds=offset)

    def ceil(self, t: datetime) -> datetime:
        """The first bucket start at or after ``t``."""
        floor = self.floor(t)
        return floor if floor == t else floor + self.delta

    def __str__(self) -> str:
        return self.text


class Grid(Protocol):
    """Where a window's edges snap: an :class:`Interval`'s buckets, or milliseconds."""

    def floor(self, t: datetime) -> datetime: ...

    def ceil(self, t: datetime) -> datetime: ...


@dataclass(frozen=True, slots=True)
class MillisecondGrid:
    """The grid of times sent to the millisecond: what rows with no buckets (events)
    snap to, since requests write times to the millisecond (:func:`format_time`)."""

    delta: timedelta = _MILLISECOND

    def floor(self, t: datetime) -> datetime:
        return t.replace(microsecond=t.microsecond // 1000 * 1000)

    def ceil(self, t: datetime) -> datetime:
        low = self.floor(t)
        return low if low == t else low + self.delta


MILLISECOND = MillisecondGrid()


@dataclass(frozen=True, slots=True)
class Window:
    """A validated request's span and order: ``[start, end)``, ``sort``, ``page_size``."""

    start: datetime
    end: datetime
    sort: str
    page_size: int


def interval_name(seconds: int) -> str:
    """The canonical name of an interval of ``seconds`` (whole days in ``d``, else ``h``):
    how stores name and record it."""
    return f"{seconds // 86_400}d" if seconds % 86_400 == 0 else f"{seconds // 3600}h"


def epoch_ms(t: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float)."""
    return (t - EPOCH) // _MILLISECOND


def from_epoch_ms(ms: int) -> datetime:
    """The UTC datetime ``ms`` milliseconds after the epoch."""
    return EPOCH + timedelta(milliseconds=ms)


def _whole_seconds(t: datetime) -> int:
    return (t - EPOCH) // timedelta(seconds=1)


def parse_interval(value: str) -> Interval:
    """Validate ``<n>h`` or ``<n>d`` between 1h and 1d inclusive (endpoint doc)."""
    if not isinstance(value, str):
        raise InvalidArgumentError(
            f"interval must be a string like '1h', '4h' or '1d', got {type(value).__name__}"
        )
    match = _INTERVAL_RE.fullmatch(value.strip())
    if match is None:
        raise InvalidArgumentError(
            f"interval {value!r} is not of the form '<n>h' or '<n>d' "
            "(for example '1h', '4h', '1d'); allowed: 1h to 24h, or 1d"
        )
    n, unit = int(match.group(1)), match.group(2)
    seconds = n * (_HOUR if unit == "h" else _DAY)
    if seconds > _DAY:
        raise InvalidArgumentError(
            f"interval {value!r} is longer than one day; allowed: 1h to 24h, or 1d"
        )
    return Interval(text=value.strip(), seconds=seconds)


_DURATION_RE = re.compile(r"\s*(\d+)\s*([smhd]?)\s*")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(value: timedelta | str | int, name: str) -> timedelta:
    """A non-negative span from a ``timedelta``, text such as ``"90m"``, ``"2h"``,
    ``"1d"`` or ``"0"`` (a bare number is seconds), or the integer ``0`` (off)."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return timedelta(0)
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise InvalidArgumentError(f"{name} must not be negative, got {value}")
        return value
    match = _DURATION_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidArgumentError(
            f"{name} must be a duration such as '90m', '2h', '1d' or '0', got {value!r}"
        )
    return timedelta(seconds=int(match.group(1)) * _DURATION_UNITS[match.group(2)])


def parse_time(value: TimeLike, name: str = "time") -> datetime:
    """Parse an ISO 8601 string, an aware datetime or a date (midnight UTC) into a UTC
    datetime in [:data:`EARLIEST`, :data:`LATEST`]."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise InvalidArgumentError(
                f"{name} {value!r} is a naive datetime; pass a timezone-aware one, "
                "e.g. datetime(2025, 1, 1, tzinfo=timezone.utc), or an ISO 8601 string"
            )
        return _in_range(value, name, str(value))
    if isinstance(value, date):
        midnight = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return _in_range(midnight, name, str(value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise InvalidArgumentError(
            f"{name} {value!r} is a number; epoch numbers are ambiguous (seconds, "
            "milliseconds or nanoseconds), so pass an ISO 8601 string such as "
            "'2025-01-31T09:00:00Z', a date, or datetime.fromtimestamp(x, timezone.utc)"
        )
    if not isinstance(value, str):
        raise InvalidArgumentError(
            f"{name} must be an ISO 8601 string, a date or a timezone-aware datetime, "
            f"got {type(value).__name__}"
        )
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgumentError(
            f"{name} {value!r} is not an ISO 8601 time; expected e.g. "
            "'2025-01-31T09:00:00Z', '2025-01-31T10:00:00+01:00' or '2025-01-31'"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _in_range(parsed, name, repr(value))


def _in_range(t: datetime, name: str, shown: str) -> datetime:
    # Bounded so that grid arithmetic can never overflow datetime and every time formats
    # as a four-digit-year ISO 8601 string the server accepts.
    if not EARLIEST <= t <= LATEST:
        raise InvalidArgumentError(
            f"{name} {shown} is out of range; allowed: {EARLIEST.date()} to {LATEST.date()}"
        )
    return t.astimezone(UTC)


def format_time(t: datetime, *, round_up: bool = False) -> str:
    """UTC ISO 8601 with ``Z``, at most to the millisecond, as the docs write times.

    A finer time is rounded down to the millisecond, or up with ``round_up``: a request's
    ``start_time`` rounds down and its ``end_time`` up, so the window only ever widens, by
    less than a millisecond, which no bucket (an hour at least) can notice.
    """
    t = t.astimezone(UTC)
    if t.microsecond % 1000:
        t = t.replace(microsecond=t.microsecond // 1000 * 1000)
        if round_up:
            t += _MILLISECOND
    if t.microsecond:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def validate_max_concurrency(value: object, name: str = "max_concurrency") -> int:
    """Requests in flight at once: an integer in :data:`MAX_CONCURRENCY_RANGE`."""
    least, most = MAX_CONCURRENCY_RANGE
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(
            f"{name} must be an integer from {least} to {most}, got {value!r}"
        )
    if not least <= value <= most:
        raise InvalidArgumentError(f"{name} {value} is out of range; allowed: {least} to {most}")
    return value


def parse_rate_limit(value: str | float | int, name: str = "rate_limit") -> float:
    """Requests per second from ``"6000/min"`` (Kaiko's own form), ``"100/s"``, ``"100"``
    or a number, in :data:`RATE_LIMIT_RANGE`."""
    low, high = RATE_LIMIT_RANGE
    allowed = (
        f"requests per second as a number, or a rate such as '6000/min' or '100/s', "
        f"from {low:g}/s to {high:g}/s"
    )
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidArgumentError(f"{name} must be {allowed}; got {value!r}")
    if isinstance(value, str):
        match = _RATE_RE.fullmatch(value.strip().lower())
        unit = None if match is None else _RATE_UNITS.get(match.group(2) or "s")
        if match is None or unit is None:
            raise InvalidArgumentError(f"{name} {value!r} is not {allowed}")
        rate = float(match.group(1)) / unit
    else:
        rate = float(value)
    if not (math.isfinite(rate) and low <= rate <= high):
        raise InvalidArgumentError(f"{name} {value!r} is out of range; use {allowed}")
    return rate


def validate_sort(value: str) -> str:
    if value not in SORTS:
        raise InvalidArgumentError(f"sort {value!r} is not allowed; use 'asc' or 'desc'")
    return value


def validate_page_size(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(
            f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}, got {value!r}"
        )
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(
            f"page_size {value} is out of range; allowed: 1 to {MAX_PAGE_SIZE}"
        )
    return value


def validate_asset(value: str) -> str:
    """An asset becomes one URL path segment: letters, digits, '-' and '_' only."""
    if isinstance(value, list | tuple | set | frozenset):
        raise InvalidArgumentError(
            f"asset must be one code such as 'btc', got a {type(value).__name__}; for "
            "several assets use fetch_many(...) (a dict of rows) or fetch_frame(...) (one "
            "table)"
        )
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError("asset must be a non-empty string such as 'eth' or 'btc'")
    if "," in value:
        raise InvalidArgumentError(
            f"asset {value!r} looks like several assets; give each on its own (on the "
            "command line separated by spaces: btc eth; in Python a list to fetch_many)"
        )
    if _ASSET_RE.fullmatch(value) is None:
        raise InvalidArgumentError(
            f"asset {value!r} has characters other than letters, digits, '-' and '_'"
        )
    return value.lower()


def validate_window(
    start: datetime, end: datetime, *, start_name: str = "start", end_name: str = "end"
) -> None:
    if start >= end:
        raise InvalidArgumentError(
            f"{start_name} {format_time(start)} is not before {end_name} {format_time(end)}; "
            f"the window is [{start_name}, {end_name}), start inclusive and end exclusive"
        )


@dataclass(frozen=True, slots=True)
class Request:
    """One validated query: what :func:`validate_request` hands back, nothing left to check.

    ``sort`` and ``page_size`` are ``None`` when the caller left them to someone else
    (the client's default page size; a backfill's fixed ascending order).
    """

    asset: str
    start: datetime
    end: datetime
    interval: Interval
    sort: str | None = None
    page_size: int | None = None


def validate_request(
    asset: str,
    start: TimeLike,
    end: TimeLike,
    *,
    interval: str,
    sort: str | None = None,
    page_size: int | None = None,
    start_name: str = "start",
    end_name: str = "end",
) -> Request:
    """Every check of one query, in one order: asset, start, end, window, interval, sort,
    page size. ``start_name``/``end_name`` are how errors call the two times (the CLI
    says ``--start``). Raises :class:`InvalidArgumentError` naming the first bad one."""
    name = validate_asset(asset)
    lo = parse_time(start, start_name)
    hi = parse_time(end, end_name)
    validate_window(lo, hi, start_name=start_name, end_name=end_name)
    grid = parse_interval(interval)
    order = None if sort is None else validate_sort(sort)
    size = None if page_size is None else validate_page_size(page_size)
    return Request(name, lo, hi, grid, order, size)
