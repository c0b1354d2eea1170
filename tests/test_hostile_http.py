"""A hostile server on loopback (a real aiohttp server): bodies too large, gzip bombs,
gzip cut short, and a server that echoes the API key back. Nothing leaks, memory stays
bounded, and every failure says what happened."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from isal import isal_zlib

from kaiko_liq import LiquidationClient, RetryPolicy
from kaiko_liq.errors import (
    BadRequestError,
    ResponseTooLargeError,
    UnsafeURLError,
)
from kaiko_liq.transport import DEFAULT_MAX_RESPONSE_BYTES, THREAD_BODY_BYTES
from tests.conftest import Serve
from tests.test_trust_paging import DAY_START, HOUR, wire_row

KEY = "Zq8-hostile-SECRET-4242abcd"
PATH = "/v2/data/liquidation.v1/token/eth"
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.005)


def gzip_bomb(inflated: int) -> bytes:
    """One gzip member of ``inflated`` spaces, about 1000 times smaller (ISA-L is fast)."""
    packer = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    chunk = b" " * (1 << 20)
    parts = [packer.compress(chunk) for _ in range(inflated // len(chunk))]
    return b"".join([*parts, packer.flush()])


def page_body(**extra: Any) -> bytes:
    return json.dumps({"result": "success", "data": [wire_row(DAY_START)], **extra}).encode()


START, END = "2025-02-01T00:00:00Z", "2025-02-01T01:00:00Z"

# -- sizes ----------------------------------------------------------------------------------

BOMB_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from kaiko_liq import LiquidationClient
    from kaiko_liq.errors import KaikoLiqError

    def rss_mb():
        # VmHWM, the peak RSS of this process image (ru_maxrss would include the
        # parent's from before the exec, on Linux).
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024

    async def main():
        before = rss_mb()
        async with LiquidationClient(
            api_key="k", base_url=sys.argv[1], max_concurrency=8, rate_limit=1000
        ) as client:
            try:
                # 8 one-day shards at page_size 24: eight bombs in flight at once.
                await client.fetch("eth", "2025-02-01", "2025-02-09", page_size=24)
            except KaikoLiqError as exc:
                error = [type(exc).__name__, str(exc)]
            else:
                error = None
        print(json.dumps({"error": error, "before_mb": before, "peak_mb": rss_mb()}))

    asyncio.run(main())
    """
)


@pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="peak RSS is read from /proc (Linux)"
)
async def test_a_gzip_bomb_ends_in_the_cap_error_with_bounded_memory(serve: Serve) -> None:
    bomb = gzip_bomb(1 << 30)  # 1 GiB of JSON-ish spaces
    assert len(bomb) < 1.2e6
    arrived = 0
    all_in = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        if arrived >= 8:
            all_in.set()
        # Answer once every shard's request is in flight (or after a while), so the
        # bombs are inflated concurrently, as they would be by a hostile server.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 2.0)
        return web.Response(
            body=bomb,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    base = await serve(handler)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        BOMB_CHILD,
        base,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    report = json.loads(out)
    kind, message = report["error"]
    assert kind == "ResponseTooLargeError"
    assert f"max_response_bytes ({DEFAULT_MAX_RESPONSE_BYTES:,} bytes)" in message
    assert arrived >= 8, "all eight shards were in flight"
    # Whole-process peak, interpreter and imports included (about 60 MB of it).
    assert report["peak_mb"] < 300, report


async def test_a_bomb_over_a_small_cap_is_refused_after_one_request(serve: Serve) -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(body=gzip_bomb(8 << 20), headers={"Content-Encoding": "gzip"})

    base = await serve(handler)
    async with LiquidationClient(
        api_key=KEY, base_url=base, retry=FAST, max_response_bytes=1 << 20
    ) as client:
        with pytest.raises(ResponseTooLargeError, match=r"max_response_bytes \(1,048,576 bytes\)"):
            await client.fetch("eth", START, END)
    assert calls == 1, "too large is final: retrying would get the same answer"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_plain_body_over_the_cap_is_refused(serve: Serve, chunked: bool) -> None:
    big = b" " * (2 << 20)

    async def handler(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=big)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(0, len(big), 65536):
            await response.write(big[i : i + 65536])
        await response.write_eof()
        return response

    base = await serve(handler)
    async with LiquidationClient(
        api_key=KEY, base_url=base, retry=FAST, max_response_bytes=1 << 20
    ) as client:
        with pytest.raises(ResponseTooLargeError):
            await client.fetch("eth", START, END)
        assert client.stats.bytes_received <= (1 << 20) + 65536 * 2


async def test_a_gzip_body_cut_short_is_retried(serve: Serve) -> None:
    whole = gzip.compress(page_body())
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        body = whole[: len(whole) // 2] if calls == 1 else whole
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    base = await serve(handler)
    async with LiquidationClient(api_key=KEY, base_url=base, retry=FAST) as client:
        rows = await client.fetch("eth", START, END)
        assert client.stats.retries == 1
        assert client.stats.last_error is not None and "cut short" in client.stats.last_error
    assert [r.interval_time for r in rows] == [DAY_START]


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
async def test_full_pages_are_read_whichever_way_they_are_sent(serve: Serve, encoding: str) -> None:
    rows = [wire_row(DAY_START + i * HOUR) for i in range(936)]  # 39 days: one shard
    plain = json.dumps({"data": rows}).encode()
    sent = gzip.compress(plain) if encoding == "gzip" else plain

    async def handler(request: web.Request) -> web.Response:
        assert "gzip" in request.headers["Accept-Encoding"]
        return web.Response(body=sent, headers={"Content-Encoding": encoding})

    base = await serve(handler)
    async with LiquidationClient(api_key=KEY, base_url=base) as client:
        got = await client.fetch("eth", "2025-02-01", "2025-03-12", sort="asc")
        assert client.stats.bytes_received == len(sent) and client.stats.requests == 1
    assert [r.interval_time for r in got] == [DAY_START + i * HOUR for i in range(936)]
    # The identity page is large enough to be decoded in a worker thread.
    assert encoding == "gzip" or len(sent) >= THREAD_BODY_BYTES


# -- a server that echoes the key ---------------------------------------------------------


async def test_a_key_echoed_into_a_next_url_path_is_never_shown(serve: Serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        key = request.headers["X-Api-Key"]
        return web.Response(
            body=page_body(next_url=f"{request.url.origin()}/v2/{key}/token/eth?x={key}")
        )

    base = await serve(handler)
    async with LiquidationClient(api_key=KEY, base_url=base, retry=FAST) as client:
        with pytest.raises(UnsafeURLError) as info:
            await client.fetch("eth", START, END)
    text = str(info.value)
    assert "not the requested" in text and "/v2/***/token/eth" in text
    assert KEY not in text and KEY[:8] not in text and KEY not in repr(info.value)


async def test_a_key_echoed_in_a_query_and_an_error_body_is_never_shown(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        key = request.headers["X-Api-Key"]
        if "continuation_token" not in request.query:
            # Followed: same origin and path; the key sits in the query under odd names.
            nxt = f"{request.url.origin()}{PATH}?continuation_token=c1&sig={key}&q={key}"
            return web.Response(body=page_body(next_url=nxt, continuation_token="c1"))
        # The key straddles the 200-character cut of the message excerpt.
        message = "x" * 190 + key + " (echoed by a proxy)"
        status = 500 if calls == 2 else 400
        return web.json_response({"result": "error", "message": message}, status=status)

    base = await serve(handler)
    caplog.set_level(logging.INFO, logger="kaiko_liq")
    async with LiquidationClient(api_key=KEY, base_url=base, retry=FAST) as client:
        with pytest.raises(BadRequestError) as info:
            await client.fetch("eth", START, END)
        last_error = client.stats.last_error
    assert calls == 3  # first page, a retried 500, then the final 400
    assert last_error is not None and "HTTP 500" in last_error
    for text in (str(info.value), info.value.message, info.value.url, last_error, caplog.text):
        assert KEY not in text and KEY[:8] not in text, text
    assert "sig=***" in info.value.url and "q=***" in info.value.url
    assert "x" * 190 + "***" in info.value.message
