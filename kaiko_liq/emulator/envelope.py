"""The success answer, field for field as the endpoint doc's response example.

The emulator has its own wire Structs rather than reusing the client's lenient models:
it is the server, and its output must not change when the client's decoding does. Keys
come in the example's order; ``result`` (from Kaiko's envelope docs) sits after
``access``; ``continuation_token`` and ``next_url`` are left out when nothing follows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from .grid import format_clock, format_time
from .paging import PageSlice
from .params import Query

__all__ = ["encode_around", "encode_page"]

#: The example's ``access.access_range`` (2023-07-04 to 2038-12-31T23:59:59Z).
_ACCESS_START_MS = 1_688_428_800_000
_ACCESS_END_MS = 2_177_539_199_000


class _QueryBlock(msgspec.Struct):
    request_time: str
    query_start_time: str
    query_end_time: str
    data_start_time: str
    data_end_time: str
    start_time: str
    start_timestamp: int
    end_time: str
    end_timestamp: int
    page_size: int
    sort: str
    token: str
    interval: str
    commodity: str
    data_version: str


class _Range(msgspec.Struct):
    start_timestamp: int | None
    end_timestamp: int | None


class _Access(msgspec.Struct):
    access_range: _Range
    data_range: _Range


class _Head(msgspec.Struct):
    """Everything before ``data``."""

    query: msgspec.Struct  # a route's own query block (the events route has its own)
    answer_time: str
    answer_timestamp: int
    access: _Access
    result: str


class _Tail(msgspec.Struct, omit_defaults=True):
    """Everything after ``data``: present only when more follows."""

    continuation_token: str | None = None
    next_url: str | None = None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ACCESS = _Access(_Range(_ACCESS_START_MS, _ACCESS_END_MS), _Range(None, None))
_encoder = msgspec.json.Encoder()


_time = format_time


def _ms(t: datetime) -> int:
    # Integer arithmetic, so the milliseconds agree with format_time's to the digit.
    return (t - _EPOCH) // timedelta(milliseconds=1)


def encode_page(
    query: Query,
    page: PageSlice,
    *,
    request_time: datetime,
    answer_time: datetime,
    continuation_token: str | None,
    next_url: str | None,
) -> tuple[bytes, bytes]:
    """The JSON of one page around its rows: ``head + encode_rows(page.rows) + tail``.

    Split in two so the rows, the bulk of the body, can be encoded and compressed once
    and reused (see :mod:`.compression`). Times look like the example's:
    ``2025-01-31T09:00:00Z``.
    """
    block = _QueryBlock(
        request_time=format_clock(request_time),
        query_start_time=query.query_start_time,
        query_end_time=query.query_end_time,
        data_start_time=_time(query.data_start),
        data_end_time=_time(query.data_end),
        start_time=_time(page.start),
        start_timestamp=page.start * 1000,
        end_time=_time(page.end),
        end_timestamp=page.end * 1000,
        page_size=query.page_size,
        sort=query.sort,
        token=query.asset,
        interval=query.interval,
        commodity="liquidationEvents",
        data_version="v1",
    )
    return encode_around(
        block,
        answer_time=answer_time,
        continuation_token=continuation_token,
        next_url=next_url,
    )


def encode_around(
    block: msgspec.Struct,
    *,
    answer_time: datetime,
    continuation_token: str | None,
    next_url: str | None,
) -> tuple[bytes, bytes]:
    """The JSON before and after a page's rows, around a route's ``query`` block."""
    head = _encoder.encode(
        _Head(
            query=block,
            answer_time=format_clock(answer_time),
            answer_timestamp=_ms(answer_time),
            access=_ACCESS,
            result="success",
        )
    )
    tail = _encoder.encode(_Tail(continuation_token, next_url))
    # '{...}' + ',"data":' ... rows ... + ',"continuation_token":...}' (or just '}')
    return head[:-1] + b',"data":', (b"}" if tail == b"{}" else b"," + tail[1:])
