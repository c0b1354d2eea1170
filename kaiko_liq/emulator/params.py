"""Reading a request's query string into a :class:`Query`, or a 400 that names the parameter.

Pure. The rules are the endpoint doc's, as :mod:`.grid` reads them: ``interval``
``<n>h`` or ``<n>d`` from 1h to 1d (default ``1h``), ``sort`` ``asc``/``desc`` (default
``desc``), ``start_time`` inclusive and ``end_time`` exclusive in ISO 8601, ``page_size``
1 to 1000 (default 100). A missing ``start_time`` means the start of the data, a missing
``end_time`` now (the emulator's clock).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from .errors import Rejection
from .grid import (
    DATA_START_S,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    SORTS,
    ParamError,
    ceil_seconds,
    epoch_seconds,
    format_time,
    parse_grid_interval,
    parse_iso_time,
)

__all__ = ["Query", "parse_page_size", "parse_query"]


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


def parse_query(asset: str, params: Mapping[str, str], *, now: int) -> Query:
    """Validate the parameters of a first request (one without a continuation token).

    ``now`` (epoch seconds, rounded up) is the end of the window when none is given.
    """
    try:
        interval = parse_grid_interval(params.get("interval", "1h"))
        sort = params.get("sort", "desc")
        if sort not in SORTS:
            raise ParamError(f"sort {sort!r} is not allowed; use asc or desc")
        page_size = parse_page_size(params.get("page_size"))
        start_text = params.get("start_time", format_time(DATA_START_S))
        end_text = params.get("end_time", format_time(now))
        start = epoch_seconds(parse_iso_time(start_text, "start_time"))
        end = ceil_seconds(parse_iso_time(end_text, "end_time"))
    except ParamError as exc:
        raise Rejection(400, str(exc)) from None
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
        data_start=interval.floor(start),
        data_end=interval.ceil(end),
    )


def parse_page_size(text: str | None) -> int:
    """``page_size`` from the query string: 1 to 1000, default 100; else :class:`ParamError`."""
    if text is None:
        return DEFAULT_PAGE_SIZE
    try:
        value = int(text)
    except ValueError:
        raise ParamError(
            f"page_size {text!r} is not an integer; allowed: 1 to {MAX_PAGE_SIZE}"
        ) from None
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise ParamError(f"page_size {value} is out of range; allowed: 1 to {MAX_PAGE_SIZE}")
    return value
