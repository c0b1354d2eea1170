"""The bound every job is measured against: the fewest requests, sent at the key's rate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from kaiko_liq.plan import buckets_in
from kaiko_liq.query import parse_interval

__all__ = ["bound_seconds", "n_min"]


def n_min(assets: Sequence[str], start: datetime, end: datetime, interval: str, page: int) -> int:
    """The fewest requests that can return every bucket: one per full page, per asset."""
    buckets = buckets_in(start, end, parse_interval(interval))
    return len(assets) * math.ceil(buckets / page)


def bound_seconds(nmin: int, rate: float, latency: float) -> float:
    """``N_min / rate + latency``: sending at the key's rate, plus the last round trip."""
    return nmin / rate + latency
