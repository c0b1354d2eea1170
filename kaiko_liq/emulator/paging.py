"""Which rows a page holds, which window of buckets it covers, and where the next starts.

Pure: no I/O, no clock. A query's window ``[data_start, data_end)`` (the caller's window
snapped outward to the grid) is served as consecutive pages. A cursor, ``position``, is a
bucket boundary: in ascending order the rows still to serve are those at or after it, in
descending order those before it.

A page takes the next ``limit`` rows from the cursor. Its window (the envelope's
``query.start_time`` / ``end_time``) runs from the cursor to the edge of its last row
when more follows, and to the end of the query's window when it is the last page. So the
pages' windows tile the query's window exactly, with no gap and no overlap; the endpoint
doc's example (desc, ``page_size=2``) gives 22:00 to 00:00 for its first page.

``empty_last_page``: a full page then always carries a cursor, even when nothing follows,
and the next page is empty and last (Kaiko's own scripts suggest real servers do this).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

from ..models import LiquidationRow
from .data import bucket_rows

__all__ = ["PageSlice", "slice_page"]

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class PageSlice:
    """One page: its rows in serving order, its window (epoch seconds), the next cursor."""

    rows: list[LiquidationRow]
    start: int
    end: int
    next_position: int | None


def slice_page(
    asset: str,
    seconds: int,
    *,
    data_start: int,
    data_end: int,
    position: int,
    descending: bool,
    limit: int,
    seed: int = 0,
    empty_last_page: bool = False,
) -> PageSlice:
    """The page of ``limit`` rows at ``position`` in ``[data_start, data_end)``."""
    if descending:
        rows_iter = bucket_rows(asset, seconds, data_start, position, seed=seed, descending=True)
    else:
        rows_iter = bucket_rows(asset, seconds, position, data_end, seed=seed)
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
