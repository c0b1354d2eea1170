"""The emulator end to end, over loopback with plain aiohttp (no kaiko-liq client code)."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from kaiko_liq.emulator import (
    DROPPED,
    EmulatorConfig,
    RunningEmulator,
    create_app,
    running_emulator,
)
from kaiko_liq.emulator import rows_for as rows_at
from kaiko_liq.models import Envelope, LiquidationRow, decode_envelope, decode_rows
from tests.conftest import FIXED_NOW, EmulatorFactory
from tests.seed import SEED_REQUEST, seed_response_json

PATH = "/v2/data/liquidation.v1/token/"


def rows_for(*args: Any, **kwargs: Any) -> list[LiquidationRow]:
    """The data as the test emulators serve it: on the fixed clock, unless told otherwise."""
    kwargs.setdefault("now", FIXED_NOW)
    return rows_at(*args, **kwargs)


KEY = {"X-Api-Key": "test-key"}


async def get(
    url: str, headers: dict[str, str] | None = None, /, **params: str
) -> tuple[int, dict[str, str], bytes]:
    """One GET on a fresh session: status, headers, decoded body."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, params=params or None, headers=KEY if headers is None else headers) as r,
    ):
        return r.status, dict(r.headers), await r.read()


async def get_json(url: str, **params: str) -> tuple[int, Any]:
    status, _, body = await get(url, **params)
    return status, json.loads(body)


async def all_pages(url: str, **params: str) -> list[dict[str, Any]]:
    """Follow next_url exactly as received, adding nothing, until a page has none."""
    pages: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(headers=KEY) as session:
        next_url: str | None = url
        while next_url is not None:
            async with session.get(next_url, params=None if pages else params) as r:
                assert r.status == 200, await r.text()
                page = await r.json()
            pages.append(page)
            next_url = page.get("next_url")
            assert ("continuation_token" in page) == (next_url is not None)
            assert len(pages) < 1000, "paging does not end"
    return pages


def page_rows(pages: list[dict[str, Any]]) -> list[LiquidationRow]:
    return [row for page in pages for row in decode_rows(msgspec.json.encode(page["data"]))]


# --- the seed's example -------------------------------------------------------------------


async def test_answer_to_the_seed_request_matches_the_seed_field_for_field(
    emulator: RunningEmulator,
) -> None:
    seed = json.loads(seed_response_json())
    status, ours = await get_json(emulator.base_url + SEED_REQUEST)
    assert status == 200

    assert set(ours) == set(seed) | {"result"}  # result: from Kaiko's envelope docs
    assert ours["result"] == "success"
    assert list(ours["query"]) == list(seed["query"])
    for key, value in seed["query"].items():
        if key != "request_time":
            assert ours["query"][key] == value, key
    assert ours["access"] == seed["access"]
    assert isinstance(ours["answer_timestamp"], int)
    assert ours["answer_time"].endswith("Z")

    assert [row["interval_time"] for row in ours["data"]] == [
        "2025-02-27T23:00:00Z",
        "2025-02-27T22:00:00Z",
    ]
    first, seed_first = ours["data"][0], seed["data"][0]
    assert list(first) == list(seed_first)
    assert first["interval_timestamp"] == seed_first["interval_timestamp"]  # nanoseconds
    for ours_ex in first["exchanges"]:
        assert list(ours_ex) == list(seed_first["exchanges"][0])

    assert ours["continuation_token"]
    next_url = urlsplit(ours["next_url"])
    assert f"{next_url.scheme}://{next_url.netloc}" == emulator.base_url
    assert next_url.path == "/v2/data/liquidation.v1/token/eth"
    assert parse_qs(next_url.query) == {"continuation_token": [ours["continuation_token"]]}


async def test_the_seed_answer_decodes_with_the_client_models(emulator: RunningEmulator) -> None:
    _, _, body = await get(emulator.base_url + SEED_REQUEST)
    envelope = decode_envelope(body)
    rows = decode_rows(envelope.data)
    assert [r.interval_time for r in rows] == [
        datetime(2025, 2, 27, 23, tzinfo=UTC),
        datetime(2025, 2, 27, 22, tzinfo=UTC),
    ]
    assert rows == rows_for("eth", "2025-02-27T22:00:00Z", "2025-02-28T00:00:00Z")[::-1]


# --- paging ---------------------------------------------------------------------------------

WINDOW = {"start_time": "2025-03-01T05:30:00Z", "end_time": "2025-03-04T17:00:01Z"}


@pytest.mark.parametrize("sort", ["asc", "desc"])
@pytest.mark.parametrize(("asset", "interval"), [("ltc", "1h"), ("btc", "1h"), ("sol", "5h")])
async def test_paging_covers_the_snapped_window_once_in_order(
    emulator: RunningEmulator, asset: str, interval: str, sort: str
) -> None:
    pages = await all_pages(
        emulator.base_url + PATH + asset, interval=interval, sort=sort, page_size="7", **WINDOW
    )
    want = rows_for(asset, WINDOW["start_time"], WINDOW["end_time"], interval)
    assert page_rows(pages) == (want if sort == "asc" else want[::-1])
    assert all(len(p["data"]) == 7 for p in pages[:-1])
    _assert_windows_tile(pages, sort)


def _assert_windows_tile(pages: list[dict[str, Any]], sort: str) -> None:
    """Each page's window joins the next; together they are the snapped window exactly."""
    q0 = pages[0]["query"]
    windows = [(p["query"]["start_time"], p["query"]["end_time"]) for p in pages]
    if sort == "desc":
        windows.reverse()
    assert windows[0][0] == q0["data_start_time"]
    assert windows[-1][1] == q0["data_end_time"]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    for page in pages:
        q = page["query"]
        start, end = q["start_timestamp"] * 10**6, q["end_timestamp"] * 10**6
        assert all(start <= row["interval_timestamp"] < end for row in page["data"])
        # The continued pages echo the first request, not the token.
        assert q["query_start_time"] == WINDOW["start_time"]
        assert q["page_size"] == q0["page_size"]


async def test_page_cap_serves_fewer_rows_than_asked_and_still_covers_everything(
    make_emulator: EmulatorFactory,
) -> None:
    emu = await make_emulator(page_cap=5)
    pages = await all_pages(emu.base_url + PATH + "eth", page_size="1000", sort="asc", **WINDOW)
    assert max(len(p["data"]) for p in pages) == 5
    assert page_rows(pages) == rows_for("eth", WINDOW["start_time"], WINDOW["end_time"])
    _assert_windows_tile(pages, "asc")


@pytest.mark.parametrize("empty_last_page", [False, True])
async def test_a_full_last_page_gets_a_next_url_only_with_empty_last_page(
    make_emulator: EmulatorFactory, empty_last_page: bool
) -> None:
    emu = await make_emulator(empty_last_page=empty_last_page)
    window = {"start_time": "2025-03-01T00:00:00Z", "end_time": "2025-03-02T00:00:00Z"}
    n = len(rows_for("ltc", window["start_time"], window["end_time"]))
    assert n > 1
    for sort in ("asc", "desc"):
        pages = await all_pages(emu.base_url + PATH + "ltc", page_size=str(n), sort=sort, **window)
        if empty_last_page:
            assert [len(p["data"]) for p in pages] == [n, 0]
        else:
            assert [len(p["data"]) for p in pages] == [n]
        _assert_windows_tile_window(pages, sort, window)


def _assert_windows_tile_window(
    pages: list[dict[str, Any]], sort: str, window: dict[str, str]
) -> None:
    spans = [(p["query"]["start_time"], p["query"]["end_time"]) for p in pages]
    if sort == "desc":
        spans.reverse()
    assert spans[0][0] == window["start_time"] and spans[-1][1] == window["end_time"]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))


async def test_outside_the_data_range_is_empty_not_an_error(emulator: RunningEmulator) -> None:
    status, page = await get_json(
        emulator.base_url + PATH + "btc",
        start_time="2020-01-01T00:00:00Z",
        end_time="2021-01-01T00:00:00Z",
    )
    assert status == 200 and page["data"] == [] and "next_url" not in page
    assert page["query"]["start_time"] == "2020-01-01T00:00:00Z"


async def test_defaults_are_the_data_range_desc_1h_and_100_rows(emulator: RunningEmulator) -> None:
    status, page = await get_json(emulator.base_url + PATH + "btc")
    assert status == 200
    q = page["query"]
    assert (q["interval"], q["sort"], q["page_size"]) == ("1h", "desc", 100)
    assert (q["data_start_time"], q["data_end_time"]) == (
        "2025-01-08T00:00:00Z",
        "2026-11-01T00:00:00Z",
    )
    assert len(page["data"]) == 100
    assert page["data"][0]["interval_time"] == "2026-10-31T23:00:00Z"


async def test_a_token_makes_other_parameters_irrelevant(emulator: RunningEmulator) -> None:
    url = emulator.base_url + PATH + "eth"
    _, first = await get_json(url, page_size="3", sort="asc", **WINDOW)
    token = first["continuation_token"]
    _, plain = await get_json(url, continuation_token=token)
    _, noisy = await get_json(url, continuation_token=token, page_size="500", sort="desc")
    assert noisy["data"] == plain["data"] and len(plain["data"]) == 3
    assert noisy["query"]["sort"] == "asc"


async def test_the_same_query_gives_the_same_bytes(make_emulator: EmulatorFactory) -> None:
    a, b = await make_emulator(seed=7), await make_emulator(seed=7)
    other = await make_emulator(seed=8)
    bodies = [
        (await get(emu.base_url + PATH + "sol", page_size="200", **WINDOW))[2]
        for emu in (a, a, b, other)
    ]
    data = [bytes(decode_envelope(body).data or b"") for body in bodies]
    assert data[0] == data[1] == data[2]
    assert data[3] != data[0]


async def test_coarse_pages_equal_the_pure_accessor(emulator: RunningEmulator) -> None:
    pages = await all_pages(
        emulator.base_url + PATH + "xrp",
        interval="1d",
        sort="asc",
        start_time="2025-01-01T00:00:00Z",
        end_time="2025-04-01T00:00:00Z",
        page_size="1000",
    )
    rows = page_rows(pages)
    assert rows == rows_for("xrp", "2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z", "1d")
    assert rows[0].interval_time == datetime(2025, 1, 8, tzinfo=UTC)  # DATA_START
    assert len(rows) == 31 + 28 + 31 - 7


# --- gzip -----------------------------------------------------------------------------------


async def test_gzip_is_served_when_asked_and_only_then(emulator: RunningEmulator) -> None:
    url = emulator.base_url + PATH + "btc"
    params = {"page_size": "1000", "sort": "asc"}
    async with aiohttp.ClientSession(auto_decompress=False, headers=KEY) as session:
        bodies: dict[str, list[Envelope]] = {}
        for encoding in ("gzip", "gzip, deflate, br", "identity"):
            for _ in range(2):  # the second answer comes from the compressed-rows cache
                async with session.get(
                    url, params=params, headers={"Accept-Encoding": encoding}
                ) as r:
                    assert r.status == 200
                    raw = await r.read()
                    gzipped = r.headers.get("Content-Encoding") == "gzip"
                assert gzipped == (encoding != "identity")
                if gzipped:
                    one_member = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    plain = one_member.decompress(raw)
                    assert one_member.eof and not one_member.unused_data
                    assert plain == gzip.decompress(raw)
                    raw = plain
                bodies.setdefault(encoding, []).append(decode_envelope(raw))
    datas = {bytes(e.data or b"") for envs in bodies.values() for e in envs}
    assert len(datas) == 1
    tokens = {e.continuation_token for envs in bodies.values() for e in envs}
    assert len(tokens) == 1 and None not in tokens


async def test_gzip_off_serves_every_page_as_it_is(make_emulator: EmulatorFactory) -> None:
    # What --emulator runs in process: no compressing for a socket inside one process.
    emu = await make_emulator(gzip=False)
    params = {"page_size": "1000", "sort": "asc"}
    gzip_please = {"Accept-Encoding": "gzip"}
    async with (
        aiohttp.ClientSession(auto_decompress=False, headers=KEY) as session,
        session.get(emu.base_url + PATH + "btc", params=params, headers=gzip_please) as r,
    ):
        assert r.status == 200 and "Content-Encoding" not in r.headers
        raw = await r.read()
    assert len(decode_envelope(raw).data or b"") > 0


# --- errors ---------------------------------------------------------------------------------


async def _error(
    url: str, status: int, headers: dict[str, str] | None = None, /, **params: str
) -> str:
    got, response_headers, body = await get(url, headers, **params)
    assert got == status, body
    assert response_headers["Content-Type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["result"] == "error" and set(answer) == {"result", "message"}
    return str(answer["message"])


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": ""}, {"X-Api-Key": "wrong"}])
async def test_a_missing_or_wrong_key_is_401(
    make_emulator: EmulatorFactory, api_key: str, headers: dict[str, str]
) -> None:
    emu = await make_emulator(api_key=api_key)
    message = await _error(emu.base_url + PATH + "eth", 401, headers)
    assert "wrong" not in message
    status, _, _ = await get(emu.base_url + PATH + "eth", {"X-Api-Key": api_key})
    assert status == 200


async def test_without_a_configured_key_any_non_empty_key_is_accepted(
    emulator: RunningEmulator,
) -> None:
    assert (await get(emulator.base_url + PATH + "eth", {"X-Api-Key": "anything"}))[0] == 200
    await _error(emulator.base_url + PATH + "eth", 401, {})


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"interval": "2w"}, "interval"),
        ({"interval": "25h"}, "interval"),
        ({"interval": "0h"}, "interval"),
        ({"sort": "up"}, "sort"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "1001"}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"end_time": "2025-13-01"}, "end_time"),
        ({"start_time": "0001-01-01T00:00:00+01:00"}, "start_time"),
        ({"start_time": "2025-03-02", "end_time": "2025-03-01"}, "start_time"),
        ({"start_time": "2025-03-01", "end_time": "2025-03-01"}, "end_time"),
    ],
)
async def test_a_bad_parameter_is_a_400_that_names_it(
    emulator: RunningEmulator, params: dict[str, str], named: str
) -> None:
    message = await _error(emulator.base_url + PATH + "eth", 400, None, **params)
    assert named in message


@pytest.mark.parametrize(
    "garble",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: t[:20],
        lambda t: "!!!" + t,
        lambda t: "",
        lambda t: "x" * 5000,
    ],
)
async def test_a_forged_or_garbled_token_is_a_400(emulator: RunningEmulator, garble: Any) -> None:
    _, page = await get_json(emulator.base_url + PATH + "eth", page_size="2")
    message = await _error(
        emulator.base_url + PATH + "eth",
        400,
        None,
        continuation_token=garble(page["continuation_token"]),
    )
    assert "continuation_token" in message


async def test_a_token_from_another_emulator_seed_is_a_400(make_emulator: EmulatorFactory) -> None:
    a, b = await make_emulator(seed=1), await make_emulator(seed=2)
    _, page = await get_json(a.base_url + PATH + "eth", page_size="2")
    await _error(
        b.base_url + PATH + "eth", 400, None, continuation_token=page["continuation_token"]
    )


async def test_a_token_on_another_assets_path_is_a_400(emulator: RunningEmulator) -> None:
    _, page = await get_json(emulator.base_url + PATH + "eth", page_size="2")
    url = page["next_url"].replace("/token/eth?", "/token/btc?")
    status, _, body = await get(url)
    assert status == 400 and "eth" in json.loads(body)["message"]


async def test_an_unknown_asset_or_route_is_a_json_404(emulator: RunningEmulator) -> None:
    assert "nosuchcoin" in await _error(emulator.base_url + PATH + "nosuchcoin", 404)
    await _error(emulator.base_url + "/v2/data/nothing/here", 404)


# --- rate limit, faults, stats --------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [True, False])
async def test_over_the_rate_limit_is_a_429(
    make_emulator: EmulatorFactory, retry_after: bool
) -> None:
    emu = await make_emulator(rate_limit=1, retry_after=retry_after)
    url = emu.base_url + PATH + "eth"
    assert (await get(url))[0] == 200  # the burst: one second's worth, i.e. one request
    status, headers, body = await get(url)
    assert status == 429
    assert json.loads(body) == {"result": "error", "message": "Rate limit reached"}
    if retry_after:
        assert int(headers["Retry-After"]) >= 1
    else:
        assert "Retry-After" not in headers
    # The limit is per key: another key has its own bucket.
    assert (await get(url, {"X-Api-Key": "someone-else"}))[0] == 200
    assert emu.stats.by_status == Counter({200: 2, 429: 1})


async def test_faults_appear_in_stats_and_reach_the_client(make_emulator: EmulatorFactory) -> None:
    emu = await make_emulator(fault_rate=1.0, seed=5)
    url = emu.base_url + PATH + "eth"
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession(headers=KEY) as session:
        for _ in range(40):
            try:
                async with session.get(url) as r:
                    await r.read()
                    seen[str(r.status)] += 1
            except aiohttp.ClientPayloadError:
                seen["truncate"] += 1
            except aiohttp.ServerDisconnectedError:
                seen["drop"] += 1
    stats = emu.stats
    assert set(seen) == set(stats.faults) == {"500", "502", "503", "drop", "truncate"}
    # aiohttp resends a GET once after a dropped connection, so the server saw more.
    assert (
        stats.total_requests
        == sum(stats.faults.values())
        == 40 + stats.faults["drop"] - seen["drop"]
    )
    assert stats.by_status[DROPPED] == stats.faults["drop"]
    assert stats.by_status[200] == stats.faults["truncate"]  # headers said 200


async def test_a_fault_rate_fails_about_that_share(make_emulator: EmulatorFactory) -> None:
    emu = await make_emulator(fault_rate=0.2, seed=11)
    url = emu.base_url + PATH + "btc"
    async with aiohttp.ClientSession(headers=KEY) as session:
        for _ in range(100):
            try:
                async with session.get(url, params={"page_size": "5"}) as r:
                    await r.read()
            except aiohttp.ClientError:
                pass
    faults = sum(emu.stats.faults.values())
    assert 0.08 * emu.stats.total_requests <= faults <= 0.35 * emu.stats.total_requests


async def test_stats_count_statuses_peak_concurrency_and_reset(
    make_emulator: EmulatorFactory,
) -> None:
    emu = await make_emulator(latency=0.05)
    url = emu.base_url + PATH + "eth"
    async with aiohttp.ClientSession(headers=KEY) as session:

        async def one(path: str) -> int:
            async with session.get(path) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(one(url) for _ in range(5)), one(url + "x"))
    assert sorted(statuses) == [200] * 5 + [404]
    assert emu.stats.by_status == Counter({200: 5, 404: 1})
    assert emu.stats.total_requests == 6
    assert emu.stats.peak_concurrency == 6
    assert emu.stats.in_flight == 0
    emu.stats.reset()
    assert (emu.stats.total_requests, emu.stats.peak_concurrency) == (0, 0)
    assert not emu.stats.by_status and not emu.stats.faults


async def test_running_emulator_exposes_its_config_and_a_url_without_slash() -> None:
    config = EmulatorConfig(seed=3, page_cap=10)
    async with running_emulator(config) as emu:
        assert emu.config is config
        assert emu.base_url.startswith("http://127.0.0.1:") and not emu.base_url.endswith("/")


async def test_the_rate_limit_over_http_on_a_fake_clock() -> None:
    """create_app takes the limiter's clock, so recovery is checked without sleeping."""
    now = [1000.0]
    app = create_app(EmulatorConfig(rate_limit=0.2, retry_after=True), clock=lambda: now[0])
    async with TestClient(TestServer(app)) as client:

        async def status() -> tuple[int, str | None]:
            async with client.get(PATH + "eth", headers=KEY) as r:
                await r.read()
                return r.status, r.headers.get("Retry-After")

        assert await status() == (200, None)
        assert await status() == (429, "5")  # one request per 5 s: the next in 5 s
        now[0] += 4.5
        assert await status() == (429, "1")  # half a second left: rounded up to 1
        now[0] += 0.5
        assert await status() == (200, None)


async def test_a_429_has_no_retry_after_by_default_and_limits_read_per_minute() -> None:
    now = [1000.0]
    app = create_app(EmulatorConfig(rate_limit="60/min"), clock=lambda: now[0])
    async with TestClient(TestServer(app)) as client:

        async def status() -> tuple[int, str | None]:
            async with client.get(PATH + "eth", headers=KEY) as r:
                await r.read()
                return r.status, r.headers.get("Retry-After")

        assert await status() == (200, None)
        assert await status() == (429, None)  # 60/min is one a second; Kaiko sends no header
        now[0] += 1.0
        assert await status() == (200, None)


# --- paging by time -------------------------------------------------------------------------


@pytest.mark.parametrize("sort", ["asc", "desc"])
async def test_time_paging_serves_windows_of_page_size_buckets_even_when_empty(
    make_emulator: EmulatorFactory, sort: str
) -> None:
    emu = await make_emulator(paging="time")
    window = {"start_time": "2025-01-08T00:00:00Z", "end_time": "2026-11-01T00:00:00Z"}
    pages = await all_pages(emu.base_url + PATH + "pepe", page_size="1000", sort=sort, **window)
    assert len(pages) == 16  # 15,888 hours in pages of 1000 hours
    empty = [p for p in pages[:-1] if not p["data"]]
    assert empty and all(p["next_url"] for p in empty)
    want = rows_for("pepe", window["start_time"], window["end_time"], now=FIXED_NOW)
    assert page_rows(pages) == (want if sort == "asc" else want[::-1])
    _assert_windows_tile_window(pages, sort, window)
    for page in pages[:-1]:
        q = page["query"]
        assert q["end_timestamp"] - q["start_timestamp"] == 1000 * 3600 * 1000


async def test_page_cap_in_time_mode_caps_the_buckets_of_time(
    make_emulator: EmulatorFactory,
) -> None:
    emu = await make_emulator(paging="time", page_cap=6)
    pages = await all_pages(emu.base_url + PATH + "ltc", page_size="1000", sort="asc", **WINDOW)
    spans = [p["query"]["end_timestamp"] - p["query"]["start_timestamp"] for p in pages]
    assert max(spans) == 6 * 3600 * 1000 and all(len(p["data"]) <= 6 for p in pages)
    assert page_rows(pages) == rows_for("ltc", WINDOW["start_time"], WINDOW["end_time"])
    _assert_windows_tile(pages, "asc")


async def test_time_paging_with_an_empty_last_page(make_emulator: EmulatorFactory) -> None:
    emu = await make_emulator(paging="time", empty_last_page=True)
    window = {"start_time": "2025-03-01T00:00:00Z", "end_time": "2025-03-02T00:00:00Z"}
    pages = await all_pages(emu.base_url + PATH + "btc", page_size="12", sort="asc", **window)
    assert [len(p["data"]) for p in pages][-1] == 0 and len(pages) == 3
    _assert_windows_tile_window(pages, "asc", window)


# --- data up to now -------------------------------------------------------------------------


async def test_the_open_bucket_grows_between_requests_and_nothing_lies_after_now(
    make_emulator: EmulatorFactory,
) -> None:
    clock = [datetime(2026, 3, 10, 14, 20, tzinfo=UTC)]
    emu = await make_emulator(now=lambda: clock[0])
    url = emu.base_url + PATH + "btc"
    seen = []
    for _ in range(4):
        status, page = await get_json(url, page_size="3")  # no end_time: up to now
        assert status == 200
        assert page["data"][0]["interval_time"] == "2026-03-10T14:00:00Z"
        assert page["query"]["data_end_time"] == "2026-03-10T15:00:00Z"
        assert page["query"]["request_time"].startswith("2026-03-10T14:")
        seen.append(page["data"][0]["total_trades"])
        clock[0] += timedelta(minutes=10)
    assert seen == sorted(seen) and seen[0] < seen[-1]
    final = rows_for("btc", "2026-03-10T14:00:00Z", "2026-03-10T15:00:00Z")[0]
    assert seen[-1] < final.total_trades
    _, later = await get_json(url, start_time="2026-03-10T15:00:00Z", end_time="2026-04-01")
    assert later["data"] == [] and "next_url" not in later


async def test_6000_per_minute_takes_a_burst_of_100_at_once() -> None:
    """Kaiko's 6000/min for one key: a second's worth (and a tenth more) at once, then
    100 a second; another key is not affected."""
    now = [50.0]
    app = create_app(EmulatorConfig(rate_limit="6000/min"), clock=lambda: now[0])
    async with TestClient(TestServer(app)) as client:

        async def status(key: str = "k") -> int:
            async with client.get(PATH + "eth", headers={"X-Api-Key": key}) as r:
                await r.read()
                return r.status

        assert [await status() for _ in range(110)] == [200] * 110
        assert await status() == 429
        assert await status("other") == 200
        now[0] += 0.01  # one more request's worth
        assert [await status(), await status()] == [200, 429]
