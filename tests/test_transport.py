"""The transport's guards, against small real servers on loopback: redirects are not
followed with the key, a request's deadline holds even while a body drips, bad keys and
unparseable next_urls are refused before anything is sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from kaiko_liq import (
    IncompleteFetchError,
    InvalidArgumentError,
    LiquidationClient,
    RequestTimeoutError,
    RetryPolicy,
    Timeouts,
    UnexpectedResponseError,
    UnsafeURLError,
)
from kaiko_liq.protocol import check_next_url
from kaiko_liq.testing import no_sleeps, sleeps_removed
from kaiko_liq.transport import DEFAULT_MAX_RESPONSE_BYTES
from tests.conftest import Handler

KEY = "SECRET-KEY-1234"


async def test_a_redirect_is_refused_and_the_key_never_leaves(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    seen_elsewhere: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen_elsewhere.append(request.headers.get("X-Api-Key"))
        return web.json_response({"data": []})

    other = await serve(elsewhere)

    async def redirecting(request: web.Request) -> web.Response:
        raise web.HTTPFound(other + request.path_qs)

    base = await serve(redirecting)
    async with LiquidationClient(KEY, base_url=base) as client:
        with pytest.raises(UnexpectedResponseError, match="redirect.*not followed") as info:
            await client.fetch("eth", "2025-02-01", "2025-02-02")
    assert seen_elsewhere == []
    assert KEY not in str(info.value)


async def test_the_deadline_holds_while_a_body_drips(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def dripping(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for _ in range(200):  # 20 s of one byte every 0.1 s: never silent long enough
            await response.write(b" ")
            await asyncio.sleep(0.1)
        return response

    base = await serve(dripping)
    policy = RetryPolicy(deadline=0.5, base_delay=0.01)
    async with LiquidationClient(
        KEY, base_url=base, retry=policy, timeouts=Timeouts(connect=1.0, read=1.0)
    ) as client:
        started = time.monotonic()
        with pytest.raises(IncompleteFetchError) as info:
            await client.fetch("eth", "2025-02-01", "2025-02-02")
        elapsed = time.monotonic() - started
    assert isinstance(info.value.failed[0].error, RequestTimeoutError)
    assert "deadline" in str(info.value.failed[0].error)
    assert elapsed < 3.0
    assert client.stats.requests == 1, "no retry can start after the deadline"


@pytest.mark.parametrize("key", ["ab\ncd", "a b", "kéy", "x\x00y"])
def test_a_key_a_header_cannot_carry_is_refused_without_echoing_it(key: str) -> None:
    with pytest.raises(InvalidArgumentError, match="an HTTP header cannot carry") as info:
        LiquidationClient(key)
    assert key not in str(info.value)


def test_a_next_url_the_sender_cannot_parse_is_unsafe() -> None:
    request = "https://us.market-api.kaiko.io/v2/data/liquidation.v1/token/eth"
    with pytest.raises(UnsafeURLError, match="not a valid URL"):
        check_next_url("https://evil.example\\@us.market-api.kaiko.io/v2/x", request)


@pytest.mark.parametrize("cap", [0, -1, 1.5, True, "64MB"])
def test_a_bad_response_cap_is_refused(cap: object) -> None:
    with pytest.raises(InvalidArgumentError, match="max_response_bytes must be a positive"):
        LiquidationClient(KEY, max_response_bytes=cap)  # type: ignore[arg-type]


def test_the_response_cap_reaches_the_transport() -> None:
    client = LiquidationClient(KEY, max_response_bytes=5_000_000)
    assert client._transport.max_response_bytes == 5_000_000
    assert LiquidationClient(KEY)._transport.max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES


async def test_no_sleeps_removes_the_retry_waits_and_the_429_hold(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls <= 3:  # no Retry-After: a hold of a second each, and backoff
            return web.json_response({"result": "error", "message": "slow"}, status=429)
        return web.json_response({"data": []})

    base = await serve(handler)
    assert not sleeps_removed()
    with no_sleeps():
        assert sleeps_removed()
        async with LiquidationClient(
            api_key=KEY, base_url=base, retry=RetryPolicy(base_delay=2.0)
        ) as client:
            started = time.monotonic()
            assert await client.fetch("eth", "2025-02-01", "2025-02-02") == []
            elapsed = time.monotonic() - started
            assert client.stats.retries == 3 and client.stats.rate_limited == 3
            assert client.stats.last_error is not None and "HTTP 429" in client.stats.last_error
    assert not sleeps_removed()
    assert elapsed < 1.0, "three 1 s holds and up to 2+4+8 s of backoff were skipped"
