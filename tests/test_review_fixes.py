"""Fixes from a review: the sync events call, a failed recheck, the events recheck's cost,
one spelling of a server, the store found off the loop, the sync calls' client settings,
an empty cache_dir, and the one settlement rule."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import kaiko_liq
from kaiko_liq import InvalidArgumentError, LiquidationClient, sync
from kaiko_liq.emulator import SPARSE_INSTRUMENT, EmulatorConfig, running_emulator
from kaiko_liq.query import MILLISECOND, parse_interval
from kaiko_liq.retry import RetryPolicy
from kaiko_liq.routes import Route
from kaiko_liq.routes.events import EVENTS, parse_instrument
from kaiko_liq.routes.token import TOKEN
from kaiko_liq.settle import CLOCK_MARGIN, SETTLE, settled_horizon
from tests.conftest import FIXED_NOW
from tests.stores import tok, token_cache

H = timedelta(hours=1)
D = timedelta(days=1)
T0 = datetime(2025, 3, 1, tzinfo=UTC)
SPARSE = str(SPARSE_INSTRUMENT).split(":")
#: binc btc-usdt's busiest day at seed 0 (as in test_events_e2e).
BUSY = datetime(2025, 5, 16, tzinfo=UTC)
EVENTS_NOW = datetime(2025, 7, 1, tzinfo=UTC)


# -- 1, 8: the sync calls ----------------------------------------------------------------


def test_sync_fetch_events_works_and_takes_the_clients_settings(tmp_path: Path) -> None:
    lo, hi = T0, T0 + 3 * D
    events = sync.fetch_events(*SPARSE, lo, hi, sort="asc", emulator=True)
    window = range(int(lo.timestamp() * 1000), int(hi.timestamp() * 1000))
    assert events and all(e.timestamp in window for e in events)
    cached = sync.fetch_events(
        *SPARSE, lo, hi, sort="asc", emulator=True, cache_dir=tmp_path, settle="2h", recheck="0"
    )
    assert cached == events and any(tmp_path.rglob("*.parquet"))
    with pytest.raises(InvalidArgumentError, match="settle"):
        kaiko_liq.fetch("eth", lo, hi, emulator=True, settle="soon")
    with pytest.raises(InvalidArgumentError, match="recheck"):
        kaiko_liq.fetch_frame("eth", lo, hi, emulator=True, recheck="often")
    with pytest.raises(InvalidArgumentError, match="storage_options apply to cache_dir"):
        sync.fetch_events(*SPARSE, lo, hi, emulator=True, storage_options={"region": "x"})
    with pytest.raises(InvalidArgumentError, match="credentials"):
        sync.fetch_events(*SPARSE, lo, hi, base_url="http://u:p@127.0.0.1:1")


async def test_sync_fetch_events_refuses_the_emulator_on_its_own_loop() -> None:
    async with running_emulator(EmulatorConfig(now=EVENTS_NOW)) as emu:
        with pytest.raises(InvalidArgumentError, match="blocks this thread"):
            sync.fetch_events(*SPARSE, T0, T0 + D, base_url=emu.base_url)


# -- 4: a failed recheck serves the stored rows --------------------------------------------


async def test_a_fully_cached_window_is_served_when_the_recheck_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start, end = FIXED_NOW - 3 * D, FIXED_NOW - D  # settled, so the cache holds it whole
    options: dict[str, Any] = {"cache_dir": tmp_path, "now": lambda: FIXED_NOW}
    async with running_emulator(EmulatorConfig(now=FIXED_NOW)) as emu:
        async with LiquidationClient(base_url=emu.base_url, **options) as client:
            rows = await client.fetch("btc", start, end)
        base_url = emu.base_url
    caplog.set_level(logging.WARNING, logger="kaiko_liq")
    # The server is gone; the recheck (on by default) cannot reach it.
    retry = RetryPolicy(max_attempts=1)
    async with LiquidationClient(base_url=base_url, retry=retry, **options) as client:
        assert await client.fetch("btc", start, end) == rows
        assert client.stats.requests >= 1  # it did try
    assert any("recheck failed, serving the stored rows" in r.getMessage() for r in caplog.records)


# -- 5: the events recheck costs about a page ----------------------------------------------


async def test_the_events_recheck_fetches_an_hour_not_a_day(tmp_path: Path) -> None:
    dense = ("binc", "perpetual-future", "btc-usdt")
    options: dict[str, Any] = {"cache_dir": tmp_path, "now": lambda: EVENTS_NOW}
    async with running_emulator(EmulatorConfig(now=EVENTS_NOW)) as emu:
        async with LiquidationClient(base_url=emu.base_url, **options) as client:
            first = await client.fetch_events(*dense, BUSY, BUSY + D)
            filled = client.stats.requests
        async with LiquidationClient(base_url=emu.base_url, **options) as client:
            assert await client.fetch_events(*dense, BUSY, BUSY + D) == first
            rechecked = client.stats.requests
    assert filled >= 6  # a dense day is several pages
    assert rechecked == 1  # its newest hour: one page
    target = parse_instrument(*dense)
    assert EVENTS.recheck_span(target, D, 1000) == H
    assert EVENTS.recheck_span(target, timedelta(minutes=5), 1000) == timedelta(minutes=5)


# -- 6: one spelling of a server -------------------------------------------------------------


def test_spellings_of_one_server_share_one_store(tmp_path: Path) -> None:
    a = token_cache(tmp_path, "http://localhost:80/a", "1h")
    b = token_cache(tmp_path, "HTTP://LocalHost/a/", "1h")
    assert a.location == b.location
    [manifest] = tmp_path.rglob("_manifest.json")
    assert json.loads(manifest.read_text())["server"] == "http://localhost/a"
    # A manifest written before identities were normalised is still this server's.
    body = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**body, "server": "http://localhost:80/a/"}))
    assert token_cache(tmp_path, "http://localhost/a", "1h").location == a.location
    with pytest.raises(InvalidArgumentError, match="one server's data"):
        token_cache(a.location, "http://localhost/b", "1h")  # the store itself, for /b


def test_client_server_is_the_normalised_base_url() -> None:
    client = LiquidationClient(base_url="HTTP://LocalHost:80/a/")
    assert client.server == "http://localhost/a"
    https = LiquidationClient(
        base_url="https://user:secret@proxy.example:443/v/", allow_credentials=True
    )
    assert https.server == "https://proxy.example/v"


# -- 7: the store is found off the loop, once ------------------------------------------------


async def test_the_store_is_found_in_a_worker_thread_once_per_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kaiko_liq.cache

    calls: list[threading.Thread] = []
    real = kaiko_liq.cache.cache_store

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(kaiko_liq.cache, "cache_store", spy)
    async with (
        running_emulator(EmulatorConfig(now=FIXED_NOW)) as emu,
        LiquidationClient(base_url=emu.base_url, cache_dir=tmp_path) as client,
    ):
        await client.fetch_many(["btc", "eth", "sol"], T0, T0 + 3 * D)
        await client.fetch("btc", T0, T0 + D, interval="1d")
    assert len(calls) == 2  # one per folder (1h, 1d), however many requests
    assert threading.main_thread() not in calls


# -- 9: an empty cache_dir --------------------------------------------------------------------


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_cache_dir_is_refused(empty: str) -> None:
    with pytest.raises(InvalidArgumentError, match="cache_dir '.*' is empty"):
        LiquidationClient(base_url="http://127.0.0.1:1", cache_dir=empty)


# -- 10: one settlement rule ---------------------------------------------------------------------


def test_the_horizon_is_one_rule_with_the_clock_margin() -> None:
    target = tok("btc", "1h")
    # The 02:00 bucket closed at 03:00; final SETTLE and the margin later, not sooner.
    settled = T0 + 3 * H + SETTLE + CLOCK_MARGIN
    assert TOKEN.horizon(target, settled, SETTLE) == T0 + 3 * H
    assert TOKEN.horizon(target, settled - timedelta(seconds=1), SETTLE) == T0 + 2 * H
    assert TOKEN.horizon(target, settled, SETTLE) == settled_horizon(parse_interval("1h"), settled)
    event_at = T0 + timedelta(milliseconds=1234)
    instrument = parse_instrument(*SPARSE)
    after = event_at + SETTLE + CLOCK_MARGIN
    assert EVENTS.horizon(instrument, after, SETTLE) == event_at
    assert EVENTS.horizon(instrument, after, SETTLE) == MILLISECOND.floor(
        after - SETTLE - CLOCK_MARGIN
    )
    assert not hasattr(Route, "settles_at")


async def test_settled_before_and_final_before_agree() -> None:
    now = T0 + 5 * H + timedelta(minutes=7)
    client = LiquidationClient(base_url="http://127.0.0.1:1", now=lambda: now, settle="2h")
    # The 02:00 bucket closed at 03:00, final at 05:00 and the margin.
    assert client.settled_before("1h") == client.final_before(TOKEN, tok("eth")) == T0 + 3 * H
    assert client.settled_before("4h") == client.final_before(TOKEN, tok("eth", "4h")) == T0
    instrument = parse_instrument(*SPARSE)
    assert client.final_before(EVENTS, instrument) == now - 2 * H - CLOCK_MARGIN
    await client.aclose()


def test_the_recheck_window_is_one_rule() -> None:
    newest = T0 + 10 * D
    assert TOKEN.recheck_from(tok("btc"), newest, D, 1000) == newest - D
    assert TOKEN.recheck_from(tok("btc"), newest, D, 10) == newest - 10 * H  # a page at most
    assert TOKEN.recheck_from(tok("btc"), newest, timedelta(0), 1000) == newest  # off
    assert TOKEN.recheck_from(tok("btc"), newest, timedelta(minutes=90), 1000) == newest - H
    assert EVENTS.recheck_from(parse_instrument(*SPARSE), newest, D, 1000) == newest - H
