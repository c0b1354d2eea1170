"""Sub-range planning: split a window into shards that cost as few requests as possible.

Pure: no I/O, no clock. Every shard boundary is a bucket boundary on the UTC epoch grid,
so no bucket ever straddles two shards. The first shard starts at the caller's exact
start and the last ends at the caller's exact end, so the server snaps them outward
exactly as it would have snapped one unsharded query.

Where the interval divides a day (1h, 4h, 1d, ...), a shard is a whole number of *pages*:
``page_size`` buckets, counted from the first bucket of the window, or the smallest
multiple of that reaching a day (``page_size=5`` at 1h: 25 buckets) so that a tiny page
does not turn a backfill into a file per hour. Every page but the window's last is then
full, and a plan costs exactly ``N_min = ceil(buckets / page_size)`` requests (5 assets x
15,888 hours at 1000: 80, where whole-day shards of 41 days cost 85).

Otherwise (5h, 7h, ...) a shard is a run of whole *units*, a unit being
``lcm(interval, 1 day)`` on the epoch grid. How many units a shard holds: a shard of
``k`` units has ``k * b`` buckets (``b`` buckets per unit) and costs
``ceil(k * b / page_size)`` requests. ``k = page_size // b`` fits one page, but can waste
up to a fifth of it (``page_size=119``, 5h: 96 of 119). When that one page would be less
than :data:`MIN_PAGE_FILL` full we take instead the smallest ``k`` whose pages are, on
average. The whole plan then costs at most ``ceil(buckets / page_size) / MIN_PAGE_FILL +
1`` requests. Small shards matter too: they are what runs concurrently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from .query import EPOCH, Interval

__all__ = [
    "MIN_PAGE_FILL",
    "SubRange",
    "buckets_in",
    "buckets_per_shard",
    "plan_subranges",
    "units_per_shard",
]

#: Shards are sized so that their pages are on average at least this full.
MIN_PAGE_FILL = 0.95
#: Upper bound on the units one shard may hold while searching for a good fill.
_MAX_UNITS = 512
_DAY = 86_400


@dataclass(frozen=True, slots=True, order=True)
class SubRange:
    """A shard ``[start, end)``; ``index`` is its position in ascending time order."""

    start: datetime
    end: datetime
    index: int = 0


def unit_seconds(interval: Interval) -> int:
    """``lcm(interval, 1 day)`` in seconds: the smallest run of whole days on the grid."""
    return math.lcm(interval.seconds, _DAY)


def units_per_shard(interval: Interval, page_size: int) -> int:
    """Units per shard: all that fit one page if that page is :data:`MIN_PAGE_FILL` full,
    else the smallest number whose pages are, on average, that full."""
    per_unit = unit_seconds(interval) // interval.seconds
    one_page = page_size // per_unit
    if one_page and one_page * per_unit >= MIN_PAGE_FILL * page_size:
        return one_page
    best_k, best_fill = 1, 0.0
    for k in range(1, _MAX_UNITS + 1):
        buckets = k * per_unit
        fill = buckets / (page_size * math.ceil(buckets / page_size))
        if fill >= MIN_PAGE_FILL:
            return k
        if fill > best_fill:
            best_k, best_fill = k, fill
    return best_k


def buckets_per_shard(interval: Interval, page_size: int) -> int:
    """Buckets per shard: whole pages (at least a day's worth) where the interval divides
    a day, else whole units (:func:`units_per_shard`)."""
    if _DAY % interval.seconds == 0:
        per_day = _DAY // interval.seconds
        return page_size * max(1, math.ceil(per_day / page_size))
    unit = unit_seconds(interval) // interval.seconds
    return unit * units_per_shard(interval, page_size)


def buckets_in(start: datetime, end: datetime, interval: Interval) -> int:
    """Buckets in ``[start, end)`` once snapped outward to the grid, as the server does."""
    lo, hi = interval.floor(start), interval.ceil(end)
    return max(0, (hi - lo) // interval.delta)


def plan_subranges(
    start: datetime, end: datetime, interval: Interval, page_size: int
) -> list[SubRange]:
    """Shards covering ``[start, end)`` in ascending order, inner boundaries on the
    bucket grid (on the unit grid where the interval does not divide a day)."""
    if start >= end:
        return []
    step = interval.delta * buckets_per_shard(interval, page_size)
    if _DAY % interval.seconds == 0:
        # Pages are counted from the window's first bucket, where the server snaps it.
        anchor = interval.floor(start)
    else:
        unit = unit_seconds(interval)
        offset = ((start - EPOCH) // timedelta(seconds=1)) % unit
        anchor = start.replace(microsecond=0) - timedelta(seconds=offset)
    shards: list[SubRange] = []
    lo = start
    hi = anchor + step
    while lo < end:
        shard_end = min(hi, end)
        shards.append(SubRange(lo, shard_end, len(shards)))
        lo, hi = shard_end, hi + step
    return shards
