"""Settled means final: a store keeps only what the server will not change, judged on the
server's clock as well as ours, and re-checks its newest buckets (issue 16).

Each test runs the real emulator whose clock and settle delay change between runs, then
checks that the cache, a backfill or a follow equals the truth (a plain fetch of the
caught-up server)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.lowlevel
import pytest

from kaiko_liq import LiquidationClient, LiquidationRow
from kaiko_liq.backfill import backfill, read_backfill, shard_filename
from kaiko_liq.emulator import EmulatorConfig, RunningEmulator, running_emulator
from kaiko_liq.errors import InvalidArgumentError
from kaiko_liq.export import to_arrow
from kaiko_liq.live import Revision
from tests.conftest import FIXED_NOW
from tests.stores import tok, token_cache, token_store

H = timedelta(hours=1)
T = FIXED_NOW.replace(minute=10, second=0, microsecond=0)
START, END = T - 30 * H, T


class Clock:
    """A clock a test moves between runs."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def truth(settle: int = 3600, now: datetime = T, end: datetime = END) -> list[LiquidationRow]:
    config = EmulatorConfig(now=now, settle_seconds=settle)
    async with running_emulator(config) as emu, LiquidationClient(base_url=emu.base_url) as c:
        return await c.fetch("btc", START, end, sort="asc")


async def cached_fetch(
    server: Callable[[], datetime] | datetime,
    client_now: datetime,
    cache: Path,
    *,
    settle: int = 3600,
) -> list[LiquidationRow]:
    config = EmulatorConfig(now=server, settle_seconds=settle)
    async with (
        running_emulator(config) as emu,
        LiquidationClient(
            base_url=emu.base_url, cache_dir=cache, now=lambda: client_now, cache_namespace="e"
        ) as client,
    ):
        return await client.fetch("btc", START, END, sort="asc")


def stored(cache: Path) -> list[LiquidationRow]:
    store = token_cache(cache, "http://127.0.0.1:1", "1h", namespace="e")
    lo = store.covered(tok("btc"))
    return [r for a, b in lo for r in store.read_rows(tok("btc"), a, b)]


async def test_a_server_clock_six_hours_behind_stores_nothing_it_may_still_change(
    tmp_path: Path,
) -> None:
    server = Clock(T - 6 * H)
    await cached_fetch(server, T, tmp_path)
    # Nothing the server's clock says may still change was stored as final.
    assert all(r.interval_time < T - 7 * H for r in stored(tmp_path))
    server.now = T  # caught up
    assert await cached_fetch(server, T, tmp_path) == await truth()
    assert stored(tmp_path) == [r for r in await truth() if r.interval_time < T - 2 * H]


async def test_a_server_settling_three_hours_late_is_caught_by_the_recheck(
    tmp_path: Path,
) -> None:
    late = await cached_fetch(T, T, tmp_path, settle=4 * 3600)
    assert late != await truth()  # figures stored while still growing
    # The server settles: the next run re-fetches the newest stored day and replaces it.
    assert await cached_fetch(T, T, tmp_path) == await truth()
    assert stored(tmp_path) == [r for r in await truth() if r.interval_time < T - 2 * H]


async def test_a_client_clock_two_minutes_fast_keeps_no_partial_bucket(tmp_path: Path) -> None:
    edge = T.replace(minute=0) + H + timedelta(seconds=10)  # the 1h settle just passed for us
    await cached_fetch(edge, edge + timedelta(minutes=2), tmp_path)
    later = edge + 3 * H
    assert await cached_fetch(later, later, tmp_path) == await truth(now=later)
    assert stored(tmp_path) == [
        r for r in await truth(now=later) if r.interval_time < later.replace(minute=0) - 2 * H
    ]


async def test_settled_before_is_the_earlier_clock(tmp_path: Path) -> None:
    async with (
        running_emulator(EmulatorConfig(now=T - 6 * H)) as emu,
        LiquidationClient(base_url=emu.base_url, now=lambda: T) as client,
    ):
        assert client.settled_before("1h") == (T - H).replace(minute=0)
        await client.fetch("btc", START, END)
        assert client.settled_before("1h") == (T - 7 * H).replace(minute=0)


def test_two_path_prefixes_on_one_origin_are_two_stores(tmp_path: Path) -> None:
    a = token_cache(tmp_path, "http://127.0.0.1:9000/a", "1h")
    b = token_cache(tmp_path, "http://127.0.0.1:9000/b", "1h")
    root = token_cache(tmp_path, "http://127.0.0.1:9000", "1h")
    assert len({a.location, b.location, root.location}) == 3


async def test_cache_on_a_backfill_directory_uses_it_and_readers_see_each_bucket_once(
    tmp_path: Path,
) -> None:
    async with running_emulator(EmulatorConfig(now=T)) as emu:
        async with LiquidationClient(base_url=emu.base_url, now=lambda: T) as client:
            await backfill(client, ["btc"], START, T - 10 * H, tmp_path, now=T)
        async with LiquidationClient(
            base_url=emu.base_url, cache_dir=tmp_path, now=lambda: T
        ) as client:
            rows = await client.fetch("btc", START, END, sort="asc")
    n = len([r for r in rows if r.interval_time < T - 2 * H])
    assert read_backfill(tmp_path).num_rows == n
    pd = pytest.importorskip("pandas")
    assert len(pd.read_parquet(tmp_path)) == n
    pl = pytest.importorskip("polars")
    assert pl.read_parquet(str(tmp_path / "asset=*" / "*.parquet")).height == n
    duckdb = pytest.importorskip("duckdb")
    query = f"select count(*) from read_parquet('{tmp_path}/asset=*/*.parquet')"
    assert duckdb.sql(query).fetchall() == [(n,)]


def test_a_foreign_manifest_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    manifest = tmp_path / "_manifest.json"
    manifest.write_text('{"name": "someone else"}')
    with pytest.raises(InvalidArgumentError, match="not a kaiko-liq manifest"):
        token_cache(tmp_path, "http://127.0.0.1:1", "1h")
    assert manifest.read_text() == '{"name": "someone else"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_manifest.json"]


async def test_a_stray_readable_copy_is_moved_aside(tmp_path: Path) -> None:
    store = token_store(tmp_path, "1h")
    rows = await truth()
    store.write(tok("btc"), START, T - 10 * H, [r for r in rows if r.interval_time < T - 10 * H])
    [shard] = store.shards(tok("btc"))
    copy = Path(shard.url).with_name("copy.parquet")
    copy.write_bytes(Path(shard.url).read_bytes())  # noqa: ASYNC240
    assert len(token_store(tmp_path, "1h").shards(tok("btc"))) == 1
    assert not copy.exists()
    assert any(p.name.startswith(".copy.parquet.damaged-") for p in copy.parent.iterdir())


async def test_read_backfill_refuses_overlapping_files(tmp_path: Path) -> None:
    store = token_store(tmp_path, "1h")
    rows = [r for r in await truth() if r.interval_time < START + 5 * H]
    [shard] = store.write(tok("btc"), START, START + 5 * H, rows)
    twin = Path(shard.url).with_name(shard_filename(START + 2 * H, START + 7 * H))
    twin.write_bytes(Path(shard.url).read_bytes())  # noqa: ASYNC240
    with pytest.raises(InvalidArgumentError, match="hold the same buckets"):
        read_backfill(tmp_path)


def test_the_cli_says_which_buckets_are_not_final(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kaiko_liq.cli import main

    out = tmp_path / "rows.csv"
    start = (datetime.now(UTC) - 6 * H).strftime("%Y-%m-%dT%H:00:00Z")
    argv = ["fetch", "btc", "--start", start, "--end", "2099-01-01", "-o", str(out)]
    code = main([*argv, "--emulator", "--settle", "2h"])
    assert code == 0
    assert "not final yet (they may still change)" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--cache", "--out"])
def test_an_empty_directory_argument_is_refused(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from kaiko_liq.cli import main

    command = "backfill" if flag == "--out" else "fetch"
    window = ["--start", "2025-02-01", "--end", "2025-02-02"]
    assert main([command, "btc", *window, flag, "", "--emulator"]) == 2
    assert "must name a directory" in capsys.readouterr().err


# -- backfill: the same three servers ---------------------------------------------------


async def backfilled(
    server: Callable[[], datetime] | datetime,
    client_now: datetime,
    out: Path,
    *,
    settle: int = 3600,
) -> tuple[str, ...]:
    """One ``backfill`` run of ``[START, END)`` into ``out``; its warnings. (The
    namespace names the server: the emulator's port changes from run to run.)"""
    config = EmulatorConfig(now=server, settle_seconds=settle)
    async with (
        running_emulator(config) as emu,
        LiquidationClient(
            base_url=emu.base_url, now=lambda: client_now, cache_namespace="e"
        ) as client,
    ):
        summary = await backfill(client, ["btc"], START, END, out, now=client_now)
    return summary.warnings


def on_disk(out: Path) -> list[dict[str, Any]]:
    return read_backfill(out, shape="nested").to_pylist()


def as_stored(rows: list[LiquidationRow], before: datetime) -> list[dict[str, Any]]:
    """``rows`` before ``before`` as the dataset holds them."""
    kept = [r for r in rows if r.interval_time < before]
    return to_arrow(kept, "btc", shape="nested").to_pylist()


async def test_backfill_from_a_server_clock_six_hours_behind_then_caught_up(
    tmp_path: Path,
) -> None:
    server = Clock(T - 6 * H)
    await backfilled(server, T, tmp_path)
    # Only what the server's own clock called settled is on disk; the rest is left.
    assert on_disk(tmp_path) == as_stored(await truth(), (T - 7 * H).replace(minute=0))
    server.now = T
    await backfilled(server, T, tmp_path)
    assert on_disk(tmp_path) == as_stored(await truth(), T - 2 * H)


async def test_backfill_from_a_server_settling_three_hours_late_is_revised(
    tmp_path: Path,
) -> None:
    await backfilled(T, T, tmp_path, settle=4 * 3600)
    assert on_disk(tmp_path) != as_stored(await truth(), T - 2 * H)  # stored still growing
    warnings = await backfilled(T, T, tmp_path)
    assert on_disk(tmp_path) == as_stored(await truth(), T - 2 * H)
    assert any("revised by the server" in w for w in warnings)


async def test_backfill_with_a_client_clock_two_minutes_fast_keeps_no_partial_bucket(
    tmp_path: Path,
) -> None:
    edge = T.replace(minute=0) + H + timedelta(seconds=10)  # the 1h settle just passed for us
    await backfilled(edge, edge + timedelta(minutes=2), tmp_path)
    later = edge + 3 * H
    await backfilled(later, later, tmp_path)
    assert on_disk(tmp_path) == as_stored(await truth(now=later), later.replace(minute=0) - 2 * H)


async def test_a_backfill_recheck_against_a_server_fallen_behind_changes_nothing_stored(
    tmp_path: Path,
) -> None:
    await backfilled(T, T, tmp_path)  # an on-time server fills the dataset
    before = on_disk(tmp_path)
    assert before[-1]["interval_time"] >= T - 3 * H
    # The same dataset, the server's clock (its aggregation) now six hours behind: its
    # answer for the newest stored hours is partial, and no revision.
    warnings = await backfilled(T - 6 * H, T, tmp_path)
    assert on_disk(tmp_path) == before
    assert not any("revised" in w for w in warnings)


# -- follow: the same three servers, one follow across the change ------------------------


class FakeClock(Clock):
    """The test's clock; the follow's sleeps move it, and ``at`` runs a change (a
    server catching up) once the clock reaches its time."""

    def __init__(self, now: datetime) -> None:
        super().__init__(now)
        self.changes: list[tuple[datetime, Callable[[], Any]]] = []
        self.sleeps: list[float] = []

    def at(self, when: datetime, change: Callable[[], Any]) -> None:
        self.changes.append((when, change))

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)
        due = [c for c in self.changes if c[0] <= self.now]
        self.changes = [c for c in self.changes if c[0] > self.now]
        for _, change in due:
            result = change()
            if result is not None:
                await result
        await anyio.lowlevel.checkpoint()


class Server:
    """The emulator on one port, restarted there with another config: the follow's
    client keeps its base URL, as with a real server redeployed."""

    def __init__(self) -> None:
        self._running: AbstractAsyncContextManager[RunningEmulator] | None = None
        self.base_url = ""

    async def start(self, config: EmulatorConfig) -> None:
        await self.stop()
        port = int(self.base_url.rsplit(":", 1)[1]) if self.base_url else 0
        self._running = running_emulator(config, port=port)
        self.base_url = (await self._running.__aenter__()).base_url

    async def stop(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            await running.__aexit__(None, None, None)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        await s.stop()


class Followed:
    """What a follow handed out, and the rows as its revisions left them."""

    def __init__(self) -> None:
        self.rows: list[LiquidationRow] = []
        self.revisions: list[Revision] = []
        self.view: dict[datetime, LiquidationRow] = {}

    async def on_revision(self, revision: Revision) -> None:  # a coroutine: awaited
        self.revisions.append(revision)
        assert self.view.get(revision.interval_time) == revision.previous
        if revision.row is None:
            del self.view[revision.interval_time]
        else:
            self.view[revision.interval_time] = revision.row


async def followed(
    server: Server, clock: FakeClock, until: datetime, *, ahead: timedelta = timedelta(0)
) -> tuple[Followed, datetime]:
    """Follow btc from START until the cursor reaches ``until``; the client's clock is
    ``ahead`` of the test's. What it handed out, and where it stopped."""
    got = Followed()
    async with LiquidationClient(base_url=server.base_url, now=lambda: clock.now + ahead) as client:
        follow = client.follow("btc", since=START, sleep=clock.sleep, on_revision=got.on_revision)
        async with follow:
            async for row in follow:
                got.rows.append(row)
                got.view[row.interval_time] = row
                if follow.cursor >= until:
                    break
        return got, follow.cursor


def assert_the_truth(got: Followed, want: list[LiquidationRow]) -> None:
    times = [r.interval_time for r in got.rows]
    assert times == sorted(set(times))  # the iterator never repeats a bucket
    assert sorted(got.view.values(), key=lambda r: r.interval_time) == want


async def test_follow_from_a_server_clock_six_hours_behind_then_caught_up(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T)
    lag = [6 * H]
    await server.start(EmulatorConfig(now=lambda: clock.now - lag[0]))
    clock.at(T + 2 * H, lambda: lag.__setitem__(0, timedelta(0)))
    caplog.set_level(logging.WARNING, logger="kaiko_liq")
    got, cursor = await followed(server, clock, T + 2 * H)
    # Held back to the server's clock: nothing partial handed out, so nothing revised.
    assert_the_truth(got, await truth(end=cursor, now=cursor + 2 * H))
    assert got.revisions == [] and got.rows == list(got.view.values())
    assert any("server's clock" in r.getMessage() for r in caplog.records)
    # While held back it asked again every hour (it might have caught up), no sooner.
    assert max(clock.sleeps) <= 3600 and min(clock.sleeps) >= 600


async def test_follow_from_a_server_settling_three_hours_late_reports_revisions(
    server: Server,
) -> None:
    clock = FakeClock(T)
    await server.start(EmulatorConfig(now=clock, settle_seconds=4 * 3600))

    async def caught_up() -> None:
        await server.start(EmulatorConfig(now=clock))

    clock.at(T + 2 * H, caught_up)
    got, cursor = await followed(server, clock, T + 3 * H)
    want = await truth(end=cursor, now=cursor + 2 * H)
    assert [r for r in got.rows if r.interval_time >= START] != want  # handed out growing
    assert got.revisions and all(r.previous is not None for r in got.revisions)
    assert_the_truth(got, want)


async def test_follow_without_on_revision_logs_revisions_and_never_repeats(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T)
    await server.start(EmulatorConfig(now=clock, settle_seconds=4 * 3600))

    async def caught_up() -> None:
        await server.start(EmulatorConfig(now=clock))

    clock.at(T + 2 * H, caught_up)
    caplog.set_level(logging.WARNING, logger="kaiko_liq")
    rows: list[LiquidationRow] = []
    async with LiquidationClient(base_url=server.base_url, now=clock) as client:
        follow = client.follow("btc", since=START, sleep=clock.sleep)
        async with follow:
            async for row in follow:
                rows.append(row)
                if follow.cursor >= T + 3 * H:
                    break
    times = [r.interval_time for r in rows]
    assert times == sorted(set(times))
    assert follow.revised > 0
    assert any("revised by the server after" in r.getMessage() for r in caplog.records)


async def test_follow_with_a_client_clock_two_minutes_fast_hands_out_no_partial_bucket(
    server: Server,
) -> None:
    edge = T.replace(minute=0) + timedelta(seconds=10)
    clock = FakeClock(edge)
    await server.start(EmulatorConfig(now=clock))
    got, cursor = await followed(server, clock, edge + 3 * H, ahead=timedelta(minutes=2))
    assert_the_truth(got, await truth(end=cursor, now=cursor + 2 * H))
    assert got.revisions == []
    # Once the server's clock is known, one poll a bucket, when it settles there.
    assert clock.sleeps[1:] == [3600.0] * (len(clock.sleeps) - 1)


# -- a server that falls behind after it was on time ------------------------------------


async def test_a_recheck_against_a_server_fallen_behind_changes_nothing_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await cached_fetch(T, T, tmp_path)  # an on-time server fills the cache
    before = stored(tmp_path)
    assert before[-1].interval_time >= T - 3 * H
    caplog.set_level(logging.WARNING, logger="kaiko_liq")
    # The same cache, the server's clock (its aggregation) now six hours behind: its
    # answer for the newest stored hours is partial, and no revision.
    await cached_fetch(T - 6 * H, T, tmp_path)
    assert stored(tmp_path) == before
    assert not any("revised" in r.getMessage() for r in caplog.records)


async def test_follow_reports_no_revision_when_the_server_falls_behind(server: Server) -> None:
    clock = FakeClock(T)
    lag = [timedelta(0)]
    await server.start(EmulatorConfig(now=lambda: clock.now - lag[0]))
    clock.at(T + 2 * H, lambda: lag.__setitem__(0, 6 * H))  # falls behind
    clock.at(T + 5 * H, lambda: lag.__setitem__(0, timedelta(0)))  # and catches up
    got, cursor = await followed(server, clock, T + 7 * H)
    # The hours it answered for while behind were not final on its clock: no revision.
    assert got.revisions == []
    assert_the_truth(got, await truth(end=cursor, now=cursor + 2 * H))


@pytest.mark.parametrize(
    ("command", "flags", "said"),
    [
        (["fetch", "btc"], ["--recheck", "2h"], "--recheck goes with --cache"),
        (["plot", "btc"], ["-o", "p.png", "--recheck", "2h"], "--recheck goes with --cache"),
        (
            ["events", "binc:future:btc-usd"],
            ["-o", "e.csv", "--recheck", "0"],
            "--recheck goes with --cache",
        ),
        (
            ["events", "binc:future:btc-usd"],
            ["--out", "ds", "--cache", "c"],
            "--cache goes with -o; a dataset (--out) is its own store",
        ),
    ],
)
def test_a_store_setting_without_a_store_is_refused(
    command: list[str], flags: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from kaiko_liq.cli import main

    window = ["--start", "2025-02-01", "--end", "2025-02-02"]
    assert main([*command, *window, *flags, "--emulator"]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1
