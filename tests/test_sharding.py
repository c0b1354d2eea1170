"""Shard policies on an in-memory events server: the adaptive split returns exactly what
one plain query paged to its end returns, in either sort, however dense the window and
however many events share the millisecond where a page stops or a split falls.

The server here is a few lines of Python over a sorted list (no network): rows or time
paging, its cursor an opaque token, every request recorded. End-to-end runs against the
emulator are in ``test_events_e2e.py``.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiko_liq.errors import InconsistentDataError
from kaiko_liq.models import LiquidationEvent
from kaiko_liq.plan import SubRange
from kaiko_liq.protocol import Page
from kaiko_liq.query import epoch_ms, from_epoch_ms
from kaiko_liq.routes.events import EVENTS, Instrument
from kaiko_liq.shard import fetch_chain
from kaiko_liq.sharding import day_windows, split_window

BASE = "https://us.market-api.kaiko.io"
TARGET = Instrument("binc", "perpetual-future", "btc-usdt")
DAY = datetime(2025, 3, 1, tzinfo=UTC)


def event(ms: int, n: int) -> LiquidationEvent:
    return LiquidationEvent(
        timestamp=ms,
        trade_id=f"t{n}",
        price=100.0,
        amount=1.0,
        amount_quote=100.0,
        amount_usd=100.0,
        rate=None,
        position_side="long" if n % 2 else "short",
    )


class EventServer:
    """Events of one instrument, paged by rows (``page_size`` events a page) or by time
    (``span_ms`` of time a page, however many events that is, empty pages included)."""

    def __init__(self, events: list[LiquidationEvent], *, span_ms: int | None = None) -> None:
        self.events = sorted(events, key=lambda e: (e.timestamp, e.trade_id))
        self.span_ms = span_ms
        self.requests: list[str] = []
        self.path = EVENTS.path(TARGET)

    base_url = BASE

    async def get_page(self, url: str, params: dict[str, str] | None, decode: Any) -> Page[Any]:
        self.requests.append(url)
        if params is None:
            params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        if "continuation_token" in params:
            lo, hi, sort, size, cursor = params["continuation_token"].split("_")
            state = (int(lo), int(hi), sort, int(size), int(cursor))
        else:
            lo_ms = epoch_ms(datetime.fromisoformat(params["start_time"]))
            hi_ms = epoch_ms(datetime.fromisoformat(params["end_time"]))
            sort = params["sort"]
            first = lo_ms if self.span_ms is not None and sort == "asc" else 0
            state = (lo_ms, hi_ms, sort, int(params["page_size"]), first)
        return self._page(*state)

    def _page(self, lo: int, hi: int, sort: str, size: int, cursor: int) -> Page[Any]:
        chosen = [e for e in self.events if lo <= e.timestamp < hi]
        if sort == "desc":
            chosen.reverse()
        if self.span_ms is None:  # rows: cursor is an offset
            rows = chosen[cursor : cursor + size]
            more = cursor + size < len(chosen)
            following = cursor + size
        elif sort == "asc":  # time: cursor is where the page's span starts
            end = min(hi, cursor + self.span_ms)
            rows = [e for e in chosen if cursor <= e.timestamp < end]
            more, following = end < hi, end
        else:
            top = hi - cursor
            bottom = max(lo, top - self.span_ms)
            rows = [e for e in chosen if bottom <= e.timestamp < top]
            more, following = bottom > lo, cursor + (top - bottom)
        if not more:
            return Page(rows, None, None)
        token = f"{lo}_{hi}_{sort}_{size}_{following}"
        return Page(rows, f"{BASE}{self.path}?continuation_token={token}", token)


def dense_day(seed: int, count: int, *, same_ms: int = 0) -> list[LiquidationEvent]:
    rng = random.Random(seed)
    start = epoch_ms(DAY)
    stamps = [start + rng.randrange(86_400_000) for _ in range(count)]
    stamps += [start + 43_200_000] * same_ms  # a burst in one millisecond, at noon
    return [event(ms, n) for n, ms in enumerate(stamps)]


async def plain(server: EventServer, lo: datetime, hi: datetime, sort: str, size: int) -> list[Any]:
    return await fetch_chain(server, EVENTS, TARGET, SubRange(lo, hi), sort, size)


async def adaptive(
    server: EventServer, lo: datetime, hi: datetime, sort: str, size: int
) -> list[Any]:
    return await EVENTS.policy.fetch(server, EVENTS, TARGET, SubRange(lo, hi), sort, size)


# --- pure pieces ------------------------------------------------------------------------


def test_day_windows_keep_the_callers_edges() -> None:
    lo = datetime(2025, 3, 1, 6, tzinfo=UTC)
    hi = datetime(2025, 3, 3, 1, tzinfo=UTC)
    windows = day_windows(lo, hi)
    assert [(w.start, w.end) for w in windows] == [
        (lo, datetime(2025, 3, 2, tzinfo=UTC)),
        (datetime(2025, 3, 2, tzinfo=UTC), datetime(2025, 3, 3, tzinfo=UTC)),
        (datetime(2025, 3, 3, tzinfo=UTC), hi),
    ]
    assert [w.index for w in windows] == [0, 1, 2]
    assert day_windows(hi, lo) == []


def test_split_window_meets_exactly() -> None:
    lo, hi = DAY, DAY + timedelta(hours=5)
    parts = split_window(lo, hi, 14)
    assert len(parts) == 14
    assert parts[0].start == lo and parts[-1].end == hi
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))
    tiny = split_window(lo, lo + timedelta(milliseconds=3), 10)
    assert [(p.start, p.end) for p in tiny] == [
        (lo + timedelta(milliseconds=i), lo + timedelta(milliseconds=i + 1)) for i in range(3)
    ]


# --- the adaptive split against one plain query ---------------------------------------------


@pytest.mark.parametrize("sort", ["asc", "desc"])
async def test_a_dense_day_splits_and_equals_one_plain_query(sort: str) -> None:
    events = dense_day(1, 20_000, same_ms=2500)
    truth = await plain(EventServer(events), DAY, DAY + timedelta(days=1), sort, 1000)
    server = EventServer(events)
    got = await adaptive(server, DAY, DAY + timedelta(days=1), sort, 1000)
    assert got == truth
    assert len(got) == 22_500
    # Split: many first pages (one per sub-window), not one long chain of 23 pages.
    firsts = [u for u in server.requests if "continuation_token" not in u]
    assert len(firsts) > 10


@pytest.mark.parametrize("sort", ["asc", "desc"])
async def test_a_page_that_stops_inside_a_millisecond_loses_nothing(sort: str) -> None:
    # 3,000 events in one millisecond: no time split can cut it, the cursor must.
    events = [event(epoch_ms(DAY) + 5000, n) for n in range(3000)]
    events += [event(epoch_ms(DAY) + 7000 + n, 10_000 + n) for n in range(50)]
    truth = await plain(EventServer(events), DAY, DAY + timedelta(days=1), sort, 1000)
    got = await adaptive(EventServer(events), DAY, DAY + timedelta(days=1), sort, 1000)
    assert got == truth and len(got) == 3050


async def test_time_paging_with_empty_pages_is_followed() -> None:
    events = dense_day(2, 300)
    server = EventServer(events, span_ms=3_600_000)
    truth = await plain(
        EventServer(events, span_ms=3_600_000), DAY, DAY + timedelta(days=1), "asc", 100
    )
    got = await adaptive(server, DAY, DAY + timedelta(days=1), "asc", 100)
    assert got == truth and len(got) == 300


async def test_a_repeated_trade_id_is_refused() -> None:
    events = [event(epoch_ms(DAY) + 10, 1), event(epoch_ms(DAY) + 20, 1)]
    with pytest.raises(InconsistentDataError, match="came twice"):
        await plain(EventServer(events), DAY, DAY + timedelta(days=1), "asc", 100)


async def test_an_event_outside_the_window_is_refused() -> None:
    class Leaky(EventServer):
        def _page(self, lo: int, hi: int, sort: str, size: int, cursor: int) -> Page[Any]:
            return Page([event(hi + 5, 1)], None, None)

    with pytest.raises(InconsistentDataError, match="outside the requested window"):
        await plain(Leaky([]), DAY, DAY + timedelta(hours=1), "asc", 100)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10_000),
    count=st.integers(0, 3000),
    burst=st.integers(0, 400),
    size=st.sampled_from([1, 7, 100, 1000]),
    sort=st.sampled_from(["asc", "desc"]),
    start_off=st.integers(0, 86_400_000 - 1),
    length=st.integers(1, 86_400_000),
    span=st.sampled_from([None, 900_000]),
)
async def test_adaptive_equals_plain(
    seed: int,
    count: int,
    burst: int,
    size: int,
    sort: str,
    start_off: int,
    length: int,
    span: int | None,
) -> None:
    events = dense_day(seed, count, same_ms=burst)
    lo = from_epoch_ms(epoch_ms(DAY) + start_off)
    hi = lo + timedelta(milliseconds=length)
    if size == 1 and count + burst > 600:
        size = 7  # a page per event: right, but slow for a property test
    truth = await plain(EventServer(events, span_ms=span), lo, hi, sort, size)
    got = await adaptive(EventServer(events, span_ms=span), lo, hi, sort, size)
    assert got == truth
