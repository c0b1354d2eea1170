"""Span arithmetic on ``[start, end)`` windows (pure): what a store holds and lacks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from .query import Grid

__all__ = ["gaps_in", "merge_spans"]


def merge_spans(spans: Sequence[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """``spans`` sorted, with overlapping or touching ones joined."""
    merged: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def gaps_in(
    start: datetime,
    end: datetime,
    grid: Grid,
    covered: Sequence[tuple[datetime, datetime]],
) -> list[tuple[datetime, datetime]]:
    """The parts of ``[start, end)`` that no span of ``covered`` holds (spans on the grid,
    in any order), snapped outward to ``grid`` as the server snaps a window: the rule
    behind a store's gaps."""
    covered = merge_spans(covered)
    lo, hi = grid.floor(start), grid.ceil(end)
    gaps: list[tuple[datetime, datetime]] = []
    cursor = lo
    for c_lo, c_hi in covered:
        if c_hi <= cursor:
            continue
        if c_lo >= hi:
            break
        if c_lo > cursor:
            gaps.append((cursor, c_lo))
        cursor = max(cursor, c_hi)
    if cursor < hi:
        gaps.append((cursor, hi))
    # The caller's own edges, not the snapped ones: same buckets, same shard names as a
    # query that started with nothing on disk.
    return [(max(a, start), min(b, end)) for a, b in gaps]
