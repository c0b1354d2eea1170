"""The client end to end against the real emulator over loopback.

The central property: for any window, interval, sort and page size, ``fetch`` and
``stream`` return exactly what ONE unsharded query paged to its end returns. That
reference is written here as a plain aiohttp loop (one GET with the parameters, then
``next_url`` until there is none or a page is empty), so it shares no code with the client
beyond time formatting and row decoding. It runs against a plain server, one that caps
its page size, and one whose last ``next_url`` leads to an empty page.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiko_liq.client import LiquidationClient
from kaiko_liq.emulator import DATA_END, RunningEmulator, rows_for
from kaiko_liq.models import LiquidationRow, decode_rows
from kaiko_liq.plan import buckets_in
from kaiko_liq.query import DATA_START, format_time, parse_interval

MakeEmulator = Callable[..., Awaitable[RunningEmulator]]
PATH = "/v2/data/liquidation.v1/token/{asset}"
KEY = "e2e-key"
INTERVALS = [f"{n}h" for n in range(1, 25)] + ["1d"]
PAGE_CAP = 37


@dataclass(frozen=True, slots=True)
class Server:
    """One emulator variant and what it does to pages."""

    name: str
    emu: RunningEmulator
    page_cap: int | None
    empty_last_page: bool

    def pages_for(self, rows: int, page_size: int) -> int:
        """Requests one query of ``rows`` rows costs on this server (its paging rules)."""
        limit = min(page_size, self.page_cap or page_size)
        if rows == 0:
            return 1
        extra = 1 if self.empty_last_page and rows % limit == 0 else 0
        return math.ceil(rows / limit) + extra


VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "page_cap": {"page_cap": PAGE_CAP},
    "empty_last_page": {"empty_last_page": True},
}


@pytest.fixture(params=list(VARIANTS))
async def server(request: pytest.FixtureRequest, make_emulator: MakeEmulator) -> Server:
    config = VARIANTS[request.param]
    emu = await make_emulator(**config)
    return Server(request.param, emu, config.get("page_cap"), config.get("empty_last_page", False))


async def reference(
    base_url: str,
    asset: str,
    start: datetime,
    end: datetime,
    interval: str,
    sort: str,
    page_size: int,
) -> tuple[list[LiquidationRow], int]:
    """One unsharded query paged to its end, the plain way; returns rows and requests."""
    params = {
        "interval": interval,
        "sort": sort,
        "start_time": format_time(start),
        "end_time": format_time(end),
        "page_size": str(page_size),
    }
    data: list[Any] = []
    requests = 0
    async with aiohttp.ClientSession(headers={"X-Api-Key": KEY}) as session:
        url: str | None = base_url + PATH.format(asset=asset)
        query: dict[str, str] | None = params
        while url is not None:
            async with session.get(url, params=query) as response:
                assert response.status == 200, await response.text()
                body = await response.json()
            requests += 1
            data.extend(body["data"])
            url = body.get("next_url") if body["data"] else None
            query = None
    return decode_rows(json.dumps(data).encode()), requests


def client_for(emu: RunningEmulator, **kwargs: Any) -> LiquidationClient:
    kwargs.setdefault("rate_limit", 10_000)
    kwargs.setdefault("max_concurrency", 8)
    return LiquidationClient(api_key=KEY, base_url=emu.base_url, **kwargs)


# -- windows --------------------------------------------------------------------------

EDGES = [DATA_START, DATA_END, datetime(2025, 9, 1, tzinfo=UTC)]


@dataclass(frozen=True, slots=True)
class Window:
    asset: str
    start: datetime
    end: datetime
    interval: str
    sort: str
    page_size: int
    stream_window: int


@st.composite
def windows(draw: st.DrawFn) -> Window:
    interval = draw(st.sampled_from(INTERVALS))
    seconds = parse_interval(interval).seconds
    # Hourly: up to ~60 days; coarser: proportionally more, up to a year.
    max_minutes = min(60 * 24 * 60 * seconds // 3600, 60 * 24 * 366)
    edge = draw(st.sampled_from(EDGES))
    # Near a data edge, so that windows cross it (or lie wholly outside the data).
    start = edge + timedelta(minutes=draw(st.integers(-max_minutes, max_minutes // 2)))
    if draw(st.booleans()):
        start = parse_interval(interval).floor(start)  # aligned on the grid
    span = timedelta(minutes=draw(st.integers(1, max_minutes)))
    end = start + span
    if draw(st.booleans()):
        end = parse_interval(interval).ceil(end)
    buckets = buckets_in(start, end, parse_interval(interval))
    # Page sizes from tiny to the maximum, but never more than ~40 pages per query.
    page_size = draw(
        st.one_of(
            st.integers(1, 1000),
            st.sampled_from([24, 96, 100, 119, 137, 500, 1000]),
        ).filter(lambda n: buckets / n <= 40)
    )
    return Window(
        asset=draw(st.sampled_from(["btc", "eth", "ltc"])),
        start=start,
        end=end,
        interval=interval,
        sort=draw(st.sampled_from(["asc", "desc"])),
        page_size=page_size,
        stream_window=draw(st.integers(1, 4)),
    )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
    derandomize=True,
)
@given(w=windows())
async def test_fetch_and_stream_equal_one_unsharded_query(server: Server, w: Window) -> None:
    expected, reference_requests = await reference(
        server.emu.base_url, w.asset, w.start, w.end, w.interval, w.sort, w.page_size
    )
    async with client_for(server.emu) as client:
        fetched = await client.fetch(
            w.asset, w.start, w.end, interval=w.interval, sort=w.sort, page_size=w.page_size
        )
        fetch_requests = client.stats.requests
        streamed = [
            row
            async for row in client.stream(
                w.asset,
                w.start,
                w.end,
                interval=w.interval,
                sort=w.sort,
                page_size=w.page_size,
                window=w.stream_window,
            )
        ]
        shards = client.plan(w.asset, w.start, w.end, interval=w.interval, page_size=w.page_size)
    assert fetched == expected
    assert streamed == expected
    # And both equal the generator itself (the reference can't be wrong in the same way).
    truth = rows_for(w.asset, w.start, w.end, w.interval)
    assert expected == (truth if w.sort == "asc" else truth[::-1])

    # Requests: exactly one chain of pages per shard, each as long as the server makes it.
    per_shard = [
        server.pages_for(len(rows_for(w.asset, s.start, s.end, w.interval)), w.page_size)
        for s in shards
    ]
    assert fetch_requests == sum(per_shard)
    assert client.stats.requests == 2 * sum(per_shard)
    grid = parse_interval(w.interval)
    buckets = buckets_in(w.start, w.end, grid)
    if server.name == "plain" and w.page_size >= 100:
        # About the minimum: shards are sized so their pages are >= 95 % full, and the
        # caller's start only shifts them by less than one unit of the grid.
        assert fetch_requests <= 1.1 * math.ceil(buckets / w.page_size) + 1
    if server.name == "page_cap" and w.page_size >= 100:
        # The server serves 37 rows whatever we ask: a single query needs
        # ceil(buckets / 37) pages, and each extra shard can add at most one part page.
        assert fetch_requests <= math.ceil(buckets / PAGE_CAP) + len(shards) - 1
    assert reference_requests >= 1


# -- the same property on hand-picked edges ---------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "interval", "page_size"),
    [
        # The seed's own request, every page of it.
        ("2025-01-31T09:00:01Z", "2025-02-27T23:59:59Z", "1h", 2),
        # Across the data start and the data end, unaligned.
        ("2025-01-05T07:31:00Z", "2025-01-12T03:00:00Z", "1h", 100),
        ("2026-10-20T13:13:13Z", "2026-11-03T00:00:00Z", "5h", 7),
        # Wholly before / after the data.
        ("2024-12-01T00:00:00Z", "2024-12-09T00:00:00Z", "1h", 1000),
        ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "1d", 10),
        # An interval that does not divide a day, on the epoch grid.
        ("2025-03-01T00:00:00Z", "2025-05-01T00:00:00Z", "7h", 119),
        ("2025-01-08T00:00:00Z", "2026-01-08T00:00:00Z", "1d", 100),
        ("2025-06-01T00:00:00Z", "2025-06-01T00:00:01Z", "24h", 1),
    ],
)
@pytest.mark.parametrize("sort", ["asc", "desc"])
async def test_edges_equal_one_unsharded_query(
    server: Server, start: str, end: str, interval: str, page_size: int, sort: str
) -> None:
    lo = datetime.fromisoformat(start.replace("Z", "+00:00"))
    hi = datetime.fromisoformat(end.replace("Z", "+00:00"))
    expected, _ = await reference(server.emu.base_url, "eth", lo, hi, interval, sort, page_size)
    async with client_for(server.emu) as client:
        kwargs: dict[str, Any] = {"interval": interval, "sort": sort, "page_size": page_size}
        assert await client.fetch("eth", start, end, **kwargs) == expected
        assert [r async for r in client.stream("eth", start, end, **kwargs)] == expected


async def test_the_default_page_size_is_the_maximum(emulator: RunningEmulator) -> None:
    async with client_for(emulator) as client:
        rows = await client.fetch("btc", "2025-02-01", "2025-03-01", sort="asc")
        # 28 days of hours fits one page of 1000: one shard, one request.
        assert client.stats.requests == 1
    assert rows == rows_for("btc", "2025-02-01", "2025-03-01")


async def test_a_two_year_hourly_fetch_costs_about_the_minimum(emulator: RunningEmulator) -> None:
    start, end = "2025-01-08", "2026-11-01"
    async with client_for(emulator, max_concurrency=16) as client:
        rows = await client.fetch("btc", start, end)
        requests = client.stats.requests
    buckets = buckets_in(
        datetime(2025, 1, 8, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), parse_interval("1h")
    )
    assert len(rows) == len(rows_for("btc", start, end))
    assert requests <= 1.1 * math.ceil(buckets / 1000) + 1


# -- stream memory bound ----------------------------------------------------------------


@pytest.mark.parametrize("window", [1, 3, 8])
async def test_a_slow_stream_consumer_holds_at_most_window_shards(
    emulator: RunningEmulator, window: int
) -> None:
    # Two years of 1-day shards (page_size=24: one full page each), zero latency: a
    # producer that ignored the window would fetch hundreds of shards in these sleeps.
    async with client_for(emulator, max_concurrency=16) as client:
        stream = client.stream(
            "btc", "2025-01-08", "2027-01-08", sort="asc", page_size=24, window=window
        )
        async with stream as rows:
            iterator = aiter(rows)
            first = await anext(iterator)
            await asyncio.sleep(0.2)
            # Shard 0 was handed over (its permit returned): window more may be in.
            assert client.stats.requests <= window + 1
            assert emulator.stats.total_requests == client.stats.requests
            for _ in range(24):  # the rest of shard 0, and the first row of shard 1
                await anext(iterator)
            await asyncio.sleep(0.2)
            assert client.stats.requests <= window + 2
        assert first.interval_time == datetime(2025, 1, 8, tzinfo=UTC)
        asked = client.stats.requests
        await asyncio.sleep(0.05)
        assert client.stats.requests == asked


async def test_stream_rows_arrive_before_the_whole_range_is_fetched(
    make_emulator: MakeEmulator,
) -> None:
    emu = await make_emulator(latency=0.02)
    async with client_for(emu, max_concurrency=4) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with client.stream(
            "eth", "2025-01-08", "2026-01-08", sort="desc", page_size=24, window=4
        ) as rows:
            first = await anext(aiter(rows))
        elapsed = loop.time() - started
    # The newest row first, after about one round trip, not after 365 of them.
    assert first.interval_time == rows_for("eth", "2026-01-07", "2026-01-08")[-1].interval_time
    assert elapsed < 1.0
    assert emu.stats.total_requests <= 4 + 1


async def test_shards_are_fetched_concurrently_up_to_max_concurrency(
    make_emulator: MakeEmulator,
) -> None:
    emu = await make_emulator(latency=0.05)
    async with client_for(emu, max_concurrency=6) as client:
        await client.fetch("eth", "2025-02-01", "2025-03-01", page_size=24)
    assert emu.stats.total_requests == 28
    assert emu.stats.peak_concurrency == 6


async def test_on_shard_reports_each_planned_shard_once(emulator: RunningEmulator) -> None:
    async with LiquidationClient(base_url=emulator.base_url, rate_limit=1000) as client:
        plan = client.plan("eth", "2025-02-01", "2025-03-01", page_size=24)
        seen: list[Any] = []
        rows = await client.fetch(
            "eth", "2025-02-01", "2025-03-01", page_size=24, on_shard=seen.append
        )
    assert sorted(seen) == plan and len(plan) == 28
    assert len(rows) == len(rows_for("eth", "2025-02-01", "2025-03-01"))
