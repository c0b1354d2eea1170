"""Which rows a page holds, which window of buckets it covers, and where the next starts.

Pure: no I/O; the clock comes in as ``now``. A query's window ``[data_start, data_end)``
(the caller's window snapped outward to the grid) is served as consecutive pages. A
cursor, ``position``, is a bucket boundary: in ascending order the rows still to serve
are those at or after it, in descending order those before it.

Two ways to size a page, as real servers do (``KAIKO_API.md``, "Pagination"):

* ``rows`` (the doc's reading: ``page_size`` records): a page takes the next ``limit``
  rows from the cursor. Its window runs from the cursor to the edge of its last row when
  more follows, and to the end of the query's window when it is the last page.
* ``time``: a page covers the next ``limit`` buckets of time from the cursor, whatever
  they hold, so where quiet buckets are absent it is short or empty, and it still
  carries a cursor while time is left in the window.

Either way the pages' windows (the envelope's ``query.start_time`` / ``end_time``) tile
the query's window exactly, with no gap and no overlap; the endpoint doc's example (desc,
``page_size=2``) gives 22:00 to 00:00 for its first page.

``empty_last_page``: a full page (``limit`` rows, or ``limit`` buckets of time) then
always carries a cursor, even when nothing follows, and the next page is empty and last
(Kaiko's own scripts suggest real servers do this).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

from ..models import LiquidationRow
from .data import SETTLE_SECONDS, bucket_rows

__all__ = ["PageSlice", "slice_page"]

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class PageSlice:
    """One page: its rows in serving order, its window (epoch seconds), the next cursor."""

    rows: list[LiquidationRow]
    start: int
    end: int
    next_position: int | None
    #: Every row's figures are final (none still filling), so its bytes can be cached.
    final: bool = True


def slice_page(
    asset: str,
    seconds: int,
    *,
    data_start: int,
    data_end: int,
    position: int,
    descending: bool,
    limit: int,
    now: float,
    settle: int = SETTLE_SECONDS,
    seed: int = 0,
    empty_last_page: bool = False,
    paging: str = "rows",
) -> PageSlice:
    """The page of ``limit`` rows (or buckets, with ``paging="time"``) at ``position``."""
    page = _page(
        asset,
        seconds,
        data_start=data_start,
        data_end=data_end,
        position=position,
        descending=descending,
        limit=limit,
        now=now,
        settle=settle,
        seed=seed,
        empty_last_page=empty_last_page,
        paging=paging,
    )
    if page.rows:
        latest = max(page.rows[0].interval_timestamp, page.rows[-1].interval_timestamp) // _NS
        if latest + seconds + settle > now:
            return PageSlice(page.rows, page.start, page.end, page.next_position, final=False)
    return page


def _page(
    asset: str,
    seconds: int,
    *,
    data_start: int,
    data_end: int,
    position: int,
    descending: bool,
    limit: int,
    now: float,
    settle: int,
    seed: int,
    empty_last_page: bool,
    paging: str,
) -> PageSlice:
    if paging == "time":
        return _time_page(
            asset,
            seconds,
            data_start=data_start,
            data_end=data_end,
            position=position,
            descending=descending,
            buckets=limit,
            now=now,
            settle=settle,
            seed=seed,
            empty_last_page=empty_last_page,
        )
    if descending:
        rows_iter = bucket_rows(
            asset, seconds, data_start, position, now=now, settle=settle, seed=seed, descending=True
        )
    else:
        rows_iter = bucket_rows(
            asset, seconds, position, data_end, now=now, settle=settle, seed=seed
        )
    rows = list(islice(rows_iter, limit))
    if len(rows) == limit:
        # Peek one row ahead: only a page with something after it gets a next_url
        # (unless empty_last_page asks for one anyway).
        more = next(rows_iter, None) is not None
        if more or empty_last_page:
            last = rows[-1].interval_timestamp // _NS
            if descending:
                return PageSlice(rows, last, position, last)
            return PageSlice(rows, position, last + seconds, last + seconds)
    if descending:
        return PageSlice(rows, data_start, position, None)
    return PageSlice(rows, position, data_end, None)


def _time_page(
    asset: str,
    seconds: int,
    *,
    data_start: int,
    data_end: int,
    position: int,
    descending: bool,
    buckets: int,
    now: float,
    settle: int,
    seed: int,
    empty_last_page: bool,
) -> PageSlice:
    span = buckets * seconds
    if descending:
        lo, hi = max(data_start, position - span), position
        edge, reached = lo, lo == data_start
    else:
        lo, hi = position, min(data_end, position + span)
        edge, reached = hi, hi == data_end
    rows = list(
        bucket_rows(
            asset, seconds, lo, hi, now=now, settle=settle, seed=seed, descending=descending
        )
    )
    full = hi - lo == span
    more = not reached or (empty_last_page and full)
    return PageSlice(rows, lo, hi, edge if more else None)
