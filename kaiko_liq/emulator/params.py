"""Reading a request's query string into a :class:`Query`, or a 400 that names the parameter.

Pure. The rules are the endpoint doc's (see ``KAIKO_API.md``): ``interval`` ``<n>h`` or
``<n>d`` from 1h to 1d (default ``1h``), ``sort`` ``asc``/``desc`` (default ``desc``),
``start_time`` inclusive and ``end_time`` exclusive in ISO 8601, ``page_size`` 1 to 1000
(default 100). A missing ``start_time``/``end_time`` means the start/end of the data.
The validation itself is :mod:`kaiko_liq.query`'s, so client and emulator agree on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import msgspec

from ..errors import InvalidArgumentError
from ..query import (
    DATA_START,
    DEFAULT_SERVER_PAGE_SIZE,
    MAX_PAGE_SIZE,
    format_time,
    parse_interval,
    parse_time,
    validate_sort,
)
from .data import DATA_END
from .errors import Rejection

__all__ = ["Query", "parse_query"]

#: Times outside these bounds are refused, so snapping them to a grid cannot overflow.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class Query(msgspec.Struct, frozen=True, array_like=True):
    """Everything a query asked for; a continuation token carries it whole.

    ``query_start_time`` / ``query_end_time`` are the caller's strings, echoed verbatim;
    ``data_start`` / ``data_end`` (epoch seconds) are that window snapped outward.
    """

    asset: str
    interval: str
    seconds: int
    sort: str
    page_size: int
    query_start_time: str
    query_end_time: str
    data_start: int
    data_end: int

    @property
    def descending(self) -> bool:
        return self.sort == "desc"

    @property
    def first_position(self) -> int:
        """The cursor of the first page: the window's far end in serving order."""
        return self.data_end if self.descending else self.data_start


def parse_query(asset: str, params: Mapping[str, str]) -> Query:
    """Validate the parameters of a first request (one without a continuation token)."""
    try:
        interval = parse_interval(params.get("interval", "1h"))
        sort = validate_sort(params.get("sort", "desc"))
    except InvalidArgumentError as exc:
        raise Rejection(400, str(exc)) from None
    page_size = _page_size(params.get("page_size"))
    start_text = params.get("start_time", format_time(DATA_START))
    end_text = params.get("end_time", format_time(DATA_END))
    start = _time(start_text, "start_time")
    end = _time(end_text, "end_time")
    if start >= end:
        raise Rejection(
            400,
            f"start_time {start_text!r} is not before end_time {end_text!r}; "
            "the window is [start_time, end_time)",
        )
    return Query(
        asset=asset,
        interval=interval.text,
        seconds=interval.seconds,
        sort=sort,
        page_size=page_size,
        query_start_time=start_text,
        query_end_time=end_text,
        data_start=int(interval.floor(start).timestamp()),
        data_end=int(interval.ceil(end).timestamp()),
    )


def _page_size(text: str | None) -> int:
    if text is None:
        return DEFAULT_SERVER_PAGE_SIZE
    try:
        value = int(text)
    except ValueError:
        raise Rejection(
            400, f"page_size {text!r} is not an integer; allowed: 1 to {MAX_PAGE_SIZE}"
        ) from None
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise Rejection(400, f"page_size {value} is out of range; allowed: 1 to {MAX_PAGE_SIZE}")
    return value


def _time(text: str, name: str) -> datetime:
    value: datetime | None
    try:
        value = parse_time(text, name)
    except InvalidArgumentError as exc:
        raise Rejection(400, str(exc)) from None
    except OverflowError:  # year 1 with a positive offset falls before datetime.min in UTC
        value = None
    if value is None or not _EARLIEST <= value < _LATEST:
        raise Rejection(400, f"{name} {text!r} is out of range; use a time from 1970 to 2099 (UTC)")
    return value
