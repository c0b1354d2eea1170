"""Sub-range planning: split a window into shards that cost as few requests as possible.

Pure: no I/O, no clock. A shard ("sub-range") is a run of whole *units*, where a unit is
``lcm(interval, 1 day)`` on the UTC epoch grid, so that no bucket ever straddles two
shards and every shard boundary is a bucket boundary. The first shard starts at the
caller's exact start and the last ends at the caller's exact end, so the server snaps
them outward exactly as it would have snapped one unsharded query.

How many units a shard holds: a shard of ``k`` units has ``k * b`` buckets (``b`` buckets
per unit) and costs ``ceil(k * b / page_size)`` requests. ``k = page_size // b`` fits one
page, but can waste up to a fifth of it (``page_size=119``, 1h: 96 of 119). When that
one page would be less than :data:`MIN_PAGE_FILL` full we take instead the smallest ``k``
whose pages are, on average. The whole plan then costs at most
``ceil(buckets / page_size) / MIN_PAGE_FILL + 1`` requests. Small shards matter too:
they are what runs concurrently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .query import Interval

__all__ = ["MIN_PAGE_FILL", "SubRange", "buckets_in", "plan_subranges", "units_per_shard"]

#: Shards are sized so that their pages are on average at least this full.
MIN_PAGE_FILL = 0.95
#: Upper bound on the units one shard may hold while searching for a good fill.
_MAX_UNITS = 512
_DAY = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


def buckets_in(start: datetime, end: datetime, interval: Interval) -> int:
    """Buckets in ``[start, end)`` once snapped outward to the grid, as the server does."""
    lo, hi = interval.floor(start), interval.ceil(end)
    return max(0, (hi - lo) // interval.delta)


def plan_subranges(
    start: datetime, end: datetime, interval: Interval, page_size: int
) -> list[SubRange]:
    """Shards covering ``[start, end)`` in ascending order, boundaries on the unit grid."""
    if start >= end:
        return []
    unit = unit_seconds(interval)
    step = timedelta(seconds=unit * units_per_shard(interval, page_size))
    offset = ((start - _EPOCH) // timedelta(seconds=1)) % unit
    anchor = start.replace(microsecond=0) - timedelta(seconds=offset)
    shards: list[SubRange] = []
    lo = start
    hi = anchor + step
    while lo < end:
        shard_end = min(hi, end)
        shards.append(SubRange(lo, shard_end, len(shards)))
        lo, hi = shard_end, hi + step
    return shards
