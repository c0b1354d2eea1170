"""The client against aioresponses: pagination, merge order, consistency checks, early
exit and argument validation, each seen on the requests actually sent.

A small fake Kaiko (:class:`FakeKaiko`) serves rows at chosen bucket times, paged by row
count with opaque tokens, after a seeded random delay so that shards finish out of order.
Tests that care about the exact bytes of a URL record what the client handed to aiohttp
(:func:`recording`), because aioresponses itself only keeps a normalised (sorted) URL.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import random
import re
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch
from urllib.parse import urlencode

import aiohttp
import pytest
from yarl import URL

from kaiko_liq.client import LiquidationClient
from kaiko_liq.errors import (
    InconsistentDataError,
    InvalidArgumentError,
)
from kaiko_liq.models import LiquidationRow, decode_rows
from kaiko_liq.retry import RetryPolicy
from kaiko_liq.testing import no_sleeps
from tests.mock_http import CallbackResult, aioresponses

BASE = "https://us.market-api.kaiko.io"
PATH = "/v2/data/liquidation.v1/token/eth"
ANY_KAIKO = re.compile(r"^https://(us|eu)\.market-api\.kaiko\.io/.*$")
KEY = "test-key-wiring"
HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAST_RETRY = RetryPolicy(base_delay=0.001, max_delay=0.01)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_row(when: datetime) -> dict[str, Any]:
    """A wire row at ``when`` whose figures depend on the time (so rows are told apart)."""
    seconds = int(when.timestamp())
    h = seconds // 3600
    a_long, a_short, b_long = h % 7, h % 5 + 1, h % 3
    amount = float(h % 1000) + 0.25

    def venue(code: str, longs: int, shorts: int) -> dict[str, Any]:
        return {
            "exchange": code,
            "total_trades": longs + shorts,
            "total_amount": amount * (longs + shorts),
            "long_trades": longs,
            "long_amount": amount * longs,
            "short_trades": shorts,
            "short_amount": amount * shorts,
        }

    venues = [venue("bbit", a_long, a_short), venue("okex", b_long, 0)]
    return {
        "interval_time": iso(when),
        "interval_timestamp": seconds * 1_000_000_000,
        "total_trades": sum(v["total_trades"] for v in venues),
        "total_amount": sum(v["total_amount"] for v in venues),
        "long_trades": sum(v["long_trades"] for v in venues),
        "long_amount": sum(v["long_amount"] for v in venues),
        "short_trades": sum(v["short_trades"] for v in venues),
        "short_amount": sum(v["short_amount"] for v in venues),
        "exchanges": venues,
    }


def rows_of(wire: list[dict[str, Any]]) -> list[LiquidationRow]:
    return decode_rows(json.dumps(wire).encode())


def hours(start: str, count: int) -> list[datetime]:
    first = t(start)
    return [first + i * HOUR for i in range(count)]


def page(times: Iterable[datetime], next_url: str | None = None, token: str | None = None) -> Any:
    body: dict[str, Any] = {"result": "success", "data": [make_row(x) for x in times]}
    if next_url is not None:
        body["next_url"] = next_url
    if token is not None:
        body["continuation_token"] = token
    return body


def first_url(
    start: str, end: str, *, interval: str = "1h", sort: str = "desc", page_size: int = 1000
) -> str:
    params = {
        "interval": interval,
        "sort": sort,
        "start_time": start,
        "end_time": end,
        "page_size": str(page_size),
    }
    return f"{BASE}{PATH}?{urlencode(params)}"


def floor_to(when: datetime, seconds: int) -> datetime:
    offset = (when - EPOCH) // timedelta(seconds=1) % seconds
    return when.replace(microsecond=0) - timedelta(seconds=offset)


def ceil_to(when: datetime, seconds: int) -> datetime:
    low = floor_to(when, seconds)
    return low if low == when else low + timedelta(seconds=seconds)


class FakeKaiko:
    """An aioresponses callback that pages rows at chosen times like Kaiko does.

    A first request selects the rows of ``[start_time, end_time)`` snapped outward to the
    1h grid in ``sort`` order; each page takes ``page_size`` of them and, when more
    follow, carries a fresh ``continuation_token`` and its ``next_url``. ``corrupt`` may
    rewrite a page's rows (to test the client's checks); ``max_delay`` delays each answer
    by a seeded random amount so shards complete out of order.
    """

    def __init__(
        self,
        times: Iterable[datetime],
        *,
        seed: int = 0,
        max_delay: float = 0.0,
        corrupt: Callable[[URL, list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.rows = {x: make_row(x) for x in times}
        self.rng = random.Random(seed)
        self.max_delay = max_delay
        self.corrupt = corrupt
        self.calls: list[URL] = []
        self._pending: dict[str, tuple[list[dict[str, Any]], int]] = {}
        self._ids = itertools.count(1)

    async def handle(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.calls.append(url)
        if self.max_delay:
            await asyncio.sleep(self.rng.uniform(0.0, self.max_delay))
        query = url.query
        if "continuation_token" in query:
            remaining, size = self._pending.pop(query["continuation_token"])
        else:
            grid = 3600 if query["interval"] == "1h" else int(query["interval"][:-1]) * 3600
            lo = floor_to(t(query["start_time"]), grid)
            hi = ceil_to(t(query["end_time"]), grid)
            chosen = sorted((x for x in self.rows if lo <= x < hi), reverse=query["sort"] == "desc")
            remaining, size = [self.rows[x] for x in chosen], int(query["page_size"])
        data, rest = remaining[:size], remaining[size:]
        if self.corrupt is not None:
            data = self.corrupt(url, data)
        body: dict[str, Any] = {"result": "success", "data": data}
        if rest:
            token = f"tok{next(self._ids)}"
            self._pending[token] = (rest, size)
            body["continuation_token"] = token
            body["next_url"] = f"{BASE}{PATH}?continuation_token={token}"
        return CallbackResult(payload=body)


@dataclass(frozen=True, slots=True)
class Sent:
    """One request as the client handed it to aiohttp, before any normalisation."""

    url: str
    params: dict[str, str] | None
    headers: dict[str, str]


@contextmanager
def recording() -> Iterator[list[Sent]]:
    """Record every ``ClientSession._request`` call; use inside ``aioresponses()``.

    aioresponses patches ``_request``; this wraps its patch so the request still reaches
    the mock, and unwraps before aioresponses restores the original.
    """
    sent: list[Sent] = []
    mocked = aiohttp.ClientSession._request

    async def record(self: aiohttp.ClientSession, method: str, url: Any, **kwargs: Any) -> Any:
        params = kwargs.get("params")
        # The headers as they go out: the session's defaults merged with the request's.
        headers = dict(self._prepare_headers(kwargs.get("headers")))
        sent.append(Sent(str(url), None if params is None else dict(params), headers))
        return await mocked(self, method, url, **kwargs)

    with patch.object(aiohttp.ClientSession, "_request", record):
        yield sent


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
    async with LiquidationClient(
        api_key=KEY, rate_limit=10_000, max_concurrency=8, retry=FAST_RETRY
    ) as c:
        yield c


def request_count(m: aioresponses) -> int:
    return sum(len(calls) for calls in m.requests.values())


def pending_tasks() -> list[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return [x for x in asyncio.all_tasks() if x is not current and not x.done()]


# -- pagination ----------------------------------------------------------------------


async def test_next_url_is_followed_verbatim_and_only_the_first_request_has_params(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    # Encoded characters and an unsorted query: a client that rebuilds the URL (or merges
    # its own parameters into it) would change these bytes.
    second = f"{BASE}{PATH}?zeta=1&continuation_token=AbC%2Fd%2B%3D%3D&alpha=2"
    third = f"{BASE}{PATH}?continuation_token=t%C3%A9st"
    start, end = "2025-02-01T00:00:00Z", "2025-02-01T06:00:00Z"
    mocked.get(
        first_url(start, end, sort="asc"),
        payload=page(hours(start, 2), second, "AbC/d+=="),
    )
    mocked.get(second, payload=page(hours("2025-02-01T02:00:00Z", 2), third, "tést"))
    mocked.get(third, payload=page(hours("2025-02-01T04:00:00Z", 2)))
    with recording() as sent:
        rows = await client.fetch("eth", start, end, sort="asc")
    assert [r.interval_time for r in rows] == hours(start, 6)
    assert [s.url for s in sent] == [f"{BASE}{PATH}", second, third]
    assert sent[0].params == {
        "interval": "1h",
        "sort": "asc",
        "start_time": start,
        "end_time": end,
        "page_size": "1000",
    }
    assert [s.params for s in sent[1:]] == [None, None]
    assert all("page_size" not in s.url for s in sent)
    assert all(s.headers.get("X-Api-Key") == KEY for s in sent)


async def test_a_page_with_neither_cursor_ends_the_stream(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    start, end = "2025-02-01T00:00:00Z", "2025-02-01T03:00:00Z"
    mocked.get(first_url(start, end), payload=page(hours(start, 3)[::-1]))
    rows = await client.fetch("eth", start, end)
    assert [r.interval_time for r in rows] == hours(start, 3)[::-1]
    assert request_count(mocked) == 1


async def test_a_token_without_next_url_continues_with_the_token_alone(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    start, end = "2025-02-01T00:00:00Z", "2025-02-01T04:00:00Z"
    mocked.get(first_url(start, end, sort="asc"), payload=page(hours(start, 2), token="orph/an"))
    mocked.get(
        f"{BASE}{PATH}?continuation_token=orph%2Fan",
        payload=page(hours("2025-02-01T02:00:00Z", 2)),
    )
    with recording() as sent:
        rows = await client.fetch("eth", start, end, sort="asc")
    assert [r.interval_time for r in rows] == hours(start, 4)
    assert [(s.url, s.params) for s in sent[1:]] == [
        (f"{BASE}{PATH}", {"continuation_token": "orph/an"})
    ]


async def test_an_empty_page_with_a_next_url_is_followed(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    start, end = "2025-02-01T00:00:00Z", "2025-02-01T04:00:00Z"
    second = f"{BASE}{PATH}?continuation_token=two"
    third = f"{BASE}{PATH}?continuation_token=three"
    mocked.get(first_url(start, end, sort="asc"), payload=page(hours(start, 3), second, "two"))
    mocked.get(second, payload=page([], third, "three"))
    mocked.get(third, payload=page(hours("2025-02-01T03:00:00Z", 1)))
    rows = await client.fetch("eth", start, end, sort="asc")
    assert [r.interval_time for r in rows] == hours(start, 4)
    assert request_count(mocked) == 3


async def test_an_empty_first_page_with_a_next_url_is_followed(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    start, end = "2025-02-01T00:00:00Z", "2025-02-01T03:00:00Z"
    second = f"{BASE}{PATH}?continuation_token=x"
    mocked.get(first_url(start, end), payload=page([], second, "x"), repeat=True)
    mocked.get(second, payload=page(hours(start, 3)[::-1]), repeat=True)
    assert [r.interval_time for r in await client.fetch("eth", start, end)] == hours(start, 3)[::-1]
    assert [r.interval_time async for r in client.stream("eth", start, end)] == (
        hours(start, 3)[::-1]
    )
    assert request_count(mocked) == 4


@pytest.mark.parametrize("with_token_field", [True, False])
async def test_the_same_continuation_twice_raises_instead_of_looping(
    mocked: aioresponses, client: LiquidationClient, with_token_field: bool
) -> None:
    start, end = "2025-02-01T00:00:00Z", "2025-02-01T06:00:00Z"
    again = f"{BASE}{PATH}?continuation_token=again"
    token = "again" if with_token_field else None
    mocked.get(first_url(start, end, sort="asc"), payload=page(hours(start, 1), again, token))
    # The server answers the continuation with rows and the very same continuation.
    mocked.get(again, payload=page(hours("2025-02-01T01:00:00Z", 1), again, token))
    mocked.get(again, payload=page(hours("2025-02-01T02:00:00Z", 1), again, token))
    with pytest.raises(InconsistentDataError, match="same continuation token twice"):
        await client.fetch("eth", start, end, sort="asc")
    assert request_count(mocked) == 2


async def test_a_continuation_cycle_of_two_tokens_is_caught(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    start, end = "2025-02-01T00:00:00Z", "2025-02-01T06:00:00Z"
    a, b = (f"{BASE}{PATH}?continuation_token={x}" for x in "ab")
    mocked.get(first_url(start, end, sort="asc"), payload=page(hours(start, 1), a, "a"))
    mocked.get(a, payload=page(hours("2025-02-01T01:00:00Z", 1), b, "b"))
    mocked.get(b, payload=page(hours("2025-02-01T02:00:00Z", 1), a, "a"))
    mocked.get(a, payload=page(hours("2025-02-01T03:00:00Z", 1), b, "b"))
    with pytest.raises(InconsistentDataError):
        await client.fetch("eth", start, end, sort="asc")
    assert request_count(mocked) == 3


# -- merge order across shards --------------------------------------------------------


def sparse_hours(start: datetime, end: datetime, seed: int) -> list[datetime]:
    """Every hour of ``[start, end)`` but a seeded fifth of them (quiet hours)."""
    rng = random.Random(seed)
    out, x = [], start
    while x < end:
        if rng.random() > 0.2:
            out.append(x)
        x += HOUR
    return out


@pytest.mark.parametrize("sort", ["asc", "desc"])
@pytest.mark.parametrize("page_size", [24, 10, 7])
async def test_shards_merge_in_order_whatever_order_they_finish(
    mocked: aioresponses, sort: str, page_size: int
) -> None:
    start, end = t("2025-02-01T05:30:00Z"), t("2025-02-07T17:00:00Z")
    times = sparse_hours(t("2025-01-31T00:00:00Z"), t("2025-02-09T00:00:00Z"), seed=page_size)
    fake = FakeKaiko(times, seed=page_size, max_delay=0.004)
    mocked.get(ANY_KAIKO, callback=fake.handle, repeat=True)
    expected_times = sorted(
        (x for x in times if t("2025-02-01T05:00:00Z") <= x < end), reverse=sort == "desc"
    )
    expected = rows_of([fake.rows[x] for x in expected_times])
    async with LiquidationClient(api_key=KEY, rate_limit=10_000, max_concurrency=4) as client:
        shards = client.plan("eth", start, end, page_size=page_size)
        assert len(shards) >= 3
        fetched = await client.fetch("eth", start, end, sort=sort, page_size=page_size)
        streamed = [
            row
            async for row in client.stream(
                "eth", start, end, sort=sort, page_size=page_size, window=2
            )
        ]
    assert fetched == expected
    assert streamed == expected
    # Every shard asked once for its own first page: nothing fetched twice.
    firsts = [u for u in fake.calls if "continuation_token" not in u.query]
    assert sorted(u.query["start_time"] for u in firsts) == sorted(
        2 * [iso(s.start) for s in shards]
    )


# -- consistency checks ----------------------------------------------------------------


def _corrupt_inside(url: URL, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A row repeated in the middle of a page.
    return [*data[:3], data[2], *data[3:]] if len(data) > 3 else data


def _swap_inside(url: URL, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Two rows out of order in the middle of a page.
    if len(data) > 3:
        data = list(data)
        data[1], data[2] = data[2], data[1]
    return data


@pytest.mark.parametrize("corrupt", [_corrupt_inside, _swap_inside], ids=["duplicate", "swap"])
@pytest.mark.parametrize("method", ["fetch", "stream"])
async def test_a_duplicate_or_out_of_order_row_inside_a_page_raises(
    mocked: aioresponses,
    client: LiquidationClient,
    corrupt: Callable[[URL, list[dict[str, Any]]], list[dict[str, Any]]],
    method: str,
) -> None:
    start, end = t("2025-02-01T00:00:00Z"), t("2025-02-02T00:00:00Z")
    mocked.get(
        ANY_KAIKO, callback=FakeKaiko(hours(iso(start), 24), corrupt=corrupt).handle, repeat=True
    )
    with pytest.raises(InconsistentDataError, match="duplicate or out of"):
        await collect(client, method, start, end, sort="asc")


async def test_a_row_repeated_across_two_pages_raises(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    start, end = "2025-02-01T00:00:00Z", "2025-02-01T06:00:00Z"
    second = f"{BASE}{PATH}?continuation_token=two"
    mocked.get(first_url(start, end), payload=page(hours("2025-02-01T04:00:00Z", 2)[::-1], second))
    mocked.get(second, payload=page(hours("2025-02-01T02:00:00Z", 3)[::-1]))
    with pytest.raises(InconsistentDataError, match="duplicate or out of desc order"):
        await client.fetch("eth", start, end)


@pytest.mark.parametrize("sort", ["asc", "desc"])
@pytest.mark.parametrize("method", ["fetch", "stream"])
async def test_a_row_of_the_neighbouring_shard_at_a_boundary_raises(
    mocked: aioresponses, client: LiquidationClient, sort: str, method: str
) -> None:
    # 1-day shards (page_size=24); the second shard's answer starts with the first
    # shard's last row, as a server that snaps a boundary the wrong way would send.
    start, end = t("2025-02-01T00:00:00Z"), t("2025-02-04T00:00:00Z")
    boundary = t("2025-02-02T00:00:00Z")
    leaked = make_row(boundary - HOUR)

    def leak(url: URL, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if url.query.get("start_time") == iso(boundary):
            return [leaked, *data] if sort == "asc" else [*data, leaked]
        return data

    mocked.get(
        ANY_KAIKO, callback=FakeKaiko(hours(iso(start), 72), corrupt=leak).handle, repeat=True
    )
    with pytest.raises(InconsistentDataError):
        await collect(client, method, start, end, sort=sort, page_size=24)


async def collect(
    client: LiquidationClient, method: str, start: datetime, end: datetime, **kwargs: Any
) -> list[LiquidationRow]:
    if method == "fetch":
        return await client.fetch("eth", start, end, **kwargs)
    async with client.stream("eth", start, end, **kwargs) as rows:
        return [row async for row in rows]


async def test_end_time_with_sub_millisecond_precision_keeps_its_bucket(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    # [08:00, 10:00:00.0005) overlaps the 10:00 bucket, so that bucket is in the window
    # (windows snap outward). Kaiko takes milliseconds: the end sent must not round down
    # to 10:00:00.000, which would exclude the bucket and lose its row silently.
    fake = FakeKaiko(hours("2025-02-01T07:00:00Z", 5))
    mocked.get(ANY_KAIKO, callback=fake.handle, repeat=True)
    end = datetime(2025, 2, 1, 10, 0, 0, 500, tzinfo=UTC)
    rows = await client.fetch("eth", "2025-02-01T08:00:00Z", end, sort="asc")
    assert [r.interval_time for r in rows] == hours("2025-02-01T08:00:00Z", 3)


# -- early exit --------------------------------------------------------------------------


@pytest.fixture
def slow_many_shards(mocked: aioresponses) -> FakeKaiko:
    """30 one-day shards (page_size=24) of one full page each, answered after a delay."""
    fake = FakeKaiko(hours("2025-02-01T00:00:00Z", 24 * 30), seed=7, max_delay=0.003)
    mocked.get(ANY_KAIKO, callback=fake.handle, repeat=True)
    return fake


async def settle_and_check_quiet(fake: FakeKaiko) -> None:
    """Nothing is left running and nothing more is asked for."""
    await asyncio.sleep(0.03)
    asked = len(fake.calls)
    await asyncio.sleep(0.1)
    assert len(fake.calls) == asked, "requests were still being made after the stream ended"
    assert pending_tasks() == []


async def test_breaking_out_of_async_for_cancels_the_stream(
    slow_many_shards: FakeKaiko,
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with LiquidationClient(api_key=KEY, rate_limit=10_000, max_concurrency=4) as client:
            seen = 0
            async for _row in client.stream(
                "eth", "2025-02-01", "2025-03-03", sort="asc", page_size=24, window=3
            ):
                seen += 1
                if seen == 30:
                    break
            await settle_and_check_quiet(slow_many_shards)
            # At most the window of shards ahead was ever asked for.
            assert len(slow_many_shards.calls) <= 2 + 3 + 1
        gc.collect()
    assert [str(w.message) for w in caught] == []


async def test_leaving_async_with_stream_cancels_it(slow_many_shards: FakeKaiko) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with LiquidationClient(api_key=KEY, rate_limit=10_000, max_concurrency=4) as client:
            async with client.stream(
                "eth", "2025-02-01", "2025-03-03", sort="asc", page_size=24, window=3
            ) as rows:
                async for _row in rows:
                    break
            asked = len(slow_many_shards.calls)
            await settle_and_check_quiet(slow_many_shards)
            assert len(slow_many_shards.calls) == asked
            assert not client._engine.streams
        gc.collect()
    assert [str(w.message) for w in caught] == []


async def test_a_stream_closed_while_a_request_is_in_flight_cancels_it(
    mocked: aioresponses, client: LiquidationClient
) -> None:
    started, finished = asyncio.Event(), list[URL]()

    async def hang(url: URL, **kwargs: Any) -> CallbackResult:
        started.set()
        await asyncio.sleep(30)
        finished.append(url)  # pragma: no cover - must be cancelled first
        return CallbackResult(payload=page([]))

    mocked.get(ANY_KAIKO, callback=hang, repeat=True)
    stream = client.stream("eth", "2025-02-01", "2025-02-03")

    async def first_row() -> LiquidationRow:
        return await anext(aiter(stream))

    consumer = asyncio.create_task(first_row())
    await started.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    await stream.aclose()
    await asyncio.sleep(0)
    assert pending_tasks() == []
    assert finished == []


# -- arguments --------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "asset": "eth",
    "start": "2025-02-01T00:00:00Z",
    "end": "2025-02-02T00:00:00Z",
}


BAD_ARGUMENTS: list[tuple[dict[str, Any], str]] = [
    ({"start": "2025-02-02T00:00:00Z"}, "not before end"),
    ({"end": "2025-01-01T00:00:00Z"}, "not before end"),
    ({"start": "yesterday"}, "not an ISO 8601 time"),
    ({"end": "2025-13-01"}, "not an ISO 8601 time"),
    ({"start": 1738368000}, "epoch numbers are ambiguous"),
    ({"end": 1738454400.0}, "epoch numbers are ambiguous"),
    ({"start": [2025, 2, 1]}, "ISO 8601 string, a date or a timezone-aware datetime"),
    ({"start": datetime(2025, 2, 1)}, "naive datetime"),
    ({"end": datetime(2025, 2, 2)}, "naive datetime"),
    ({"interval": "0h"}, "allowed: 1h to 24h"),
    ({"interval": "25h"}, "longer than one day"),
    ({"interval": "2d"}, "longer than one day"),
    ({"interval": "1m"}, "allowed: 1h to 24h"),
    ({"interval": "1.5h"}, "allowed: 1h to 24h"),
    ({"interval": 1}, "interval must be a string"),
    ({"sort": "ascending"}, "use 'asc' or 'desc'"),
    ({"sort": "ASC"}, "use 'asc' or 'desc'"),
    ({"page_size": 0}, "allowed: 1 to 1000"),
    ({"page_size": 1001}, "allowed: 1 to 1000"),
    ({"page_size": -5}, "allowed: 1 to 1000"),
    ({"page_size": True}, "page_size must be an integer"),
    ({"page_size": "100"}, "page_size must be an integer"),
    ({"asset": ""}, "non-empty string"),
    ({"asset": "eth/usd"}, "letters, digits"),
    ({"asset": "../btc"}, "letters, digits"),
    ({"asset": "eth usd"}, "letters, digits"),
    ({"asset": "eth?x=1"}, "letters, digits"),
    ({"asset": "eth%2F"}, "letters, digits"),
    ({"asset": "eth\n"}, "letters, digits"),
    ({"asset": "ÉTH"}, "letters, digits"),
]


@pytest.mark.parametrize(
    ("method", "change", "message"),
    [
        pytest.param(method, change, message, id=f"{method}-{i}")
        for method in ("fetch", "stream", "plan")
        for i, (change, message) in enumerate(BAD_ARGUMENTS)
        if not (method == "plan" and "sort" in change)  # plan() takes no sort
    ],
)
async def test_every_bad_argument_raises_before_any_request(
    mocked: aioresponses,
    client: LiquidationClient,
    method: str,
    change: dict[str, Any],
    message: str,
) -> None:
    args = {**GOOD, **change}
    asset, start, end = args.pop("asset"), args.pop("start"), args.pop("end")
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        if method == "fetch":
            await client.fetch(asset, start, end, **args)
        elif method == "stream":
            # stream() validates when called, not at the first row.
            client.stream(asset, start, end, **args)
        else:
            client.plan(asset, start, end, **args)
    assert isinstance(info.value, InvalidArgumentError)
    assert mocked.requests == {}


@pytest.mark.parametrize("window", [0, -1, True, 1.5])
async def test_a_bad_stream_window_is_refused(
    mocked: aioresponses, client: LiquidationClient, window: Any
) -> None:
    with pytest.raises(InvalidArgumentError, match="window must be a positive integer"):
        client.stream("eth", GOOD["start"], GOOD["end"], window=window)
    assert mocked.requests == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"region": "ap"}, "use 'us' or 'eu'"),
        ({"region": "US"}, "use 'us' or 'eu'"),
        ({"page_size": 0}, "allowed: 1 to 1000"),
        ({"page_size": 1001}, "allowed: 1 to 1000"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"api_key": "  "}, "api_key is empty"),
        ({"base_url": "ftp://example.com"}, "not an http(s) URL"),
        ({"base_url": "https://example.com/?a=1"}, "must not have a query"),
    ],
)
def test_bad_client_configuration_is_refused(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("api_key", KEY)
    with pytest.raises(ValueError, match=re.escape(message)):
        LiquidationClient(**kwargs)


def test_no_api_key_without_base_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAIKO_API_KEY", raising=False)
    with pytest.raises(InvalidArgumentError, match="KAIKO_API_KEY"):
        LiquidationClient()
    with pytest.raises(InvalidArgumentError, match="KAIKO_API_KEY"):
        LiquidationClient(region="eu")


@pytest.mark.parametrize("region", ["us", "eu"])
async def test_the_key_from_kaiko_api_key_is_sent_to_the_regional_host(
    mocked: aioresponses, monkeypatch: pytest.MonkeyPatch, region: str
) -> None:
    monkeypatch.setenv("KAIKO_API_KEY", "from-the-environment")
    mocked.get(ANY_KAIKO, payload=page([]), repeat=True)
    with recording() as sent:
        async with LiquidationClient(region=region, rate_limit=10_000) as client:
            assert client.base_url == f"https://{region}.market-api.kaiko.io"
            await client.fetch("ETH", GOOD["start"], GOOD["end"])
    assert [s.url for s in sent] == [f"https://{region}.market-api.kaiko.io{PATH}"]
    assert sent[0].headers["X-Api-Key"] == "from-the-environment"
    assert sent[0].headers["Accept"] == "application/json"
    assert "gzip" in sent[0].headers["Accept-Encoding"]


async def test_an_explicit_key_wins_over_the_environment(
    mocked: aioresponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIKO_API_KEY", "from-the-environment")
    mocked.get(ANY_KAIKO, payload=page([]), repeat=True)
    with recording() as sent:
        async with LiquidationClient(api_key="explicit", rate_limit=10_000) as client:
            await client.fetch("eth", GOOD["start"], GOOD["end"])
    assert sent[0].headers["X-Api-Key"] == "explicit"
