"""Liquidation events end to end: the client against the emulator over loopback.

``fetch_events`` (days concurrently, dense days split as they are fetched) must equal one
plain query paged to its end, for rows and time paging, in either sort, for a dense and
a sparse instrument; and the events must agree with the volumes route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiko_liq import LiquidationClient
from kaiko_liq.emulator import (
    DENSE_INSTRUMENT,
    SPARSE_INSTRUMENT,
    EmulatorConfig,
    events_for,
    running_emulator,
)
from kaiko_liq.errors import InvalidArgumentError, NotFoundError
from kaiko_liq.plan import SubRange
from kaiko_liq.routes.events import EVENTS, parse_instrument
from kaiko_liq.shard import fetch_chain

NOW = datetime(2025, 7, 1, tzinfo=UTC)
#: binc btc-usdt's busiest day at seed 0 (about 5,900 events, one millisecond of 250).
BUSY = datetime(2025, 5, 16, tzinfo=UTC)
DENSE = str(DENSE_INSTRUMENT).split(":")
SPARSE = str(SPARSE_INSTRUMENT).split(":")


@pytest.fixture(params=["rows", "time"])
async def emulator_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    config = EmulatorConfig(paging=request.param, now=NOW, empty_last_page=True)
    async with running_emulator(config) as emu:
        yield emu.base_url


async def test_a_busy_day_equals_the_emulators_events_in_both_sorts(emulator_url: str) -> None:
    async with LiquidationClient(base_url=emulator_url, page_size=100) as client:
        asc = await client.fetch_events(*DENSE, BUSY, BUSY + timedelta(days=1), sort="asc")
        desc = await client.fetch_events(*DENSE, BUSY, BUSY + timedelta(days=1), sort="desc")
        requests = client.stats.requests
    truth = events_for(DENSE_INSTRUMENT, BUSY, BUSY + timedelta(days=1), now=NOW)
    assert len(truth) > 5000
    assert asc == truth
    assert desc == truth[::-1]
    # Split, not paged in sequence: about two pages of overhead per split, not 60 pages.
    assert requests < 3 * len(truth) / 100


async def test_fetch_events_equals_one_plain_query(emulator_url: str) -> None:
    lo, hi = BUSY - timedelta(hours=7), BUSY + timedelta(hours=30)
    async with LiquidationClient(base_url=emulator_url, page_size=250) as client:
        target = parse_instrument(*DENSE)
        plain = await fetch_chain(client._transport, EVENTS, target, SubRange(lo, hi), "desc", 250)
        got = await client.fetch_events(*DENSE, lo, hi)
    assert got == plain and len(got) > 5000


async def test_a_sparse_instrument_over_a_month(emulator_url: str) -> None:
    lo, hi = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)
    async with LiquidationClient(base_url=emulator_url) as client:
        got = await client.fetch_events(*SPARSE, lo, hi, sort="asc")
        stream = [e async for e in client.stream_events(*SPARSE, lo, hi, sort="asc")]
    assert got == events_for(SPARSE_INSTRUMENT, lo, hi, now=NOW)
    assert stream == got


async def test_bad_arguments_are_refused_before_anything_is_sent() -> None:
    async with LiquidationClient(base_url="http://127.0.0.1:9") as client:
        with pytest.raises(InvalidArgumentError, match="instrument_class 'perp'"):
            await client.fetch_events("binc", "perp", "btc-usdt", BUSY, BUSY + timedelta(1))
        with pytest.raises(InvalidArgumentError, match="exchange 'bi/nc'"):
            await client.fetch_events("bi/nc", "future", "x", BUSY, BUSY + timedelta(1))
        with pytest.raises(InvalidArgumentError, match="not before"):
            await client.fetch_events(*DENSE, BUSY, BUSY)
        assert client.stats.requests == 0


async def test_an_unknown_instrument_is_a_not_found() -> None:
    async with (
        running_emulator(EmulatorConfig(now=NOW)) as emu,
        LiquidationClient(base_url=emu.base_url) as client,
    ):
        with pytest.raises(NotFoundError):
            await client.fetch_events("binc", "future", "nope-usd", BUSY, BUSY + timedelta(1))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    start=st.integers(0, 72 * 60),
    minutes=st.integers(1, 72 * 60),
    sort=st.sampled_from(["asc", "desc"]),
    page_size=st.sampled_from([7, 100, 1000]),
    dense=st.booleans(),
)
async def test_property_fetch_events_equals_the_truth(
    emulator_url: str, start: int, minutes: int, sort: str, page_size: int, dense: bool
) -> None:
    lo = BUSY - timedelta(days=1) + timedelta(minutes=start)
    hi = lo + timedelta(minutes=minutes)
    instrument = DENSE_INSTRUMENT if dense else SPARSE_INSTRUMENT
    async with LiquidationClient(base_url=emulator_url, page_size=page_size) as client:
        got = await client.fetch_events(*str(instrument).split(":"), lo, hi, sort=sort)
    truth = events_for(instrument, lo, hi, now=NOW, descending=sort == "desc")
    assert got == truth
