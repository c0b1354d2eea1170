"""The events route's dense day (issue 18): ``fetch_events`` of the emulator's busiest
day for its densest instrument, at the key's rate limit and latency, against the bound.

A day of unknown density is fetched as days split while fetched (kaiko_liq/sharding.py);
the bound is what sending the fewest pages at the rate allows: ``pages / rate + latency``.
Pages of 100 make the emulator's busiest day (5,936 events) a 60-page job, the size the
issue names (50 pages of 1,000 on Kaiko's densest days). The emulator runs in its own
process; the client in this one, once warmed so that the emulator's data is generated.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta

from kaiko_liq import LiquidationClient
from kaiko_liq.emulator import DENSE_INSTRUMENT

from .bounds import bound_seconds
from .config import Settings
from .emulator_proc import Emulator
from .report import Outcome, Table, Target, fmt_ratio, fmt_seconds

__all__ = ["BUSY_DAY", "PAGE_SIZE", "run"]

#: The emulator's busiest day for its densest instrument (seed 0).
BUSY_DAY = datetime(2025, 5, 16, tzinfo=UTC)
PAGE_SIZE = 100
#: Within this factor of the bound (issue 18).
TARGET = 1.3


async def _fetch(base_url: str, settings: Settings, sort: str) -> tuple[int, int, float]:
    exchange, klass, code = str(DENSE_INSTRUMENT).split(":")
    async with LiquidationClient(
        base_url=base_url, rate_limit=settings.rate_limit, page_size=PAGE_SIZE
    ) as client:
        t0 = time.perf_counter()
        events = await client.fetch_events(
            exchange, klass, code, BUSY_DAY, BUSY_DAY + timedelta(days=1), sort=sort
        )
        wall = time.perf_counter() - t0
        return len(events), client.stats.requests, wall


def run(settings: Settings) -> Outcome:
    table = Table(
        "Events: the busiest day, split while fetched (fetch_events)",
        ("sort", "events", "pages (min)", "requests", "bound", "wall", "wall / bound"),
    )
    data: dict[str, object] = {}
    targets: list[Target] = []
    with Emulator(latency=settings.latency, rate_limit=settings.rate_limit, seed=0) as emu:
        asyncio.run(_fetch(emu.base_url, settings, "asc"))  # warm-up: the data generated
        for sort in ("asc", "desc"):
            runs = [asyncio.run(_fetch(emu.base_url, settings, sort)) for _ in range(3)]
            events, requests, wall = sorted(runs, key=lambda r: r[2])[1]  # the median run
            pages = math.ceil(events / PAGE_SIZE)
            bound = bound_seconds(pages, settings.rate_limit, settings.latency)
            ratio = wall / bound
            table.add(
                sort, f"{events:,}", pages, requests, fmt_seconds(bound), fmt_seconds(wall),
                fmt_ratio(ratio),
            )  # fmt: skip
            data[sort] = {
                "events": events,
                "pages": pages,
                "requests": requests,
                "bound_s": round(bound, 3),
                "wall_s": round(wall, 3),
                "ratio": round(ratio, 3),
            }
            targets.append(
                Target(
                    "events",
                    f"dense day ({sort}) within {TARGET}x of pages / rate + latency",
                    fmt_ratio(ratio),
                    ratio <= TARGET,
                )
            )
    table.notes.append(
        f"{settings.rate_limit:g} requests/s, {settings.latency * 1000:.0f} ms latency, pages "
        f"of {PAGE_SIZE}; median of 3 runs after a warm-up."
    )
    return Outcome(data=data, tables=[table], targets=targets)
