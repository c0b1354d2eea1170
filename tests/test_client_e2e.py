"""The client end to end against the real emulator over loopback.

The central property: for any window, interval, sort and page size, ``fetch`` and
``stream`` return exactly what ONE unsharded query paged to its end returns. That
reference is written here as a plain aiohttp loop (one GET with the parameters, then the
cursor until an answer has neither ``next_url`` nor ``continuation_token``), so it shares
no code with the client beyond row decoding. It runs against servers that page by rows
and by time (where quiet stretches give short and empty pages that still have a
``next_url``), that cap their pages, and whose last ``next_url`` leads to an empty page,
with the sparse asset among the assets.
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
from kaiko_liq.emulator import SPARSE_ASSET, RunningEmulator, rows_for
from kaiko_liq.models import LiquidationRow, decode_rows
from kaiko_liq.plan import buckets_in
from kaiko_liq.query import DATA_START, parse_interval
from tests.conftest import FIXED_NOW

MakeEmulator = Callable[..., Awaitable[RunningEmulator]]
PATH = "/v2/data/liquidation.v1/token/{asset}"
KEY = "e2e-key"
INTERVALS = [f"{n}h" for n in range(1, 25)] + ["1d"]
PAGE_CAP = 37


@dataclass(frozen=True, slots=True)
class Server:
    """One emulator variant."""

    name: str
    emu: RunningEmulator
    paging: str
    page_cap: int | None


VARIANTS: dict[str, dict[str, Any]] = {
    "rows": {},
    "rows-page_cap": {"page_cap": PAGE_CAP},
    "rows-empty_last_page": {"empty_last_page": True},
    "time": {"paging": "time"},
    "time-page_cap": {"paging": "time", "page_cap": PAGE_CAP},
    "time-empty_last_page": {"paging": "time", "empty_last_page": True},
}


@pytest.fixture(params=list(VARIANTS))
async def server(request: pytest.FixtureRequest, make_emulator: MakeEmulator) -> Server:
    config = VARIANTS[request.param]
    emu = await make_emulator(**config)
    return Server(request.param, emu, config.get("paging", "rows"), config.get("page_cap"))


def iso_ms(t: datetime) -> str:
    """The reference's own time format: milliseconds, start floored and end ceiled
    like the client's, written independently of it."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def ceil_ms(t: datetime) -> datetime:
    extra = t.microsecond % 1000
    return t if not extra else t + timedelta(microseconds=1000 - extra)


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
        "start_time": iso_ms(start),
        "end_time": iso_ms(ceil_ms(end)),
        "page_size": str(page_size),
    }
    data: list[Any] = []
    requests = 0
    first = base_url + PATH.format(asset=asset)
    async with aiohttp.ClientSession(headers={"X-Api-Key": KEY}) as session:
        url: str | None = first
        query: dict[str, str] | None = params
        while url is not None:
            async with session.get(url, params=query) as response:
                assert response.status == 200, await response.text()
                body = await response.json()
            requests += 1
            assert requests < 10_000, "the reference itself must end"
            data.extend(body["data"])
            token = body.get("continuation_token")
            url, query = body.get("next_url"), None
            if not url and token:
                url, query = first, {"continuation_token": token}
    return decode_rows(json.dumps(data).encode()), requests


def client_for(emu: RunningEmulator, **kwargs: Any) -> LiquidationClient:
    kwargs.setdefault("rate_limit", 10_000)
    kwargs.setdefault("max_concurrency", 8)
    return LiquidationClient(api_key=KEY, base_url=emu.base_url, **kwargs)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def truth(asset: str, start: datetime, end: datetime, interval: str) -> list[LiquidationRow]:
    return rows_for(asset, start, end, interval, now=FIXED_NOW)


# -- windows --------------------------------------------------------------------------

EDGES = [DATA_START, FIXED_NOW, datetime(2025, 9, 1, tzinfo=UTC)]


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
    elif draw(st.booleans()):
        start += timedelta(microseconds=draw(st.integers(1, 999_999)))  # below the ms
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
        asset=draw(st.sampled_from(["btc", "eth", "ltc", SPARSE_ASSET, SPARSE_ASSET])),
        start=start,
        end=end,
        interval=interval,
        sort=draw(st.sampled_from(["asc", "desc"])),
        page_size=page_size,
        stream_window=draw(st.integers(1, 4)),
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
    derandomize=True,
)
@given(w=windows())
async def test_fetch_and_stream_equal_one_unsharded_query(server: Server, w: Window) -> None:
    base = server.emu.base_url
    expected, reference_requests = await reference(
        base, w.asset, w.start, w.end, w.interval, w.sort, w.page_size
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
    rows = truth(w.asset, w.start, w.end, w.interval)
    assert expected == (rows if w.sort == "asc" else rows[::-1])

    # Requests: exactly one chain of pages per shard, as long as the server makes it
    # (the reference loop over the shard alone says how long that is).
    per_shard = [
        (await reference(base, w.asset, s.start, s.end, w.interval, w.sort, w.page_size))[1]
        for s in shards
    ]
    assert fetch_requests == sum(per_shard)
    assert client.stats.requests == 2 * sum(per_shard)
    grid = parse_interval(w.interval)
    buckets = buckets_in(w.start, w.end, grid)
    if server.name == "rows" and w.page_size >= 100:
        # About the minimum: shards are sized so their pages are >= 95 % full, and the
        # caller's start only shifts them by less than one unit of the grid.
        assert fetch_requests <= 1.1 * math.ceil(buckets / w.page_size) + 1
    if server.name in ("rows-page_cap", "time-page_cap") and w.page_size >= 100:
        # The server serves 37 rows (or buckets) whatever we ask: a single query needs
        # ceil(buckets / 37) pages, and each extra shard can add at most one part page.
        assert fetch_requests <= math.ceil(buckets / PAGE_CAP) + len(shards) - 1
    assert reference_requests >= 1


# -- the same property on hand-picked edges ---------------------------------------------


async def check_edge(
    server: Server, asset: str, start: str, end: str, interval: str, page_size: int, sort: str
) -> None:
    lo = datetime.fromisoformat(start.replace("Z", "+00:00"))
    hi = datetime.fromisoformat(end.replace("Z", "+00:00"))
    expected, _ = await reference(server.emu.base_url, asset, lo, hi, interval, sort, page_size)
    async with client_for(server.emu) as client:
        kwargs: dict[str, Any] = {"interval": interval, "sort": sort, "page_size": page_size}
        assert await client.fetch(asset, start, end, **kwargs) == expected
        assert [r async for r in client.stream(asset, start, end, **kwargs)] == expected
    rows = truth(asset, lo, hi, interval)
    assert expected == (rows if sort == "asc" else rows[::-1])


# A page cap of 37 changes nothing at page_size 2: those variants would repeat these.
@pytest.mark.parametrize("variant", [v for v in VARIANTS if "page_cap" not in v])
async def test_the_seeds_own_request_every_page_of_it(
    make_emulator: MakeEmulator, variant: str
) -> None:
    config = VARIANTS[variant]
    server = Server(variant, await make_emulator(**config), config.get("paging", "rows"), None)
    # page_size=2 as in the doc's example: 334 pages, in the example's order (desc).
    await check_edge(server, "eth", "2025-01-31T09:00:01Z", "2025-02-27T23:59:59Z", "1h", 2, "desc")


@pytest.mark.parametrize(
    ("start", "end", "interval", "page_size"),
    [
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
        # Tiny pages over the sparse asset's quiet days: many empty pages in a row.
        ("2025-03-01T00:00:00Z", "2025-03-21T00:00:00Z", "1h", 5),
    ],
)
@pytest.mark.parametrize("sort", ["asc", "desc"])
async def test_edges_equal_one_unsharded_query(
    server: Server, start: str, end: str, interval: str, page_size: int, sort: str
) -> None:
    # The sparse asset where it matters most: time paging, whose pages its quiet days empty.
    for asset in ("eth", SPARSE_ASSET) if server.paging == "time" else ("eth",):
        await check_edge(server, asset, start, end, interval, page_size, sort)


async def test_the_default_page_size_is_the_maximum(emulator: RunningEmulator) -> None:
    async with client_for(emulator) as client:
        rows = await client.fetch("btc", "2025-02-01", "2025-03-01", sort="asc")
        # 28 days of hours fits one page of 1000: one shard, one request.
        assert client.stats.requests == 1
    assert rows == truth("btc", t("2025-02-01"), t("2025-03-01"), "1h")


async def test_a_two_year_hourly_fetch_costs_about_the_minimum(emulator: RunningEmulator) -> None:
    start, end = "2025-01-08", "2026-11-01"
    async with client_for(emulator, max_concurrency=16) as client:
        rows = await client.fetch("btc", start, end)
        requests = client.stats.requests
    buckets = buckets_in(
        datetime(2025, 1, 8, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), parse_interval("1h")
    )
    assert len(rows) == len(truth("btc", t(start), t(end), "1h"))
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
    newest = truth("eth", t("2026-01-07"), t("2026-01-08"), "1h")[-1]
    assert first.interval_time == newest.interval_time
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
    assert len(rows) == len(truth("eth", t("2025-02-01"), t("2025-03-01"), "1h"))
