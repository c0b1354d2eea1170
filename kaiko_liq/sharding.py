"""Shard policies: how a window is cut into shards, and how one shard is fetched.

:class:`GridShards`, for rows on a grid of buckets (at most one row per bucket): the
number of rows a window can hold is known, so shards are planned up front, each about a
page (:func:`kaiko_liq.plan.plan_subranges`), and each followed to its end.

:class:`AdaptiveShards`, for rows of unknown density (events): nothing says how many
rows a day holds (a quiet instrument has none, a cascade tens of thousands), so shards
are planned as whole UTC days and split while they are fetched. A day's chain runs from
the sort's near edge; after each page, when the page's density says the rest of the
chain's window holds more than :data:`SPLIT_PAGES` pages, the far part of the window is
cut off into sub-windows fetched concurrently (each split the same way in turn), and the
chain goes on with the near part only, stopping at the first row that lies beyond it.

Why a split never loses or repeats a row: the windows a split makes are half-open on the
millisecond grid and meet exactly, and the chain keeps every row before the cut (ties at
the last instant it reached included, since the cut is after it) and none from the cut
on. So rows sharing a millisecond, where a page stops or where two windows meet, are all
in exactly one answer, and the merged rows equal one plain query paged to its end.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import anyio

from .plan import SubRange, plan_subranges
from .protocol import PageSource
from .query import Interval, Window, epoch_ms, from_epoch_ms
from .shard import Chain, ChainRoute, fetch_chain

__all__ = [
    "FIRST_FANOUT",
    "MAX_SPLIT",
    "SPLIT_PAGES",
    "AdaptiveShards",
    "GridShards",
    "PolicyRoute",
    "ShardPolicy",
    "day_windows",
    "split_window",
]

Row = TypeVar("Row")
RowIn = TypeVar("RowIn", contravariant=True)

#: A chain is split when its latest page says the rest of its window holds more than this
#: many pages: the far part is then cut off and fetched concurrently.
SPLIT_PAGES = 1.0
#: Parts a day's first split makes at most: the day's first page is all that is known,
#: and a wide first split keeps the key's rate limit busy from the second round trip on.
FIRST_FANOUT = 16
#: Parts every later split makes: thirds. Each part learns its own density from its own
#: first page, so splitting follows where the events are (they come in cascades) without
#: sending many requests into quiet spans. Measured against the emulator in its own
#: process on its busiest day (60 pages of 100) at 100 requests/s and 100 ms latency:
#: thirds 1.20x (asc) and 1.05x (desc) the bound with 79-80 requests; halves 1.34x and
#: 1.21x; quarters 1.20x and 1.06x with 84-86 requests.
MAX_SPLIT = 3
MILLISECOND = timedelta(milliseconds=1)
_DAY = timedelta(days=1)


class PolicyRoute(ChainRoute[RowIn], Protocol[RowIn]):
    """What a shard policy needs of a route, besides its chain's needs."""

    def time_of(self, row: RowIn) -> datetime: ...


class ShardPolicy(ABC):
    """How a window is cut into shards and how one shard's rows are fetched: the part
    of a route (:attr:`kaiko_liq.routes.Route.policy`) the engine asks for both."""

    @abstractmethod
    def plan(self, route: PolicyRoute[Any], target: Any, window: Window) -> list[SubRange]:
        """Shards covering ``[window.start, window.end)``, ascending (pure)."""

    @abstractmethod
    async def fetch(
        self,
        source: PageSource,
        route: PolicyRoute[Row],
        target: Any,
        shard: SubRange,
        sort: str,
        page_size: int,
    ) -> list[Row]:
        """Every row of ``shard`` in ``sort`` order."""


class GridShards(ShardPolicy):
    """Shards of whole grid units, about a page each, planned up front."""

    def plan(self, route: PolicyRoute[Any], target: Any, window: Window) -> list[SubRange]:
        grid = route.grid(target)
        assert isinstance(grid, Interval)
        return plan_subranges(window.start, window.end, grid, window.page_size)

    async def fetch(
        self,
        source: PageSource,
        route: PolicyRoute[Row],
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
    return [SubRange(a, b, i) for i, (a, b) in enumerate(itertools.pairwise(bounds))]


def split_window(lo: datetime, hi: datetime, parts: int) -> list[SubRange]:
    """``[lo, hi)`` (on the millisecond grid) cut into ``parts`` equal sub-windows that
    meet exactly, ascending; fewer when it has fewer milliseconds."""
    a, b = epoch_ms(lo), epoch_ms(hi)
    parts = max(1, min(parts, b - a))
    edges = [a + (b - a) * i // parts for i in range(parts + 1)]
    return [
        SubRange(from_epoch_ms(x), from_epoch_ms(y), i)
        for i, (x, y) in enumerate(itertools.pairwise(edges))
    ]


class AdaptiveShards(ShardPolicy):
    """Whole UTC days, split while fetched by the density their pages show."""

    def plan(self, route: PolicyRoute[Any], target: Any, window: Window) -> list[SubRange]:
        return day_windows(window.start, window.end)

    async def fetch(
        self,
        source: PageSource,
        route: PolicyRoute[Row],
        target: Any,
        shard: SubRange,
        sort: str,
        page_size: int,
    ) -> list[Row]:
        grid = route.grid(target)
        lo, hi = grid.floor(shard.start), grid.ceil(shard.end)
        return await _Split(source, route, target, sort, page_size).window(shard, lo, hi)


@asynccontextmanager
async def _one_error() -> AsyncIterator[None]:
    """A task group's errors come out grouped; the first is what the shard failed with
    (the group cancelled the rest), raised as itself so callers see a plain error."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        raise leaves[0] from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found += _leaves(error)
        else:
            found.append(error)
    return found


class _Split(Generic[Row]):
    """One adaptive fetch: a window's chain, followed while it is the quickest way, and
    the far part of the window handed to concurrent sub-windows when it is not."""

    def __init__(
        self, source: PageSource, route: PolicyRoute[Row], target: Any, sort: str, page_size: int
    ) -> None:
        self._source = source
        self._route = route
        self._target = target
        self._ascending = sort == "asc"
        self._sort = sort
        self._page_size = page_size

    async def window(
        self, shard: SubRange, lo: datetime, hi: datetime, first_split: bool = True
    ) -> list[Row]:
        """Every row of ``[lo, hi)`` (the shard's window snapped to the millisecond), in
        the sort's order. The chain runs from the sort's near edge; ``near``/``far``
        bound what it keeps; after each page, when the rows it has seen say the rest
        of its part holds more than :data:`SPLIT_PAGES` pages, the far part of it is
        cut off into sub-windows fetched concurrently, and the chain keeps the rest."""
        time_of = self._route.time_of
        ascending = self._ascending
        chain: Chain[Row] = Chain(
            self._source, self._route, self._target, shard, self._sort, self._page_size
        )
        near = lo if ascending else hi
        far = hi if ascending else lo  # the chain keeps what lies between near and far
        rows: list[Row] = []
        parts: list[tuple[SubRange, list[Row]]] = []
        async with _one_error(), anyio.create_task_group() as tg:
            while not chain.done:
                page = await chain.next()
                kept = [r for r in page if (time_of(r) < far if ascending else time_of(r) >= far)]
                rows.extend(kept)
                if len(kept) < len(page) or chain.done:
                    break  # reached the sub-windows' part (ordered: all the rest is theirs)
                if not kept:
                    continue
                edge = time_of(kept[-1])
                # Ties at ``edge`` may go on in the next page: the chain keeps them.
                start = edge + MILLISECOND if ascending else edge
                # The density of the latest page: where a cascade starts, the average
                # since the window's edge would say the rest is quiet.
                seen = abs(edge - near) + MILLISECOND
                near = edge
                left = abs(far - start)
                expected_pages = len(kept) * (left / seen) / self._page_size
                if expected_pages <= SPLIT_PAGES or left < 2 * MILLISECOND:
                    continue
                fan = FIRST_FANOUT if first_split else MAX_SPLIT
                first_split = False
                count = min(fan, math.ceil(expected_pages / SPLIT_PAGES))
                low, high = (start, far) if ascending else (far, start)
                cuts = split_window(low, high, count)
                # The part next to the chain stays the chain's; the rest go concurrently.
                mine, theirs = (cuts[0], cuts[1:]) if ascending else (cuts[-1], cuts[:-1])
                far = mine.end if ascending else mine.start
                for part in theirs:
                    slot: list[Row] = []
                    parts.append((part, slot))
                    tg.start_soon(self._fill, part, slot)
        parts.sort(key=lambda p: p[0].start, reverse=not ascending)
        for _, chunk in parts:
            rows.extend(chunk)
        return rows

    async def _fill(self, part: SubRange, slot: list[Row]) -> None:
        # The task group wraps what its tasks raise in a group; a part's failure is raised
        # as itself (the first one: the group cancels the other parts).
        slot.extend(await self.window(part, part.start, part.end, False))
