"""The emulator's events route, end to end over loopback with plain aiohttp.

The key property: per token, exchange and hour, the events add up to the token route's
figures (counts per side exactly; USD amounts too, within a float tolerance a real server
would need). Then paging (rows and time, both sorts) hands out every event once, the
continuation token carries the window, and the data has what a client must survive: a
dense day, a sparse instrument, a millisecond shared by many events.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec
import pytest

from kaiko_liq.emulator import (
    DENSE_INSTRUMENT,
    INSTRUMENTS,
    SPARSE_INSTRUMENT,
    SYNTHETIC_ID_EXCHANGES,
    Instrument,
    RunningEmulator,
    events_for,
    rows_for,
)
from kaiko_liq.models import EventPageBody, LiquidationEvent, decode_event_page, decode_page
from tests.conftest import FIXED_NOW, EmulatorFactory

KEY = {"X-Api-Key": "test-key"}
EVENTS = "/v2/data/liquidation.v1/trades/"
TOKEN = "/v2/data/liquidation.v1/token/"
#: A busy day (a cascade at 05:00) of the dense instrument, and its sweep: 250 events in
#: the one millisecond 2025-05-16T05:16:12.077Z.
BUSY_DAY = ("2025-05-16T00:00:00Z", "2025-05-17T00:00:00Z")
SWEEP_MS = 1_747_372_572_077
HOUR_MS = 3_600_000


def url(emu: RunningEmulator, instrument: Instrument | str) -> str:
    path = str(instrument).replace(":", "/")
    return emu.base_url + EVENTS + path


async def pages(
    start_url: str, decode: Callable[[bytes], Any] = decode_event_page, **params: str
) -> list[Any]:
    """Follow next_url exactly as received, adding nothing, until a page has none; each
    page decoded strictly (events by default, :class:`EventPageBody`)."""
    out: list[Any] = []
    async with aiohttp.ClientSession(headers=KEY) as session:
        next_url: str | None = start_url
        while next_url is not None:
            async with session.get(next_url, params=None if out else params) as r:
                assert r.status == 200, await r.text()
                page = decode(await r.read())
            assert page.result == "success"
            assert (page.continuation_token is None) == (page.next_url is None)
            out.append(page)
            next_url = page.next_url
            assert len(out) < 2000, "paging does not end"
    return out


async def first_page(target: str, **params: str) -> Any:
    """The first page of the token route, decoded."""
    async with (
        aiohttp.ClientSession(headers=KEY) as session,
        session.get(target, params=params) as r,
    ):
        assert r.status == 200, await r.text()
        return decode_page(await r.read())


def events_of(answers: list[EventPageBody]) -> list[LiquidationEvent]:
    return [e for page in answers for e in page.data or []]


async def error(target: str, status: int, **params: str) -> str:
    async with (
        aiohttp.ClientSession(headers=KEY) as session,
        session.get(target, params=params or None) as r,
    ):
        assert r.status == status, await r.text()
        body = json.loads(await r.read())
    assert body["result"] == "error"
    message: str = body["message"]
    return message


def truth(instrument: Instrument, start: str, end: str) -> list[LiquidationEvent]:
    return events_for(instrument, start, end, now=FIXED_NOW)


# --- the key property: events add up to the volumes ------------------------------------------


@pytest.mark.parametrize(
    ("asset", "start", "end"),
    [
        ("btc", "2025-05-16T04:00:00Z", "2025-05-16T07:00:00Z"),  # a cascade hour among them
        ("ltc", "2025-09-01T00:00:00Z", "2025-09-02T00:00:00Z"),
        ("pepe", "2025-02-01T00:00:00Z", "2025-03-05T00:00:00Z"),  # bursts and silence
    ],
)
async def test_events_add_up_to_the_volumes_per_token_hour_and_exchange(
    emulator: RunningEmulator, asset: str, start: str, end: str
) -> None:
    listed = [i for i in INSTRUMENTS if i.asset == asset]
    assert listed
    # (hour ms, exchange) -> [long count, long usd, short count, short usd]
    sums: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0.0, 0, 0.0])
    for instrument in listed:
        found = events_of(
            await pages(
                url(emulator, instrument),
                start_time=start,
                end_time=end,
                sort="asc",
                page_size="1000",
            )
        )
        for e in found:
            acc = sums[e.timestamp - e.timestamp % HOUR_MS, instrument.exchange]
            side = 0 if e.position_side == "long" else 2
            acc[side] += 1
            acc[side + 1] += e.amount_usd
    volumes = await pages(
        emulator.base_url + TOKEN + asset, decode_page, start_time=start, end_time=end
    )
    rows = [r for page in volumes for r in page.data or []]
    assert rows
    expected: dict[tuple[int, str], list[float]] = {}
    for row in rows:
        hour = row.interval_timestamp // 1_000_000
        for v in row.exchanges:
            expected[hour, v.exchange] = [
                v.long_trades,
                v.long_amount,
                v.short_trades,
                v.short_amount,
            ]
        # The token's totals too: all its exchanges' events together.
        mine = [sums[hour, v.exchange] for v in row.exchanges]
        assert sum(m[0] + m[2] for m in mine) == row.total_trades
        assert math.isclose(sum(m[1] + m[3] for m in mine), row.total_amount, rel_tol=1e-9)
    assert set(sums) == set(expected)  # no events in an hour or exchange without volume
    for key, (longs, long_usd, shorts, short_usd) in expected.items():
        got = sums[key]
        assert (got[0], got[2]) == (longs, shorts), key
        assert math.isclose(got[1], long_usd, rel_tol=1e-9, abs_tol=1e-6), key
        assert math.isclose(got[3], short_usd, rel_tol=1e-9, abs_tol=1e-6), key


def test_an_exchanges_events_sum_exactly_to_its_entry_across_its_instruments() -> None:
    """Amounts are whole quanta of 1/4096 USD: the sums are exact, not only close."""
    start, end = BUSY_DAY
    rows = rows_for("btc", start, end, now=FIXED_NOW)
    okex = [i for i in INSTRUMENTS if i.exchange == "okex" and i.asset == "btc"]
    assert {i.instrument_class for i in okex} == {"future", "perpetual-future"}
    usd: defaultdict[tuple[int, str], float] = defaultdict(float)
    for instrument in okex:
        for e in truth(instrument, start, end):
            usd[e.timestamp // HOUR_MS, e.position_side] += e.amount_usd
    for row in rows:
        (entry,) = [v for v in row.exchanges if v.exchange == "okex"]
        hour = row.interval_timestamp // 1_000_000 // HOUR_MS
        assert usd[hour, "long"] == entry.long_amount
        assert usd[hour, "short"] == entry.short_amount


# --- paging --------------------------------------------------------------------------------

WINDOWS = [
    # (start, end, page_size): a quiet-ish hour, and 4 s around the 250-event sweep with
    # pages that must stop inside that millisecond.
    ("2025-05-16T12:00:00Z", "2025-05-16T13:00:00Z", "9"),
    ("2025-05-16T05:16:10Z", "2025-05-16T05:16:14Z", "7"),
]


@pytest.mark.parametrize("paging", ["rows", "time"])
@pytest.mark.parametrize("sort", ["asc", "desc"])
@pytest.mark.parametrize("empty_last_page", [False, True])
async def test_paging_hands_out_every_event_once_in_either_sort(
    make_emulator: EmulatorFactory, paging: str, sort: str, empty_last_page: bool
) -> None:
    emu = await make_emulator(paging=paging, empty_last_page=empty_last_page)
    for start, end, size in WINDOWS:
        answers = await pages(
            url(emu, DENSE_INSTRUMENT), start_time=start, end_time=end, sort=sort, page_size=size
        )
        got = events_of(answers)
        expected = truth(DENSE_INSTRUMENT, start, end)
        assert len(expected) > 50
        assert got == (expected if sort == "asc" else expected[::-1])
        assert len({e.trade_id for e in got}) == len(got)
        assert all(len(p.data or []) <= int(size) for p in answers)
        # The pages' windows tile the query's, in serving order, touching or sharing the
        # millisecond a cursor cut.
        spans = [(p.query.start_timestamp, p.query.end_timestamp) for p in answers if p.query]
        spans = spans if sort == "asc" else [(b, a) for a, b in spans]
        for (_, edge), (nxt, _) in itertools.pairwise(spans):
            assert edge is not None and nxt is not None
            assert 0 <= (edge - nxt if sort == "asc" else nxt - edge) <= 1


async def test_a_page_stops_inside_a_millisecond_and_the_next_goes_on_from_there(
    emulator: RunningEmulator,
) -> None:
    answers = await pages(
        url(emulator, DENSE_INSTRUMENT),
        start_time="2025-05-16T05:16:12.077Z",
        end_time="2025-05-16T05:16:12.078Z",
        sort="asc",
        page_size="100",
    )
    assert [len(p.data or []) for p in answers] == [100, 100, 50]
    assert {e.timestamp for e in events_of(answers)} == {SWEEP_MS}


async def test_time_paging_gives_short_and_empty_pages_that_still_carry_a_cursor(
    make_emulator: EmulatorFactory,
) -> None:
    emu = await make_emulator(paging="time")
    start, end = "2025-09-01T00:00:00Z", "2025-09-04T00:00:00Z"
    answers = await pages(
        url(emu, SPARSE_INSTRUMENT), start_time=start, end_time=end, sort="asc", page_size="60"
    )
    assert len(answers) == 72  # an hour a page
    assert any(not p.data and p.next_url for p in answers)
    assert events_of(answers) == truth(SPARSE_INSTRUMENT, start, end)


async def test_page_cap_caps_events_per_page(make_emulator: EmulatorFactory) -> None:
    emu = await make_emulator(page_cap=40)
    start, end = "2025-05-16T12:00:00Z", "2025-05-16T13:00:00Z"
    answers = await pages(url(emu, DENSE_INSTRUMENT), start_time=start, end_time=end)
    assert [len(p.data or []) for p in answers] == [40, 40, 36]
    assert events_of(answers) == truth(DENSE_INSTRUMENT, start, end)[::-1]  # desc by default


# --- continuation tokens ---------------------------------------------------------------------


async def test_the_continuation_token_carries_the_window_and_is_tied_to_its_instrument(
    emulator: RunningEmulator,
) -> None:
    start, end = "2025-05-16T12:00:00.250Z", "2025-05-16T12:30:00Z"
    answers = await pages(
        url(emulator, DENSE_INSTRUMENT), start_time=start, end_time=end, page_size="10"
    )
    assert len(answers) > 2
    for page in answers:  # later pages were asked with nothing but the token
        assert page.query is not None
        assert (page.query.query_start_time, page.query.query_end_time) == (start, end)
        assert page.query.instrument == "btc-usdt" and page.query.page_size == 10
    token = answers[0].continuation_token
    assert token is not None
    other = url(emulator, "bbit:perpetual-future:btc-usdt")
    assert "binc:perpetual-future:btc-usdt" in await error(other, 400, continuation_token=token)
    edited = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert "invalid" in await error(url(emulator, DENSE_INSTRUMENT), 400, continuation_token=edited)
    # A token of the token route is no token here (nor the other way round).
    volumes = await first_page(emulator.base_url + TOKEN + "btc", page_size="1")
    assert volumes.continuation_token is not None
    await error(url(emulator, DENSE_INSTRUMENT), 400, continuation_token=volumes.continuation_token)
    await error(emulator.base_url + TOKEN + "btc", 400, continuation_token=token)


# --- errors --------------------------------------------------------------------------------


async def test_an_unknown_instrument_is_a_404_that_lists_the_instruments(
    emulator: RunningEmulator,
) -> None:
    message = await error(url(emulator, "binc:perpetual-future:nosuch-usdt"), 404)
    assert "binc:perpetual-future:nosuch-usdt" in message
    assert all(str(i) in message for i in INSTRUMENTS)
    message = await error(url(emulator, "binc:spot:btc-usdt"), 404)
    assert "future or perpetual-future" in message
    await error(url(emulator, "nosuch:perpetual-future:btc-usdt"), 404)
    # Case does not matter, as for assets.
    upper = url(emulator, "BINC:Perpetual-Future:BTC-USDT")
    assert await pages(upper, start_time="2025-05-16T12:00:00Z", end_time="2025-05-16T13:00:00Z")


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "1001"}, "page_size"),
        ({"sort": "up"}, "sort"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"start_time": "2025-05-16T01:00:00Z", "end_time": "2025-05-16T01:00:00Z"}, "before"),
    ],
)
async def test_bad_parameters_are_a_400_naming_them(
    emulator: RunningEmulator, params: dict[str, str], named: str
) -> None:
    assert named in await error(url(emulator, DENSE_INSTRUMENT), 400, **params)


async def test_the_route_shares_auth_and_compression_with_the_token_route(
    emulator: RunningEmulator,
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(url(emulator, DENSE_INSTRUMENT)) as r:
            assert r.status == 401
        async with session.get(
            url(emulator, DENSE_INSTRUMENT),
            params={"start_time": BUSY_DAY[0], "end_time": BUSY_DAY[1]},
            headers={**KEY, "Accept-Encoding": "gzip"},
        ) as r:
            assert r.status == 200 and r.headers["Content-Encoding"] == "gzip"
            assert len(decode_event_page(await r.read()).data or []) == 100


# --- the data ------------------------------------------------------------------------------


async def test_a_dense_day_has_thousands_of_events_and_a_sweep_in_one_millisecond(
    emulator: RunningEmulator,
) -> None:
    answers = await pages(
        url(emulator, DENSE_INSTRUMENT),
        start_time=BUSY_DAY[0],
        end_time=BUSY_DAY[1],
        page_size="1000",
    )
    found = events_of(answers)
    assert len(found) > 5000 and len(answers) == math.ceil(len(found) / 1000)
    counts = Counter(e.timestamp for e in found)
    assert counts.most_common(1) == [(SWEEP_MS, 250)]
    assert sum(1 for n in counts.values() if n >= 10) > 5  # smaller sweeps too
    assert len({e.trade_id for e in found}) == len(found)
    assert {e.position_side for e in found} == {"long", "short"}


def test_a_sparse_instrument_has_days_with_none_to_a_few_events() -> None:
    found = truth(SPARSE_INSTRUMENT, "2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z")
    per_day = Counter(e.timestamp // (24 * HOUR_MS) for e in found)
    days = [per_day.get(d, 0) for d in range(20148, 20179)]  # March 2025
    assert days.count(0) >= 3
    assert sorted(days)[len(days) // 2] <= 3  # the median day: three events or fewer


def test_rows_are_plausible_and_ids_unique_per_instrument() -> None:
    start, end = "2025-05-16T05:00:00Z", "2025-05-16T07:00:00Z"
    for spec in ("binc:perpetual-future:btc-usdt", "hbdm:perpetual-future:btc-usdt"):
        found = events_for(spec, start, end, now=FIXED_NOW)
        assert len({e.trade_id for e in found}) == len(found)
        for e in found[:200]:
            assert 50_000 < e.price < 200_000
            assert math.isclose(e.amount * e.price, e.amount_quote, rel_tol=1e-9)
            assert e.rate is not None and abs(e.rate - 1.0) < 1e-3  # USDT-quoted
            assert math.isclose(e.amount_quote * e.rate, e.amount_usd, rel_tol=1e-9)
    synthetic = events_for("hbdm:perpetual-future:btc-usdt", start, end, now=FIXED_NOW)
    assert SYNTHETIC_ID_EXCHANGES == ("hbdm",)
    assert all(re.fullmatch(r"[0-9a-f]{32}", e.trade_id) for e in synthetic)
    serial = events_for(DENSE_INSTRUMENT, start, end, now=FIXED_NOW)
    assert all(e.trade_id.isdigit() for e in serial)
    inverse = events_for("krkn:perpetual-future:btc-usd", start, end, now=FIXED_NOW)
    assert inverse and all(e.rate is None and e.amount_quote == e.amount_usd for e in inverse)


async def test_events_exist_only_before_the_emulators_now(make_emulator: EmulatorFactory) -> None:
    now = datetime(2025, 5, 16, 5, 30, tzinfo=UTC)
    emu = await make_emulator(now=now)
    found = events_of(
        await pages(
            url(emu, DENSE_INSTRUMENT),
            page_size="1000",
            sort="asc",
            start_time="2025-05-16T05:00:00Z",
        )
    )
    cutoff = int(now.timestamp() * 1000)
    assert found and max(e.timestamp for e in found) < cutoff
    assert found == events_for(DENSE_INSTRUMENT, "2025-05-16T05:00:00Z", now, now=now)


def test_one_dense_day_is_made_fast() -> None:
    """Lazily, an hour at a time: the busiest day of the data in well under 100 ms."""
    import time

    from kaiko_liq.emulator import events as events_module

    events_module._exchange_hour.cache_clear()
    rows_for("btc", *BUSY_DAY, now=FIXED_NOW)  # the hourly volumes it is cut from
    began = time.perf_counter()
    found = events_for(DENSE_INSTRUMENT, *BUSY_DAY, now=FIXED_NOW)
    assert len(found) > 5000
    assert time.perf_counter() - began < 0.25  # ~0.05 s; slack for a loaded machine


def test_the_wire_model_refuses_what_the_doc_rules_out() -> None:
    good: dict[str, Any] = {
        "timestamp": 1_747_372_572_077,
        "trade_id": "1",
        "price": 1.0,
        "amount": 1.0,
        "amount_quote": 1.0,
        "amount_usd": 1.0,
        "rate": None,
        "position_side": "long",
    }
    body = {"result": "success", "data": [good]}
    assert decode_event_page(json.dumps(body)).data == [LiquidationEvent(**good)]
    for field, bad in [
        ("position_side", "flat"),
        ("amount_usd", -1.0),
        ("price", -0.5),
        ("timestamp", "1747372572077"),
        ("rate", "1.0"),
    ]:
        with pytest.raises(msgspec.ValidationError, match=rf"\$\.data\[0\]\.{field}"):
            decode_event_page(json.dumps({**body, "data": [{**good, field: bad}]}))
    # The envelope stays lenient, as for the token route.
    lenient = {**body, "query": {"page_size": "2"}}
    assert decode_event_page(json.dumps(lenient)).data == [LiquidationEvent(**good)]
