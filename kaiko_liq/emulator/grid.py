"""The emulator's own reading of the endpoint doc: constants, times, the interval grid.

Written from the doc (``seeds/000_...txt`` and ``KAIKO_API.md``), not shared with the
client, so that where the two readings disagree a test finds it:

* ``interval``: ``<n>h`` or ``<n>d``, from 1h to 1d (default ``1h``);
* ``sort``: ``asc`` or ``desc`` (default ``desc``);
* ``start_time`` inclusive, ``end_time`` exclusive, ISO 8601; a time without an offset is
  UTC, as in Kaiko's API;
* ``page_size``: default 100, at most 1000;
* data starts 2025-01-08 at 1h granularity.

Buckets sit on the UTC epoch grid of the interval (for intervals that divide a day, the
same as aligning to UTC midnight). Times here are whole epoch seconds where they can be.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

__all__ = [
    "DATA_START",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "SORTS",
    "EmulatorConfigError",
    "GridInterval",
    "ParamError",
    "ceil_seconds",
    "epoch_seconds",
    "format_clock",
    "format_ms",
    "format_time",
    "ms_ceil",
    "parse_grid_interval",
    "parse_iso_time",
]

#: Kaiko: historical data for this endpoint starts 2025-01-08 at 1h granularity.
DATA_START = datetime(2025, 1, 8, tzinfo=UTC)
DATA_START_S = int(DATA_START.timestamp())
#: Kaiko docs for this family of endpoints: default 100, maximum 1000.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
SORTS = ("asc", "desc")
HOUR = 3600
DAY = 86_400

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Times outside these are refused, so that grid arithmetic cannot overflow a datetime.
EARLIEST = _EPOCH
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_INTERVAL_RE = re.compile(r"([1-9][0-9]{0,3})([hd])")


class ParamError(ValueError):
    """A request parameter the doc does not allow; the message names it and what would do."""


class EmulatorConfigError(ValueError):
    """An :class:`~kaiko_liq.emulator.EmulatorConfig` field out of its range."""


@dataclass(frozen=True, slots=True)
class GridInterval:
    """A bucket width: ``text`` as the caller wrote it, ``seconds`` its length."""

    text: str
    seconds: int

    def floor(self, t: int) -> int:
        """The start of the bucket holding epoch second ``t``."""
        return t - t % self.seconds

    def ceil(self, t: int) -> int:
        """The first bucket start at or after epoch second ``t``."""
        return -(-t // self.seconds) * self.seconds


def parse_grid_interval(text: str) -> GridInterval:
    """``<n>h`` or ``<n>d`` from 1h to 1d inclusive (endpoint doc), else :class:`ParamError`."""
    match = _INTERVAL_RE.fullmatch(text)
    seconds = 0
    if match is not None:
        seconds = int(match.group(1)) * (HOUR if match.group(2) == "h" else DAY)
    if not 0 < seconds <= DAY:
        raise ParamError(
            f"interval {text!r} is not allowed; use <n>h or <n>d from 1h to 1d, e.g. 1h, 4h, 1d"
        )
    return GridInterval(text, seconds)


def parse_iso_time(value: str | datetime | date, name: str) -> datetime:
    """An ISO 8601 string (UTC when it has no offset), an aware datetime, or a date
    (midnight UTC), as an aware UTC datetime from 1970 to 2099; else :class:`ParamError`."""
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ParamError(f"{name} {value!r} is a naive datetime; give it a timezone")
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day, tzinfo=UTC)
    else:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ParamError(
                f"{name} {value!r} is not an ISO 8601 time; "
                "expected e.g. 2025-01-31T09:00:00Z or 2025-01-31"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset falls before datetime.min in UTC
        parsed = EARLIEST - timedelta(days=1)
    if not EARLIEST <= parsed < LATEST:
        raise ParamError(
            f"{name} {str(value)!r} is out of range; use a time from 1970 to 2099 (UTC)"
        )
    return parsed


def epoch_seconds(t: datetime) -> int:
    """Whole epoch seconds of ``t``, rounded down (a bucket edge is never a fraction)."""
    return (t - _EPOCH) // timedelta(seconds=1)


def ceil_seconds(t: datetime) -> int:
    """Whole epoch seconds of ``t``, rounded up (an end time with a fraction reaches on)."""
    return -((_EPOCH - t) // timedelta(seconds=1))


def format_time(epoch_s: int) -> str:
    """Epoch seconds as the doc's example prints a time: ``2025-02-27T22:00:00Z``."""
    return (_EPOCH + timedelta(seconds=epoch_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_clock(t: datetime) -> str:
    """A clock reading as the example prints ``request_time``: milliseconds and ``Z``."""
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def ms_ceil(t: datetime) -> int:
    """Whole epoch milliseconds of ``t``, rounded up: an event at millisecond ``m`` is at
    or after ``t`` exactly when ``m >= ms_ceil(t)``, and before it when ``m < ms_ceil(t)``."""
    return -((_EPOCH - t) // timedelta(milliseconds=1))


def format_ms(ms: int) -> str:
    """Epoch milliseconds as ``2025-01-31T09:00:00.123Z``."""
    return format_time(ms // 1000)[:-1] + f".{ms % 1000:03d}Z"
