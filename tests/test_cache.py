"""The cache: settled buckets from a local store, the rest fetched, answers unchanged.

Against the emulator on the fixed clock (``FIXED_NOW``), the client on the same clock,
so the settled horizon (an hour before the last closed bucket) lies inside the data and
windows can straddle it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiko_liq import LiquidationClient, LiquidationRow
from kaiko_liq.emulator import RunningEmulator
from kaiko_liq.query import parse_interval
from kaiko_liq.settle import settled_horizon
from tests.conftest import FIXED_NOW, EmulatorFactory
from tests.stores import tok, token_cache

REPO = Path(__file__).resolve().parents[1]
HORIZON = settled_horizon(parse_interval("1h"), FIXED_NOW)


def cached(emu: RunningEmulator, cache_dir: str | os.PathLike[str]) -> LiquidationClient:
    # No recheck: these tests count what gaps cost (tests/test_settled.py has the recheck).
    return LiquidationClient(
        base_url=emu.base_url, cache_dir=cache_dir, now=lambda: FIXED_NOW, recheck="0"
    )


def plain(emu: RunningEmulator) -> LiquidationClient:
    return LiquidationClient(base_url=emu.base_url, now=lambda: FIXED_NOW)


@dataclass(frozen=True)
class Query:
    asset: str
    start: datetime
    end: datetime
    interval: str
    sort: str
    page_size: int


@st.composite
def queries(draw: st.DrawFn, asset: str, interval: str) -> Query:
    seconds = parse_interval(interval).seconds
    reach = 24 * 60 * 20 * seconds // 3600  # minutes: 20 days hourly, more when coarser
    # Anywhere from well inside the settled past to past the end of the data.
    start = HORIZON + timedelta(minutes=draw(st.integers(-2 * reach, 60 * 24)))
    end = start + timedelta(minutes=draw(st.integers(1, reach)))
    buckets = (end - start).total_seconds() / seconds + 2
    size = draw(st.sampled_from([7, 24, 100, 137, 1000]).filter(lambda n: buckets / n <= 30))
    return Query(asset, start, end, interval, draw(st.sampled_from(["asc", "desc"])), size)


async def answers(client: LiquidationClient, q: Query) -> tuple[list[LiquidationRow], ...]:
    options = {"interval": q.interval, "sort": q.sort, "page_size": q.page_size}
    fetched = await client.fetch(q.asset, q.start, q.end, **options)  # type: ignore[arg-type]
    streamed = [r async for r in client.stream(q.asset, q.start, q.end, **options)]  # type: ignore[arg-type]
    return fetched, streamed


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(data=st.data())
async def test_cached_answers_equal_uncached_ones(
    emulator: RunningEmulator, data: st.DataObject
) -> None:
    asset = data.draw(st.sampled_from(["btc", "eth", "pepe"]))
    interval = data.draw(st.sampled_from(["1h", "4h", "1d"]))
    # Several overlapping queries into one cache: later ones find parts of it filled.
    sequence = data.draw(st.lists(queries(asset, interval), min_size=2, max_size=4))
    with tempfile.TemporaryDirectory() as cache_dir:
        async with cached(emulator, cache_dir) as with_cache, plain(emulator) as without:
            for q in sequence:
                want, _ = await answers(without, q)
                fetched, streamed = await answers(with_cache, q)
                assert fetched == want
                assert streamed == want


async def test_a_repeat_costs_no_request_whatever_the_sort_and_page_size(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    async with cached(emulator, tmp_path) as client:
        first = await client.fetch("eth", "2025-03-01", "2025-06-01", sort="asc")
        assert client.stats.requests > 0
        requests = client.stats.requests
        again = await client.fetch("eth", "2025-03-01", "2025-06-01", sort="asc")
        backwards = await client.fetch("eth", "2025-03-01", "2025-06-01", page_size=10)
        inside = await client.fetch("eth", "2025-04-01T10:30:00Z", "2025-04-03", sort="asc")
        streamed = [r async for r in client.stream("eth", "2025-03-01", "2025-06-01")]
        assert client.stats.requests == requests
    assert again == first and backwards == first[::-1] and streamed == first[::-1]
    assert inside == [
        r for r in first if "2025-04-01T10" <= r.interval_time.isoformat() < "2025-04-03"
    ]
    # A new client on the same directory: still no request.
    async with cached(emulator, tmp_path) as client:
        assert await client.fetch("eth", "2025-03-01", "2025-06-01", sort="asc") == first
        assert client.stats.requests == 0


async def test_a_wider_window_fetches_only_the_new_part(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    async with cached(emulator, tmp_path) as client:
        await client.fetch("btc", "2025-04-10", "2025-05-20")
        before = client.stats.requests
        wide = await client.fetch("btc", "2025-02-01", "2025-07-01")
        spent = client.stats.requests - before
    async with plain(emulator) as reference:
        assert wide == await reference.fetch("btc", "2025-02-01", "2025-07-01")
        requests0 = reference.stats.requests
        await reference.fetch("btc", "2025-02-01", "2025-04-10")
        await reference.fetch("btc", "2025-05-20", "2025-07-01")
        new_part = reference.stats.requests - requests0
    assert spent == new_part == 4  # 1632 and 1008 hours: two pages each


async def test_unsettled_buckets_are_always_fetched_and_never_stored(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    start, end = HORIZON - timedelta(days=3), FIXED_NOW
    async with cached(emulator, tmp_path) as client:
        first = await client.fetch("sol", start, end, sort="asc")
        assert first[-1].interval_time >= HORIZON  # the unsettled hour is in the answer
        before = client.stats.requests
        assert await client.fetch("sol", start, end, sort="asc") == first
        assert client.stats.requests - before == 1  # the unsettled tail, one page
    store = token_cache(tmp_path, emulator.base_url, "1h")
    assert store.covered(tok("sol")) == [(start, HORIZON)]


async def test_the_store_is_per_origin_and_interval(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    one, other = await make_emulator(seed=0), await make_emulator(seed=1)
    window = ("eth", "2025-03-01", "2025-03-10")
    async with cached(one, tmp_path) as client:
        from_one = await client.fetch(*window)
        four_hourly = await client.fetch(*window, interval="4h")
    async with cached(other, tmp_path) as client:
        from_other = await client.fetch(*window)
        assert client.stats.requests == 1  # nothing of the first origin's was used
    async with plain(other) as reference:
        assert from_other == await reference.fetch(*window)
    async with plain(one) as reference:
        assert four_hourly == await reference.fetch(*window, interval="4h")
    assert from_one != from_other


_FILLER = """
import asyncio, sys
from datetime import datetime, timezone
import msgspec
import pytest
from kaiko_liq import LiquidationClient

async def main(base_url, cache_dir, plan):
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    out = []
    import pyarrow.parquet  # imported before the start line, so both start together
    print("ready", flush=True)
    sys.stdin.readline()
    async with LiquidationClient(base_url=base_url, cache_dir=cache_dir, now=lambda: now) as c:
        for asset, start, end, size in msgspec.json.decode(plan):
            out.append(await c.fetch(asset, start, end, sort="asc", page_size=size))
    sys.stdout.buffer.write(msgspec.json.encode(out))

asyncio.run(main(*sys.argv[1:]))
"""


async def test_two_processes_filling_one_cache_at_once_stay_correct(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await make_emulator(latency=0.002)
    script = tmp_path / "filler.py"
    script.write_text(textwrap.dedent(_FILLER))
    cache_dir = tmp_path / "cache"
    # Overlapping windows at different page sizes: shard edges differ, so the two write
    # overlapping windows at the same moments.
    plans = [
        [["btc", "2025-02-01", "2025-03-15", 1000], ["eth", "2025-03-01", "2025-03-20", 100]],
        [["btc", "2025-01-20", "2025-03-01", 137], ["eth", "2025-02-25", "2025-03-10", 1000]],
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            emu.base_url,
            str(cache_dir),
            msgspec.json.encode(plan).decode(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        for plan in plans
    ]
    for proc in procs:  # both imported and waiting: then both go at once
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), timeout=60) == b"ready\n"
    outputs = await asyncio.gather(*(p.communicate(b"go\n") for p in procs))
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    async with plain(emu) as reference:
        for plan, (out, _) in zip(plans, outputs, strict=True):
            got = msgspec.json.decode(out, type=list[list[LiquidationRow]])
            for (asset, start, end, _size), rows in zip(plan, got, strict=True):
                assert rows == await reference.fetch(asset, start, end, sort="asc")
        union = {"btc": ("2025-01-20", "2025-03-15"), "eth": ("2025-02-25", "2025-03-20")}
        async with cached(emu, cache_dir) as client:
            for asset, (start, end) in union.items():
                assert await client.fetch(asset, start, end) == await reference.fetch(
                    asset, start, end
                )
            assert client.stats.requests == 0
    store = token_cache(cache_dir, emu.base_url, "1h")
    for asset in union:
        spans = [(s.start, s.end) for s in store.shards(tok(asset))]
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans


def _tear_data_pages(emu: RunningEmulator, cache_dir: Path, asset: str) -> None:
    """Zero the start of the asset's one file: data pages torn, footer intact, so only
    reading the rows finds out."""
    [shard] = token_cache(cache_dir, emu.base_url, "1h").shards(tok(asset))
    data = bytearray(Path(shard.url).read_bytes())
    data[8:2000] = bytes(1992)
    Path(shard.url).write_bytes(bytes(data))


async def test_a_damaged_stored_file_is_fetched_again(
    emulator: RunningEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with cached(emulator, tmp_path) as client:
        first = await client.fetch("ltc", "2025-03-01", "2025-04-01")
    _tear_data_pages(emulator, tmp_path, "ltc")
    async with cached(emulator, tmp_path) as client:
        assert await client.fetch("ltc", "2025-03-01", "2025-04-01") == first
        assert client.stats.requests == 1
    assert "fetched again" in caplog.text


async def test_a_damaged_stored_file_is_replaced(emulator: RunningEmulator, tmp_path: Path) -> None:
    async with cached(emulator, tmp_path) as client:
        first = await client.fetch("ltc", "2025-03-01", "2025-04-01")
    _tear_data_pages(emulator, tmp_path, "ltc")
    async with cached(emulator, tmp_path) as client:
        await client.fetch("ltc", "2025-03-01", "2025-04-01")
    async with cached(emulator, tmp_path) as client:  # healed: from the store again
        assert await client.fetch("ltc", "2025-03-01", "2025-04-01") == first
        assert client.stats.requests == 0


async def test_on_shard_reports_every_planned_shard_once_with_a_cache(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    seen: list[object] = []
    async with cached(emulator, tmp_path) as client:
        await client.fetch("btc", "2025-03-10", "2025-04-20")
        start, end = "2025-02-01T05:00:00Z", HORIZON + timedelta(hours=5)
        await client.fetch("btc", start, end, on_shard=seen.append)
        planned = client.plan("btc", start, end)
    assert sorted(seen) == planned and len(planned) > 10  # type: ignore[type-var]


async def test_a_client_clock_a_little_ahead_never_stores_a_bucket_still_filling(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    # The 10:00 bucket closes at 11:00 and is final at 12:00 on the server's clock; ours
    # runs 10 s ahead. Stored at 11:59:55 server time, it would stay short for ever.
    day = datetime(2026, 3, 2, tzinfo=FIXED_NOW.tzinfo)
    server_now = [day + timedelta(hours=11, minutes=59, seconds=55)]
    emu = await make_emulator(now=lambda: server_now[0])

    def client_now() -> datetime:
        return server_now[0] + timedelta(seconds=10)

    window = ("eth", day + timedelta(hours=10), day + timedelta(hours=11))
    async with LiquidationClient(base_url=emu.base_url, cache_dir=tmp_path, now=client_now) as c:
        early = await c.fetch(*window)
    server_now[0] += timedelta(hours=3)
    async with LiquidationClient(base_url=emu.base_url, now=client_now) as c:
        final = await c.fetch(*window)
    async with LiquidationClient(base_url=emu.base_url, cache_dir=tmp_path, now=client_now) as c:
        assert await c.fetch(*window) == final
    assert early != final  # the early answer really was a bucket still filling
