"""Shard policies: how a window is cut into shards, and how one shard is fetched.

:class:`GridShards`, for rows on a grid of buckets (at most one row per bucket): the
number of rows a window can hold is known, so shards are planned up front, each about a
page (:func:`kaiko_liq.plan.plan_subranges`), and each followed to its end.

:class:`AdaptiveShards`, for rows of unknown density (events): nothing says how many
rows a day holds (a quiet instrument has none, a cascade tens of thousands), so shards
are planned as whole UTC days and split while they are fetched. When a shard's first
page does not end it, the time that page reached says how dense the shard is; the rest
of the window is then cut into sub-windows expected to fit about a page each, fetched
concurrently, each split again the same way if it must be.

Why a split never loses or repeats a row: the rows kept from the first page are those
strictly before the last instant it reached (in the sort's direction), and the rest of
the window is re-asked from that instant on, as half-open windows on the millisecond
grid that meet exactly. Rows sharing the millisecond where a page stopped, or where two
sub-windows meet, are therefore all in exactly one answer. A window whose first page
holds one instant only cannot be split by time: its chain is followed to the end.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio

from .plan import SubRange, plan_subranges
from .query import Interval
from .routes import PageSource, Route, ShardPolicy, Window, epoch_ms, from_epoch_ms
from .shard import Chain, fetch_chain

__all__ = ["MAX_SPLIT", "SPLIT_FILL", "AdaptiveShards", "GridShards", "day_windows", "split_window"]

Row = TypeVar("Row")

#: Sub-windows one split makes at most: enough to keep a key's rate limit busy for a
#: while (100/s), few enough that a badly estimated density does not send a burst of
#: nearly empty requests.
MAX_SPLIT = 64
#: Sub-windows are sized to hold this much of a page on average, so that most of them
#: end on their first page even where density varies inside the window.
SPLIT_FILL = 0.75
_DAY = timedelta(days=1)


class GridShards(ShardPolicy[Any, Any]):
    """Shards of whole grid units, about a page each, planned up front."""

    def plan(self, route: Route[Any, Any], target: Any, window: Window) -> list[SubRange]:
        grid = route.grid(target)
        assert isinstance(grid, Interval)
        return plan_subranges(window.start, window.end, grid, window.page_size)

    async def fetch(
        self,
        source: PageSource,
        route: Route[Any, Row],
        target: Any,
        shard: SubRange,
        sort: str,
        page_size: int,
    ) -> list[Row]:
        return await fetch_chain(source, route, target, shard, sort, page_size)


def day_windows(start: datetime, end: datetime) -> list[SubRange]:
    """``[start, end)`` cut at each UTC midnight, ascending: the first and last keep the
    caller's own edges."""
    if start >= end:
        return []
    cuts: list[datetime] = []
    midnight = datetime(start.year, start.month, start.day, tzinfo=UTC) + _DAY
    while midnight < end:
        cuts.append(midnight)
        midnight += _DAY
    bounds = [start, *cuts, end]
    return [SubRange(a, b, i) for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))]


def split_window(lo: datetime, hi: datetime, expected_rows: float, page_size: int) -> list[SubRange]:
    """``[lo, hi)`` (on the millisecond grid) cut into equal sub-windows expected to
    hold :data:`SPLIT_FILL` of a page each, at most :data:`MAX_SPLIT`, ascending; each
    at least a millisecond."""
    a, b = epoch_ms(lo), epoch_ms(hi)
    span = b - a
    parts = math.ceil(expected_rows / (page_size * SPLIT_FILL)) if expected_rows > 0 else 1
    parts = max(1, min(parts, MAX_SPLIT, span))
    edges = [a + span * i // parts for i in range(parts + 1)]
    return [
        SubRange(from_epoch_ms(x), from_epoch_ms(y), i)
        for i, (x, y) in enumerate(zip(edges, edges[1:], strict=False))
    ]


class AdaptiveShards(ShardPolicy[Any, Any]):
    """Whole UTC days, split while fetched by the density their first page shows."""

    def plan(self, route: Route[Any, Any], target: Any, window: Window) -> list[SubRange]:
        return day_windows(window.start, window.end)

    async def fetch(
        self,
        source: PageSource,
        route: Route[Any, Row],
        target: Any,
        shard: SubRange,
        sort: str,
        page_size: int,
    ) -> list[Row]:
        grid = route.grid(target)
        lo, hi = grid.floor(shard.start), grid.ceil(shard.end)
        chain: Chain[Row] = Chain(source, route, target, shard, sort, page_size)
        first = await chain.next()
        if chain.done or not first:
            return first + await chain.rest()
        edge = route.time_of(first[-1])  # the last instant the first page reached
        ascending = sort == "asc"
        if ascending:
            kept = [r for r in first if route.time_of(r) < edge]
            rest_lo, rest_hi = edge, hi
            covered = edge - lo
        else:
            kept = [r for r in first if route.time_of(r) > edge]
            rest_lo, rest_hi = lo, grid.ceil(edge + timedelta(microseconds=1))
            covered = hi - edge
        if not kept or rest_hi - rest_lo <= timedelta(milliseconds=1):
            # One instant fills the page (or a millisecond is all that is left): time
            # cannot split it, the cursor can.
            return first + await chain.rest()
        rest = rest_hi - rest_lo
        seen = max(covered, timedelta(milliseconds=1))
        expected = len(first) * (rest / seen)
        parts = split_window(rest_lo, rest_hi, expected, page_size)
        results: list[list[Row]] = [[] for _ in parts]

        async def run(i: int, part: SubRange) -> None:
            results[i] = await self.fetch(source, route, target, part, sort, page_size)

        async with anyio.create_task_group() as tg:
            for i, part in enumerate(parts):
                tg.start_soon(run, i, part)
        ordered = results if ascending else results[::-1]
        rows = kept
        for chunk in ordered:
            rows.extend(chunk)
        return rows
