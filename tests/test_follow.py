"""client.follow: the settled past, then each bucket as it settles, over a simulated day.

The emulator and the client share one fake clock, and follow's sleeps advance it, so a
day passes in well under a second with no real sleep.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from aiohttp import web

from kaiko_liq import (
    AuthenticationError,
    ClientClosedError,
    LiquidationClient,
    LiquidationRow,
    NotFoundError,
)
from kaiko_liq.live import POLL_MARGIN, Follow, Revision
from kaiko_liq.query import parse_interval
from kaiko_liq.retry import RetryPolicy
from kaiko_liq.settle import SETTLE, settled_horizon
from tests.conftest import EmulatorFactory, Serve

HOUR = timedelta(hours=1)


class FakeClock:
    """Now, as the emulator and the client see it; ``sleep`` moves it on."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)
        await anyio.lowlevel.checkpoint()


async def quiet_day(make_emulator: EmulatorFactory) -> datetime:
    """The start of a day of pepe (the sparse asset) with some hours traded, some quiet."""
    emu = await make_emulator()
    async with LiquidationClient(base_url=emu.base_url) as client:
        rows = await client.fetch("pepe", "2026-06-01", "2026-09-01", sort="asc")
    by_day: dict[datetime, int] = {}
    for row in rows:
        day = row.interval_time.replace(hour=0)
        by_day[day] = by_day.get(day, 0) + 1
    return min(day for day, n in by_day.items() if 4 <= n <= 20)


async def collect(
    follow: Follow, clock: FakeClock, until: datetime, stop_after: int | None = None
) -> list[tuple[LiquidationRow, datetime]]:
    """(row, when it came) until the clock passes ``until`` or ``stop_after`` rows."""
    got: list[tuple[LiquidationRow, datetime]] = []
    async with follow as rows:
        async for row in rows:
            got.append((row, clock.now))
            if clock.now >= until or (stop_after is not None and len(got) >= stop_after):
                break
    return got


async def reference(
    make_emulator: EmulatorFactory, asset: str, start: datetime, end: datetime
) -> list[LiquidationRow]:
    """What a plain fetch gives once everything asked for has settled."""
    emu = await make_emulator(now=end + 3 * HOUR)
    async with LiquidationClient(base_url=emu.base_url) as client:
        return await client.fetch(asset, start, end, sort="asc")


async def test_a_day_with_quiet_hours_a_fault_and_a_restart(
    make_emulator: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    day = await quiet_day(make_emulator)
    since = day - 6 * HOUR  # a backlog first, then the day live
    started = day + timedelta(minutes=7)
    clock = FakeClock(started)
    # Faults on a third of the requests, and no retry inside the client: follow's own
    # backoff has to ride them out.
    emu = await make_emulator(now=clock, fault_rate=0.35, seed=0)
    options = {"base_url": emu.base_url, "now": clock, "retry": RetryPolicy(max_attempts=1)}
    got: list[tuple[LiquidationRow, datetime]] = []
    caplog.set_level(logging.WARNING, logger="kaiko_liq")
    async with LiquidationClient(**options) as client:  # type: ignore[arg-type]
        first = client.follow("pepe", since=since, sleep=clock.sleep)
        got += await collect(first, clock, day + 24 * HOUR, stop_after=5)
        cursor = first.cursor
    assert got and cursor == got[-1][0].interval_time + HOUR
    # A restart: a new client and a new follow from where the first one stopped.
    async with LiquidationClient(**options) as client:  # type: ignore[arg-type]
        second = client.follow("pepe", since=cursor, sleep=clock.sleep)
        got += await collect(second, clock, day + 24 * HOUR)
    end = settled_horizon(parse_interval("1h"), clock.now)

    rows = [row for row, _ in got]
    want = await reference(make_emulator, "pepe", since, end)
    assert rows == want  # nothing repeated, nothing skipped, quiet hours and all
    assert len(want) >= 4 and rows[-1].interval_time >= day + 20 * HOUR
    hours = {r.interval_time for r in rows}
    assert len([h for h in (day + i * HOUR for i in range(24)) if h not in hours]) >= 4

    # Each bucket comes as soon as it settles: at most a poll margin (and the backoff
    # of a fault or two) after it does; the backlog at once.
    for row, when in got:
        settles = row.interval_time + HOUR + SETTLE
        assert when >= settles
        if settles > day:
            assert when <= settles + POLL_MARGIN + timedelta(seconds=40), row.interval_time
    # Faults were retried and logged; polls follow the hour, not a busy loop.
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert retries
    # One good answer an hour, plus the backlog and the restart's catch-up: no polling
    # in between. (A body cut short went out as a 200 too.)
    answers = emu.stats.by_status[200] - emu.stats.faults["truncate"]
    assert answers <= (clock.now - started) / HOUR + 2
    assert sum(clock.sleeps) > 20 * 3600


async def test_since_defaults_to_the_last_day(make_emulator: EmulatorFactory) -> None:
    clock = FakeClock(datetime(2026, 10, 1, 12, 30, tzinfo=UTC))
    emu = await make_emulator(now=clock)
    async with LiquidationClient(base_url=emu.base_url, now=clock) as client:
        follow = client.follow("btc", sleep=clock.sleep)
        assert follow.cursor == datetime(2026, 9, 30, 12, tzinfo=UTC)
        got = await collect(follow, clock, clock.now + 2 * HOUR)
    rows = [r for r, _ in got]
    start, end = datetime(2026, 9, 30, 12, tzinfo=UTC), rows[-1].interval_time + HOUR
    want = await reference(make_emulator, "btc", start, end)
    assert rows == want and len(rows) >= 20


@pytest.mark.parametrize(
    ("asset", "key", "error"),
    [("zzz", None, NotFoundError), ("btc", "wrong", AuthenticationError)],
)
async def test_what_retrying_cannot_fix_is_raised(
    make_emulator: EmulatorFactory, asset: str, key: str | None, error: type[Exception]
) -> None:
    clock = FakeClock(datetime(2026, 10, 1, tzinfo=UTC))
    emu = await make_emulator(now=clock, api_key="right")
    async with LiquidationClient(key or "right", base_url=emu.base_url, now=clock) as client:
        with pytest.raises(error):
            async for _ in client.follow(asset, sleep=clock.sleep):
                pass
    assert clock.sleeps == []


async def test_leaving_the_loop_leaves_nothing_running(make_emulator: EmulatorFactory) -> None:
    clock = FakeClock(datetime(2026, 10, 1, tzinfo=UTC))
    emu = await make_emulator(now=clock)
    async with LiquidationClient(base_url=emu.base_url, now=clock) as client:
        async for _row in client.follow("btc", sleep=clock.sleep):
            break
        requests = emu.stats.total_requests
        await anyio.sleep(0.01)
    assert emu.stats.total_requests == requests == 1


async def test_bad_arguments_are_refused_at_once(make_emulator: EmulatorFactory) -> None:
    emu = await make_emulator()
    async with LiquidationClient(base_url=emu.base_url) as client:
        with pytest.raises(ValueError, match="interval"):
            client.follow("btc", interval="1m")
        with pytest.raises(ValueError, match="since"):
            client.follow("btc", since=1_700_000_000)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="on_revision must be a function"):
            client.follow("btc", on_revision=42)  # type: ignore[arg-type]
    assert emu.stats.total_requests == 0


async def test_a_closed_client_ends_the_follow_instead_of_retrying(
    make_emulator: EmulatorFactory,
) -> None:
    clock = FakeClock(datetime(2026, 10, 1, tzinfo=UTC))
    emu = await make_emulator(now=clock)
    client = LiquidationClient(base_url=emu.base_url, now=clock)
    follow = client.follow("btc", sleep=clock.sleep)
    await client.aclose()
    with pytest.raises(ClientClosedError):
        async for _ in follow:
            pass
    assert clock.sleeps == []


def wire_row(when: datetime, amount: float) -> dict[str, Any]:
    """A consistent wire row at ``when``: one exchange, all of it long."""
    venue = {
        "total_trades": 1,
        "total_amount": amount,
        "long_trades": 1,
        "long_amount": amount,
        "short_trades": 0,
        "short_amount": 0.0,
    }
    return {
        "interval_time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "interval_timestamp": int(when.timestamp()) * 1_000_000_000,
        **venue,
        "exchanges": [{"exchange": "bbit", **venue}],
    }


async def test_each_kind_of_revision_goes_to_on_revision_before_the_new_rows(
    serve: Serve,
) -> None:
    """A server whose figures the test changes between polls: a quiet bucket that gets a
    row, a row that goes, a row that changes; each is a Revision, in time order, before
    the next poll's new row, and the iterator hands out nothing twice."""
    day = datetime(2025, 2, 1, tzinfo=UTC)
    wire = {day + h * HOUR: wire_row(day + h * HOUR, 10.0 + h) for h in range(9) if h != 3}

    async def handler(request: web.Request) -> web.Response:
        lo = datetime.fromisoformat(request.query["start_time"])
        hi = datetime.fromisoformat(request.query["end_time"])
        rows = [wire[t] for t in sorted(wire) if lo <= t < hi]
        answer = json.dumps({"result": "success", "data": rows})
        return web.Response(text=answer, content_type="application/json")

    base = await serve(handler)
    clock = FakeClock(day + 10 * HOUR + timedelta(minutes=10))
    events: list[Revision | LiquidationRow] = []
    async with LiquidationClient(base_url=base, now=clock) as client:
        follow = client.follow("btc", since=day, sleep=clock.sleep, on_revision=events.append)
        async with follow:
            async for row in follow:
                events.append(row)
                if row.interval_time == day + 8 * HOUR:  # the first poll's last row
                    first = {r.interval_time: r for r in events if isinstance(r, LiquidationRow)}
                    wire[day + 3 * HOUR] = wire_row(day + 3 * HOUR, 3.5)
                    del wire[day + 5 * HOUR]
                    wire[day + 6 * HOUR] = wire_row(day + 6 * HOUR, 99.0)
                    wire[day + 9 * HOUR] = wire_row(day + 9 * HOUR, 19.0)
                if row.interval_time == day + 9 * HOUR:
                    break
    revisions = [e for e in events if isinstance(e, Revision)]
    assert [(r.interval_time - day, r.previous) for r in revisions] == [
        (3 * HOUR, None),
        (5 * HOUR, first[day + 5 * HOUR]),
        (6 * HOUR, first[day + 6 * HOUR]),
    ]
    assert revisions[0].row is not None and revisions[0].row.total_amount == 3.5
    assert revisions[1].row is None
    assert revisions[2].row is not None and revisions[2].row.total_amount == 99.0
    assert isinstance(events[-1], LiquidationRow) and events[-4:-1] == revisions
    times = [e.interval_time for e in events if isinstance(e, LiquidationRow)]
    assert times == sorted(set(times)) and follow.revised == 3
