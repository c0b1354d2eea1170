"""Reliability: every error kind and its message, retries and Retry-After, the adaptive
rate, a soak under faults, security of the key and of next_url, cancellation and cleanup.

Server behaviour comes from aioresponses where a test needs one exact answer, and from
the emulator (``make_emulator``) where it needs a real socket, real faults or a real
rate limit. Retries use tiny delays so that nothing here sleeps for long.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import re
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import anyio
import pytest
from yarl import URL

from kaiko_liq.client import LiquidationClient
from kaiko_liq.emulator import RunningEmulator, rows_for
from kaiko_liq.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    IncompleteFetchError,
    InvalidArgumentError,
    KaikoLiqError,
    MalformedBodyError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    UnsafeURLError,
)
from kaiko_liq.models import LiquidationRow
from kaiko_liq.query import parse_interval
from kaiko_liq.retry import RETRY_AFTER_JITTER_FRACTION, RetryPolicy
from kaiko_liq.routes.token import TOKEN, Token
from kaiko_liq.testing import no_sleeps
from kaiko_liq.transport import Timeouts
from tests.conftest import FIXED_NOW
from tests.mock_http import CallbackResult, aioresponses

BASE = "https://us.market-api.kaiko.io"
PATH = "/v2/data/liquidation.v1/token/eth"
ANY_KAIKO = re.compile(r"^https://us\.market-api\.kaiko\.io/.*$")
KEY = "test-key-reliability"
FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01, max_retry_after=0.05)
DAY = timedelta(days=1)

MakeEmulator = Callable[..., Awaitable[RunningEmulator]]


def row(when: datetime) -> dict[str, Any]:
    ns = int(when.timestamp()) * 1_000_000_000
    return {
        "interval_time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "interval_timestamp": ns,
        "total_trades": 3,
        "total_amount": 30.5,
        "long_trades": 1,
        "long_amount": 10.25,
        "short_trades": 2,
        "short_amount": 20.25,
        "exchanges": [
            {
                "exchange": "bbit",
                "total_trades": 3,
                "total_amount": 30.5,
                "long_trades": 1,
                "long_amount": 10.25,
                "short_trades": 2,
                "short_amount": 20.25,
            }
        ],
    }


def ok_page(*times: datetime, next_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"result": "success", "data": [row(x) for x in times]}
    if next_url is not None:
        body["next_url"] = next_url
    return body


def error_body(message: str) -> dict[str, Any]:
    return {"result": "error", "message": message}


def count(m: aioresponses) -> int:
    return sum(len(calls) for calls in m.requests.values())


def client_tasks() -> list[asyncio.Task[Any]]:
    """Pending tasks running the client's code (the emulator shares the loop: skip it)."""
    current = asyncio.current_task()
    found = []
    for task in asyncio.all_tasks():
        if task is current or task.done():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if "kaiko_liq" in filename and "emulator" not in filename:
            found.append(task)
    return found


@pytest.fixture(autouse=True)
def no_real_sleeps(request: pytest.FixtureRequest) -> Iterator[None]:
    """Against aioresponses, retries and 429 holds do not wait (kaiko_liq.testing);
    tests against the emulator's real-time rate limit keep the real clock."""
    if "mocked" not in request.fixturenames:
        yield
        return
    with no_sleeps():
        yield


@pytest.fixture
async def client() -> AsyncIterator[LiquidationClient]:
    async with LiquidationClient(api_key=KEY, rate_limit=10_000, retry=FAST) as c:
        yield c


START, END = "2025-02-01T00:00:00Z", "2025-02-01T06:00:00Z"  # one shard at any page size
FIRST = re.compile(r"^https://us\.market-api\.kaiko\.io/v2/data/liquidation\.v1/token/eth\?.*$")


# -- error kinds, with their messages --------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "hint"),
    [
        (400, BadRequestError, "rejected a parameter"),
        (401, AuthenticationError, "KAIKO_API_KEY"),
        (403, AuthenticationError, "KAIKO_API_KEY"),
        (404, NotFoundError, "unknown asset"),
        (405, APIError, ""),
        (406, APIError, ""),
    ],
)
async def test_client_errors_are_raised_as_is_after_exactly_one_request(
    mocked: aioresponses,
    client: LiquidationClient,
    status: int,
    kind: type[APIError],
    hint: str,
) -> None:
    mocked.get(FIRST, status=status, payload=error_body("page_size: must be 1..1000"), repeat=True)
    with pytest.raises(kind) as info:
        await client.fetch("eth", START, END)
    assert info.value.status == status
    assert info.value.message == "page_size: must be 1..1000"
    text = str(info.value)
    assert f"HTTP {status}" in text and "page_size: must be 1..1000" in text and hint in text
    assert PATH in text  # says what was asked
    assert count(mocked) == 1
    assert client.stats.retries == 0


async def test_a_400_on_a_continuation_is_not_retried_either(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    t0 = datetime(2025, 2, 1, tzinfo=UTC)
    nxt = f"{BASE}{PATH}?continuation_token=expired"
    mocked.get(FIRST, payload=ok_page(t0, next_url=nxt))
    mocked.get(nxt, status=400, payload=error_body("continuation_token expired"), repeat=True)
    with pytest.raises(BadRequestError, match="continuation_token expired"):
        await client.fetch("eth", START, END, sort="asc")
    assert count(mocked) == 2


async def test_a_200_saying_result_error_is_an_api_error(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    mocked.get(FIRST, payload=error_body("Internal query failure"), repeat=True)
    with pytest.raises(APIError, match="Internal query failure") as info:
        await client.fetch("eth", START, END)
    assert info.value.status == 200
    assert count(mocked) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried_and_then_succeed(
    mocked: aioresponses, client: LiquidationClient, status: int
) -> None:
    t0 = datetime(2025, 2, 1, tzinfo=UTC)
    mocked.get(FIRST, status=status, payload=error_body("later"))
    mocked.get(FIRST, status=status, payload=error_body("later"))
    mocked.get(FIRST, payload=ok_page(t0))
    rows = await client.fetch("eth", START, END)
    assert [r.interval_time for r in rows] == [t0]
    assert count(mocked) == 3
    assert client.stats.retries == 2
    assert client.stats.by_status[status] == 2


async def test_429_after_retries_run_out_is_a_rate_limited_error(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    mocked.get(FIRST, status=429, payload=error_body("Rate limit reached"), repeat=True)
    with pytest.raises(IncompleteFetchError) as info:
        await client.fetch("eth", START, END)
    [failure] = info.value.failed
    assert isinstance(failure.error, RateLimitedError)
    assert "Rate limit reached" in str(failure.error)
    assert "lower rate_limit or max_concurrency" in str(failure.error)
    assert count(mocked) == FAST.max_attempts
    assert client.stats.rate_limited == FAST.max_attempts


async def test_5xx_after_retries_names_the_failed_sub_range_and_the_completed_ones(
    mocked: aioresponses,
) -> None:
    # Three one-day shards (page_size=24); the middle one always answers 503.
    days = [datetime(2025, 2, d, tzinfo=UTC) for d in (1, 2, 3)]
    bad = days[1].strftime("%Y-%m-%dT%H:%M:%SZ")

    def answer(url: URL, **kwargs: Any) -> CallbackResult:
        if url.query["start_time"] == bad:
            return CallbackResult(status=503, payload=error_body("Service under maintenance"))
        first = datetime.fromisoformat(url.query["start_time"].replace("Z", "+00:00"))
        return CallbackResult(payload=ok_page(*(first + timedelta(hours=h) for h in range(24))))

    mocked.get(FIRST, callback=answer, repeat=True)
    async with LiquidationClient(api_key=KEY, rate_limit=10_000, retry=FAST) as client:
        with pytest.raises(IncompleteFetchError) as info:
            await client.fetch("eth", days[0], days[2] + DAY, sort="asc", page_size=24)
    exc = info.value
    [failure] = exc.failed
    assert (failure.start, failure.end) == (days[1], days[2])
    assert isinstance(failure.error, ServerError) and failure.error.status == 503
    assert sorted(exc.completed) == [(days[0], days[1]), (days[2], days[2] + DAY)]
    text = str(exc)
    assert "1 of 3 sub-ranges failed" in text and "2 completed" in text
    assert days[1].isoformat() in text and days[2].isoformat() in text
    assert "Service under maintenance" in text and "try again later" in text


async def test_a_stream_yields_everything_before_a_failed_shard_then_names_it(
    mocked: aioresponses,
) -> None:
    # Four one-day shards, ascending; the third always answers 500.
    days = [datetime(2025, 2, d, tzinfo=UTC) for d in (1, 2, 3, 4, 5)]
    bad = days[2].strftime("%Y-%m-%dT%H:%M:%SZ")

    def answer(url: URL, **kwargs: Any) -> CallbackResult:
        if url.query["start_time"] == bad:
            return CallbackResult(status=500, payload=error_body("Try again later"))
        first = datetime.fromisoformat(url.query["start_time"].replace("Z", "+00:00"))
        return CallbackResult(payload=ok_page(*(first + timedelta(hours=h) for h in range(24))))

    mocked.get(FIRST, callback=answer, repeat=True)
    received: list[LiquidationRow] = []
    async with LiquidationClient(api_key=KEY, rate_limit=10_000, retry=FAST) as client:
        with pytest.raises(IncompleteFetchError) as info:
            async for r in client.stream("eth", days[0], days[4], sort="asc", page_size=24):
                received.append(r)
    assert len(received) == 48 and received[-1].interval_time == days[2] - timedelta(hours=1)
    exc = info.value
    assert [(f.start, f.end) for f in exc.failed] == [(days[2], days[3])]
    assert isinstance(exc.failed[0].error, ServerError)
    assert exc.completed == [(days[0], days[1]), (days[1], days[2])]
    assert exc.pending == [(days[3], days[4])]
    assert "1 of 4 sub-ranges failed, 2 completed, 1 not fetched" in str(exc)
    assert isinstance(exc.__cause__, ServerError)


@pytest.mark.parametrize(
    "exception",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        aiohttp.ClientPayloadError("Response payload is not completed"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
)
async def test_a_dropped_connection_after_retries_is_a_transport_error(
    mocked: aioresponses, client: LiquidationClient, exception: Exception
) -> None:
    mocked.get(FIRST, exception=exception, repeat=True)
    with pytest.raises(IncompleteFetchError) as info:
        await client.fetch("eth", START, END)
    [failure] = info.value.failed
    assert type(failure.error) is TransportError
    assert "connection failed" in str(failure.error) and PATH in str(failure.error)
    assert count(mocked) == FAST.max_attempts


async def test_a_timeout_after_retries_is_a_request_timeout_error(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    mocked.get(FIRST, timeout=True, repeat=True)
    with pytest.raises(IncompleteFetchError) as info:
        await client.fetch("eth", START, END)
    [failure] = info.value.failed
    assert isinstance(failure.error, RequestTimeoutError)
    assert "no answer within" in str(failure.error)
    assert count(mocked) == FAST.max_attempts


async def test_a_slow_server_hits_the_read_timeout(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(latency=1.0)
    async with LiquidationClient(
        base_url=emu.base_url,
        rate_limit=10_000,
        timeouts=Timeouts(connect=1.0, read=0.05),
        retry=RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01),
    ) as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(IncompleteFetchError) as info:
            await client.fetch("eth", START, END)
        elapsed = asyncio.get_running_loop().time() - started
    [failure] = info.value.failed
    assert isinstance(failure.error, RequestTimeoutError)
    assert "0.05s (read)" in str(failure.error)
    assert elapsed < 0.8  # two attempts of ~0.05 s, not the server's 1 s


async def test_a_non_json_200_is_retried_then_a_malformed_body_error(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    mocked.get(FIRST, body="<html>502 Bad Gateway</html>", content_type="text/html", repeat=True)
    with pytest.raises(IncompleteFetchError) as info:
        await client.fetch("eth", START, END)
    [failure] = info.value.failed
    assert isinstance(failure.error, MalformedBodyError)
    assert "not JSON" in str(failure.error)
    assert count(mocked) == FAST.max_attempts


async def test_a_body_cut_short_once_is_retried_and_recovers(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    t0 = datetime(2025, 2, 1, tzinfo=UTC)
    mocked.get(FIRST, body=b'{"result": "success", "data": [{"interval_ti')
    mocked.get(FIRST, payload=ok_page(t0))
    assert [r.interval_time for r in await client.fetch("eth", START, END)] == [t0]
    assert count(mocked) == 2


async def test_401_from_the_emulator_is_an_authentication_error(
    make_emulator: MakeEmulator,
) -> None:
    emu = await make_emulator(api_key="right")
    async with LiquidationClient(api_key="wrong", base_url=emu.base_url) as client:
        with pytest.raises(AuthenticationError, match="Invalid API key") as info:
            await client.fetch("eth", START, END)
    assert info.value.status == 401
    assert "check KAIKO_API_KEY" in str(info.value)
    assert emu.stats.total_requests == 1


async def test_unknown_asset_on_the_emulator_is_not_found(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator()
    async with LiquidationClient(base_url=emu.base_url) as client:
        with pytest.raises(NotFoundError, match="zzz") as info:
            await client.fetch("zzz", START, END)
    assert info.value.status == 404 and "check the asset code" in str(info.value)
    assert emu.stats.total_requests == 1


async def test_a_fatal_error_on_one_shard_stops_the_others(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(api_key="right", latency=0.02)
    async with LiquidationClient(
        api_key="wrong", base_url=emu.base_url, rate_limit=10_000, max_concurrency=4
    ) as client:
        shards = client.plan("eth", "2025-01-08", "2026-01-08", page_size=24)
        with pytest.raises(AuthenticationError):
            await client.fetch("eth", "2025-01-08", "2026-01-08", page_size=24)
        assert client_tasks() == []
    # The first answers stop everything: far fewer requests than the 365 shards.
    assert len(shards) == 365
    assert emu.stats.total_requests <= 2 * 4


# -- Retry-After --------------------------------------------------------------------------


class SleepRecorder:
    """Stands in for the transport's sleep: records each delay; sleeps only if ``really``."""

    def __init__(self, really: bool) -> None:
        self.delays: list[float] = []
        self.really = really

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.really:
            await asyncio.sleep(delay)


def record_sleeps(client: LiquidationClient, *, really: bool = False) -> SleepRecorder:
    # LiquidationClient does not expose Transport's ``sleep``/``rng`` parameters; the
    # transport reads ``self._sleep`` and ``self._rng`` at each retry, so we swap them.
    # Tests of one request's wait on a 429 pass ``adaptive_rate=False``: with it, a 429
    # also holds the shared limiter for the Retry-After, in real time (that shared hold
    # is what test_a_client_far_above_the_servers_limit_adapts measures end to end).
    recorder = SleepRecorder(really)
    client._transport._sleep = recorder
    return recorder


@pytest.mark.parametrize("header", ["2", "2.5", " 7 "])
async def test_retry_after_seconds_are_honoured_plus_a_bounded_jitter(
    mocked: aioresponses, header: str
) -> None:
    t0 = datetime(2025, 2, 1, tzinfo=UTC)
    policy = RetryPolicy(base_delay=0.25)
    mocked.get(FIRST, status=429, headers={"Retry-After": header}, payload=error_body("slow"))
    mocked.get(FIRST, payload=ok_page(t0))
    async with LiquidationClient(
        api_key=KEY, rate_limit=10_000, adaptive_rate=False, retry=policy
    ) as client:
        sleeps = record_sleeps(client)
        await client.fetch("eth", START, END)
    wait = float(header)
    [delay] = sleeps.delays
    assert wait <= delay <= wait + policy.base_delay + RETRY_AFTER_JITTER_FRACTION * wait


@pytest.mark.parametrize(("draw", "offset"), [(0.0, 0.0), (1.0, 0.25 + 0.3)])
async def test_retry_after_jitter_spans_exactly_its_documented_bound(
    mocked: aioresponses, draw: float, offset: float
) -> None:
    mocked.get(FIRST, status=503, headers={"Retry-After": "3"}, payload=error_body("maint"))
    mocked.get(FIRST, payload=ok_page())
    async with LiquidationClient(
        api_key=KEY, rate_limit=10_000, adaptive_rate=False, retry=RetryPolicy(base_delay=0.25)
    ) as client:
        sleeps = record_sleeps(client)
        client._transport._rng = lambda: draw
        await client.fetch("eth", START, END)
    assert sleeps.delays == [pytest.approx(3.0 + offset)]


async def test_retry_after_as_an_http_date_is_honoured(mocked: aioresponses) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
    header = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    mocked.get(FIRST, status=429, headers={"Retry-After": header}, payload=error_body("slow"))
    mocked.get(FIRST, payload=ok_page())
    async with LiquidationClient(api_key=KEY, rate_limit=10_000, adaptive_rate=False) as client:
        sleeps = record_sleeps(client)
        client._transport._rng = lambda: 0.0
        await client.fetch("eth", START, END)
    [delay] = sleeps.delays
    assert 27.0 <= delay <= 30.0


async def test_a_huge_retry_after_is_capped(mocked: aioresponses) -> None:
    mocked.get(FIRST, status=503, headers={"Retry-After": "86400"}, payload=error_body("m"))
    mocked.get(FIRST, payload=ok_page())
    policy = RetryPolicy(max_retry_after=5.0, base_delay=0.1)
    async with LiquidationClient(api_key=KEY, rate_limit=10_000, retry=policy) as client:
        sleeps = record_sleeps(client)
        await client.fetch("eth", START, END)
    [delay] = sleeps.delays
    assert 5.0 <= delay <= 5.0 + 0.1 + 0.5


async def test_without_retry_after_backoff_is_full_jitter_and_grows(
    mocked: aioresponses,
) -> None:
    mocked.get(FIRST, status=500, payload=error_body("later"), repeat=True)
    policy = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=3.0)
    async with LiquidationClient(api_key=KEY, rate_limit=10_000, retry=policy) as client:
        sleeps = record_sleeps(client)
        client._transport._rng = lambda: 1.0  # the top of each jitter window
        with pytest.raises(IncompleteFetchError):
            await client.fetch("eth", START, END)
    assert sleeps.delays == [0.5, 1.0, 2.0, 3.0]
    assert count(mocked) == 5


@pytest.mark.realtime
async def test_the_emulators_retry_after_is_honoured_end_to_end(
    make_emulator: MakeEmulator,
) -> None:
    # One request per second, burst of one: the second fetch is refused with
    # "Retry-After: 1" and must wait that second (really: the emulator's clock is real).
    emu = await make_emulator(rate_limit=1, retry_after=True)
    async with LiquidationClient(
        base_url=emu.base_url, rate_limit=10_000, adaptive_rate=False
    ) as client:
        sleeps = record_sleeps(client, really=True)
        client._transport._rng = lambda: 0.0
        await client.fetch("eth", START, END)  # takes the only token
        await client.fetch("eth", START, END)  # refused once, then served
    assert emu.stats.by_status[429] == 1 and emu.stats.by_status[200] == 2
    assert sleeps.delays == [1.0]


# -- adaptive rate -------------------------------------------------------------------------


@pytest.mark.realtime
@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "no-retry-after"])
async def test_a_client_far_above_the_servers_limit_adapts(
    make_emulator: MakeEmulator, retry_after: bool
) -> None:
    # Kaiko documents no Retry-After: the client must converge without one too.
    emu = await make_emulator(rate_limit=20, retry_after=retry_after)
    async with LiquidationClient(
        base_url=emu.base_url,
        rate_limit=200,
        max_concurrency=8,
        retry=RetryPolicy(max_attempts=20, base_delay=0.05, max_delay=1.0),
    ) as client:
        started = asyncio.get_running_loop().time()
        # 1-day shards: 60 requests, three seconds' worth at the server's 20/s.
        rows = await client.fetch("btc", "2025-03-01", "2025-04-30", page_size=24)
        elapsed = asyncio.get_running_loop().time() - started
    assert rows == list(reversed(rows_for("btc", "2025-03-01", "2025-04-30", now=FIXED_NOW)))
    total = sum(emu.stats.by_status.values())
    refused = emu.stats.by_status[429]
    assert refused < total / 4, (refused, total)
    assert elapsed < 10


# -- soak ---------------------------------------------------------------------------------


def random_windows(seed: int, n: int) -> list[tuple[str, datetime, datetime, str, str, int]]:
    rng = random.Random(seed)
    data_start = datetime(2025, 1, 1, tzinfo=UTC)
    windows = []
    for _ in range(n):
        interval = rng.choice(["1h", "1h", "3h", "4h", "7h", "1d"])
        span = timedelta(hours=rng.randint(1, 24 * (30 if interval == "1h" else 120)))
        start = data_start + timedelta(minutes=rng.randint(0, 60 * 24 * 700))
        windows.append(
            (
                rng.choice(["btc", "eth", "sol", "ltc"]),
                start,
                start + span,
                interval,
                rng.choice(["asc", "desc"]),
                rng.choice([24, 50, 100, 137]),
            )
        )
    return windows


async def fetch_all(
    client: LiquidationClient, windows: list[tuple[str, datetime, datetime, str, str, int]]
) -> list[list[LiquidationRow]]:
    async def one(i: int) -> None:
        asset, start, end, interval, sort, size = windows[i]
        results[i] = await client.fetch(
            asset, start, end, interval=interval, sort=sort, page_size=size
        )

    results: list[list[LiquidationRow]] = [[] for _ in windows]
    async with anyio.create_task_group() as tg:
        for i in range(len(windows)):
            tg.start_soon(one, i)
    return results


@pytest.mark.realtime
async def test_soak_faults_and_a_rate_limit_change_nothing_but_the_request_count(
    make_emulator: MakeEmulator,
) -> None:
    windows = random_windows(seed=2024, n=40)
    clean = await make_emulator()
    async with LiquidationClient(base_url=clean.base_url, rate_limit=10_000) as client:
        expected = await fetch_all(client, windows)
    clean_requests = clean.stats.total_requests

    faulty = await make_emulator(fault_rate=0.1, rate_limit=200)
    policy = RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.01, max_retry_after=0.02)
    async with LiquidationClient(
        base_url=faulty.base_url, rate_limit=150, max_concurrency=16, retry=policy
    ) as client:
        got = await fetch_all(client, windows)
        stats = client.stats
    assert got == expected
    for (asset, start, end, interval, sort, _), rows in zip(windows, expected, strict=True):
        truth = rows_for(asset, start, end, interval, now=FIXED_NOW)
        assert rows == (truth if sort == "asc" else truth[::-1])
    # Every request fails with p = 0.1 independently: attempts per page are geometric,
    # mean 1 / 0.9 = 1.11. 1.5x plus slack is a > 6-sigma bound for a few hundred pages;
    # 429s are rare as the client's 150/s stays under the server's 200/s.
    assert faulty.stats.total_requests <= clean_requests * 1.5 + 10
    # 150/s with a burst of 150 never outruns a 200/s bucket holding 200: no 429 at all.
    assert faulty.stats.by_status[429] == 0 and stats.rate_limited == 0
    faults = faulty.stats.faults
    assert faults["drop"] and faults["truncate"] and faults["500"] + faults["502"] + faults["503"]
    # Each answered fault costs the client one retry. A dropped connection may not: aiohttp
    # itself resends once when a kept-alive connection turns out closed.
    answered = faults.total() - faults["drop"]
    assert answered <= stats.retries <= faults.total() + faulty.stats.by_status[429]


# -- security --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "foreign",
    [
        "https://evil.example.com/v2/data/liquidation.v1/token/eth?continuation_token=x",
        "https://us.market-api.kaiko.io.evil.example.com/v2/data?continuation_token=x",
        "https://us.market-api.kaiko.io@evil.example.com/v2/data?continuation_token=x",
        "http://us.market-api.kaiko.io/v2/data/liquidation.v1/token/eth?continuation_token=x",
        "https://us.market-api.kaiko.io:8443/v2/data/liquidation.v1/token/eth?continuation_token=x",
        "https://eu.market-api.kaiko.io/v2/data/liquidation.v1/token/eth?continuation_token=x",
        "//evil.example.com/v2/data/liquidation.v1/token/eth?continuation_token=x",
    ],
)
async def test_a_next_url_to_another_origin_is_not_followed(
    mocked: aioresponses, client: LiquidationClient, foreign: str
) -> None:
    t0 = datetime(2025, 2, 1, tzinfo=UTC)
    mocked.get(FIRST, payload=ok_page(t0, next_url=foreign))
    mocked.get(re.compile(r"^(?!https://us\.market-api\.kaiko\.io/).*"), payload=ok_page(t0))
    with pytest.raises(UnsafeURLError, match="not followed, so the API key was not sent"):
        await client.fetch("eth", START, END)
    hosts = [url.origin() for (_, url) in mocked.requests]
    assert hosts == [URL(BASE)]
    assert count(mocked) == 1


SECRET = "sk-SECRET-0xDEADBEEF-kaiko"


async def test_the_key_never_appears_in_reprs_messages_or_logs(
    make_emulator: MakeEmulator,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    emu = await make_emulator(api_key="right")
    texts: list[str] = []
    async with LiquidationClient(api_key=SECRET, base_url=emu.base_url) as client:
        texts += [repr(client), str(client), repr(client._transport), repr(client.stats)]
        with pytest.raises(KaikoLiqError) as info:
            await client.fetch("eth", START, END)
        stream = client.stream("eth", START, END)
        texts.append(repr(stream))
        with pytest.raises(KaikoLiqError) as streamed:
            async for _ in stream:
                pass
    for exc in (info.value, streamed.value):
        chain: BaseException | None = exc
        while chain is not None:
            texts += [str(chain), repr(chain), repr(vars(chain))]
            chain = chain.__cause__ or chain.__context__
    out, err = capsys.readouterr()
    texts += [caplog.text, out, err]
    assert all(SECRET not in text for text in texts)


async def test_the_key_is_not_logged_across_retries_and_a_failed_fetch(
    mocked: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mocked.get(FIRST, status=503, payload=error_body("maintenance"), repeat=True)
    async with LiquidationClient(api_key=SECRET, rate_limit=10_000, retry=FAST) as client:
        with pytest.raises(IncompleteFetchError) as info:
            await client.fetch("eth", START, END)
    assert "retrying" in caplog.text  # the retries were logged...
    assert SECRET not in caplog.text  # ...without the key
    assert SECRET not in str(info.value) and SECRET not in repr(info.value.failed)


async def test_a_key_echoed_by_the_server_is_not_repeated_in_the_error(
    mocked: aioresponses,
) -> None:
    # Some APIs echo the key they refused; the client's message must not carry it on.
    mocked.get(FIRST, status=401, payload=error_body(f"API key {SECRET} is not valid"))
    async with LiquidationClient(api_key=SECRET, rate_limit=10_000) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.fetch("eth", START, END)
    assert SECRET not in str(info.value)
    assert SECRET not in info.value.message


@pytest.mark.parametrize(
    "base_url",
    [
        "http://example.com",
        "http://10.0.0.1:8080",
        "http://192.168.1.10",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io:8080",
        "http://us.market-api.kaiko.io",
    ],
)
def test_plain_http_to_a_non_loopback_host_is_refused(base_url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="clear text"):
        LiquidationClient(api_key=KEY, base_url=base_url)
    # Allowed only when asked for explicitly.
    assert LiquidationClient(api_key=KEY, base_url=base_url, allow_insecure_http=True)


@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:8080", "http://localhost:9", "http://[::1]:8080", "https://x.io"]
)
def test_loopback_http_and_any_https_are_allowed(base_url: str) -> None:
    client = LiquidationClient(api_key=KEY, base_url=base_url + "/")
    assert client.base_url == base_url


@pytest.mark.parametrize("asset", ["eth/../../admin", "eth?x=1", "eth#x", "eth%2f", "eth\n", " "])
def test_an_asset_that_is_not_one_plain_path_segment_is_refused(asset: str) -> None:
    client = LiquidationClient(api_key=KEY)
    with pytest.raises(InvalidArgumentError, match="asset"):
        client.plan(asset, START, END)


async def test_the_asset_is_sent_as_one_lower_case_path_segment(
    make_emulator: MakeEmulator,
) -> None:
    emu = await make_emulator()
    async with LiquidationClient(base_url=emu.base_url) as client:
        rows = await client.fetch("BTC", START, END, sort="asc")
    assert rows == rows_for("btc", START, END, now=FIXED_NOW)
    target = Token("a-B_9", parse_interval("1h"))
    assert "http://h" + TOKEN.path(target) == "http://h/v2/data/liquidation.v1/token/a-B_9"


# -- cancellation and cleanup ----------------------------------------------------------


async def test_cancelling_fetch_with_a_deadline_leaves_nothing_running(
    make_emulator: MakeEmulator,
) -> None:
    emu = await make_emulator(latency=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with LiquidationClient(
            base_url=emu.base_url, rate_limit=10_000, max_concurrency=4
        ) as client:
            async with anyio.create_task_group() as tg:
                with anyio.CancelScope() as scope:

                    async def cancel_once_all_slots_are_busy() -> None:
                        with anyio.fail_after(5):
                            # Polled: the emulator's counters have no event to wait on.
                            while emu.stats.total_requests < 4:  # noqa: ASYNC110
                                await asyncio.sleep(0.005)
                        scope.cancel()

                    tg.start_soon(cancel_once_all_slots_are_busy)
                    await client.fetch("eth", "2025-02-01", "2025-03-01", page_size=24)
            assert scope.cancelled_caught
            assert client_tasks() == []
            await asyncio.sleep(0.05)
            assert emu.stats.total_requests == 4  # the slots in flight, nothing after
        assert client.closed
        gc.collect()
    assert [str(w.message) for w in caught] == []


async def test_cancelling_the_task_running_fetch_leaves_nothing_running(
    mocked: aioresponses,
) -> None:
    started, release = asyncio.Event(), False

    async def hang(url: URL, **kwargs: Any) -> CallbackResult:
        if not release:
            started.set()
            await asyncio.sleep(30)
        return CallbackResult(payload=ok_page())

    mocked.get(FIRST, callback=hang, repeat=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = LiquidationClient(api_key=KEY, rate_limit=10_000, max_concurrency=3)
        task = asyncio.create_task(client.fetch("eth", "2025-02-01", "2025-02-10", page_size=24))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client_tasks() == []
        assert count(mocked) == 3
        # Still usable after a cancelled call, then closed.
        release = True
        assert await client.fetch("eth", START, END) == []
        await client.aclose()
        assert client.closed and client._transport._session is None
        del client, task
        gc.collect()
    assert [str(w.message) for w in caught] == []


async def test_leaving_async_with_closes_the_session(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator()
    async with LiquidationClient(base_url=emu.base_url) as client:
        await client.fetch("eth", START, END)
        session = client._transport._session
        assert session is not None and not session.closed
        assert not client.closed
    assert client.closed and session.closed


async def test_a_closed_client_refuses_every_use() -> None:
    client = LiquidationClient(api_key=KEY)
    await client.aclose()
    await client.aclose()  # twice is fine
    with pytest.raises(ClientClosedError, match="closed"):
        await client.fetch("eth", START, END)
    with pytest.raises(ClientClosedError, match="closed"):
        client.stream("eth", START, END)
    with pytest.raises(ClientClosedError):
        async with client:
            pass  # pragma: no cover
    assert isinstance(ClientClosedError("x"), RuntimeError)


@pytest.mark.parametrize("managed", [False, True], ids=["async-for", "async-with"])
@pytest.mark.parametrize("closer", ["client", "stream"])
async def test_a_stream_closed_under_its_consumer_ends_with_an_error_not_a_hang(
    make_emulator: MakeEmulator, managed: bool, closer: str
) -> None:
    # The consumer holds its iterator, the client (or the stream) is closed, and the
    # consumer asks for more. Whatever was already in hand may still come out, but then
    # it must be told, promptly: not wait forever for shards nobody will fetch, and not
    # stop quietly as if the range were complete.
    emu = await make_emulator(latency=0.01)
    client = LiquidationClient(base_url=emu.base_url, rate_limit=10_000, max_concurrency=2)
    try:
        stream = client.stream("eth", "2025-02-01", "2025-03-01", page_size=24, window=2)
        if managed:
            await stream.__aenter__()
        iterator = aiter(stream)
        first = await anext(iterator)
        assert first.interval_time == datetime(2025, 2, 28, 23, tzinfo=UTC)
        await (client.aclose() if closer == "client" else stream.aclose())
        assert client_tasks() == []
        rest = 0
        with pytest.raises(ClientClosedError), anyio.fail_after(1):
            async for _ in iterator:
                rest += 1
        assert rest < 28 * 24
        with pytest.raises(ClientClosedError):
            await anext(aiter(stream))
    finally:
        await client.aclose()
