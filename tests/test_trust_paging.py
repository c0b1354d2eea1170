"""Pagination traps on canned bodies: each ends in the complete result or an error,
never a short one.

A :class:`Canned` page source answers each URL with a canned body, read through the real
:func:`~kaiko_liq.protocol.decipher`, and :func:`~kaiko_liq.shard.fetch_shard` walks the
chain: no network, no event-loop tricks, every request it sends recorded. Two traps are
also run through the client against aioresponses, to show they hold end to end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from kaiko_liq.client import LiquidationClient
from kaiko_liq.errors import InconsistentDataError, UnsafeURLError
from kaiko_liq.models import LiquidationRow
from kaiko_liq.plan import SubRange
from kaiko_liq.protocol import Page, Retry, decipher
from kaiko_liq.query import parse_interval
from kaiko_liq.retry import RetryPolicy
from kaiko_liq.routes.token import TOKEN, Token
from kaiko_liq.shard import fetch_chain
from tests.mock_http import aioresponses

BASE = "https://us.market-api.kaiko.io"
PATH = "/v2/data/liquidation.v1/token/eth"
FIRST = BASE + PATH
HOUR = timedelta(hours=1)
DAY_START = datetime(2025, 2, 1, tzinfo=UTC)
ETH = Token("eth", parse_interval("1h"))


def wire_row(when: datetime, **changes: Any) -> dict[str, Any]:
    """A consistent wire row at ``when`` (ns timestamp), with ``changes`` applied."""
    venue = {
        "exchange": "bbit",
        "total_trades": 3,
        "total_amount": 30.5,
        "long_trades": 1,
        "long_amount": 10.0,
        "short_trades": 2,
        "short_amount": 20.5,
    }
    row: dict[str, Any] = {
        "interval_time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "interval_timestamp": int(when.timestamp()) * 1_000_000_000,
        **{k: v for k, v in venue.items() if k != "exchange"},
        "exchanges": [venue],
    }
    row.update(changes)
    return row


def body(
    rows: list[dict[str, Any]], next_url: str | None = None, token: str | None = None
) -> bytes:
    answer: dict[str, Any] = {"result": "success", "data": rows}
    if next_url is not None:
        answer["next_url"] = next_url
    if token is not None:
        answer["continuation_token"] = token
    return json.dumps(answer).encode()


def cont(token: str, path: str = PATH) -> str:
    return f"{BASE}{path}?continuation_token={token}"


class Canned:
    """A page source whose answers are canned bodies, keyed by the URL asked for (with
    its parameters), or produced by ``fallback(url)`` for any other URL."""

    base_url = BASE

    def __init__(
        self,
        answers: Mapping[str, bytes],
        fallback: Callable[[str], bytes] | None = None,
    ) -> None:
        self.answers = dict(answers)
        self.fallback = fallback
        self.sent: list[str] = []

    async def get_page(
        self, url: str, params: dict[str, str] | None = None, decode: Any = TOKEN.decode
    ) -> Page[Any]:
        full = url if not params else f"{url}?{urlencode(params)}"
        self.sent.append(full)
        if full in self.answers:
            raw = self.answers[full]
        elif self.fallback is not None:
            raw = self.fallback(full)
        else:
            raise AssertionError(f"the client asked for {full}, which nothing leads to")
        outcome = decipher(200, {}, raw, url, decode=decode, max_bytes=1 << 24)
        if isinstance(outcome, Retry):  # as the transport does once retries run out
            raise outcome.error
        return outcome


def first_key(start: datetime, end: datetime, sort: str = "asc", page_size: int = 24) -> str:
    params = TOKEN.first_params(ETH, SubRange(start, end), sort, page_size)
    return f"{FIRST}?{urlencode(params)}"


async def walk(
    source: Canned, start: datetime, end: datetime, sort: str = "asc"
) -> list[LiquidationRow]:
    return await fetch_chain(source, TOKEN, ETH, SubRange(start, end), sort, 24)


def hours_of(rows: list[LiquidationRow]) -> list[datetime]:
    return [r.interval_time for r in rows]


# -- empty pages are not the end ----------------------------------------------------------


async def test_a_long_chain_of_empty_pages_with_next_url_is_followed_to_its_end() -> None:
    # A server that pages by time over a quiet stretch: 30 hours, one hour a page, rows
    # only in three of them, and the last page empty too.
    start, end = DAY_START, DAY_START + 30 * HOUR
    busy = {3, 17, 28}
    answers = {}
    for i in range(30):
        key = first_key(start, end) if i == 0 else cont(f"t{i}")
        rows = [wire_row(start + i * HOUR)] if i in busy else []
        answers[key] = body(rows, cont(f"t{i + 1}"), f"t{i + 1}")
    answers[cont("t30")] = body([])  # the lazy last page: empty, no cursor
    source = Canned(answers)
    rows = await walk(source, start, end)
    assert hours_of(rows) == [start + i * HOUR for i in sorted(busy)]
    assert len(source.sent) == 31


async def test_an_empty_first_page_is_not_an_empty_result() -> None:
    start, end = DAY_START, DAY_START + 2 * HOUR
    source = Canned(
        {
            first_key(start, end): body([], cont("a"), "a"),
            cont("a"): body([wire_row(start), wire_row(start + HOUR)]),
        }
    )
    assert hours_of(await walk(source, start, end)) == [start, start + HOUR]


async def test_an_endless_chain_of_empty_pages_is_an_error_naming_the_url() -> None:
    start, end = DAY_START, DAY_START + 5 * HOUR
    counter = iter(range(10**6))

    def forever(url: str) -> bytes:
        token = f"n{next(counter)}"
        return body([], cont(token), token)

    source = Canned({}, fallback=forever)
    with pytest.raises(
        InconsistentDataError, match="6 empty pages in a row, more than the 5"
    ) as info:
        await walk(source, start, end)
    assert PATH in str(info.value) and "continuation_token=" in str(info.value)
    assert len(source.sent) == 6  # bounded by the shard's buckets, not by patience


async def test_empty_pages_between_rows_reset_the_count() -> None:
    # 3 buckets, but 8 pages: runs of empty pages, each shorter than the bucket count.
    start, end = DAY_START, DAY_START + 3 * HOUR
    plan = [[], [], [0], [], [], [1], [], [2]]
    answers = {}
    for i, hours in enumerate(plan):
        key = first_key(start, end) if i == 0 else cont(f"p{i}")
        last = i == len(plan) - 1
        rows = [wire_row(start + h * HOUR) for h in hours]
        answers[key] = body(rows) if last else body(rows, cont(f"p{i + 1}"), f"p{i + 1}")
    assert hours_of(await walk(Canned(answers), start, end)) == [start + h * HOUR for h in range(3)]


# -- a token without next_url ----------------------------------------------------------------


@pytest.mark.parametrize("next_url", [None, ""], ids=["absent", "empty"])
async def test_a_token_without_next_url_continues_with_the_token_alone(
    next_url: str | None,
) -> None:
    start, end = DAY_START, DAY_START + 4 * HOUR
    first = {"result": "success", "data": [wire_row(start), wire_row(start + HOUR)]}
    first["continuation_token"] = "tok/1+"
    if next_url is not None:
        first["next_url"] = next_url
    source = Canned(
        {
            first_key(start, end): json.dumps(first).encode(),
            f"{FIRST}?continuation_token=tok%2F1%2B": body(
                [wire_row(start + 2 * HOUR), wire_row(start + 3 * HOUR)]
            ),
        }
    )
    assert hours_of(await walk(source, start, end)) == [start + h * HOUR for h in range(4)]
    # Only the token, on the same endpoint: no page_size, no times.
    assert source.sent[1] == f"{FIRST}?continuation_token=tok%2F1%2B"


async def test_the_same_token_twice_without_next_url_is_an_error() -> None:
    start, end = DAY_START, DAY_START + 4 * HOUR
    source = Canned(
        {
            first_key(start, end): body([wire_row(start)], token="same"),
            f"{FIRST}?continuation_token=same": body([wire_row(start + HOUR)], token="same"),
        }
    )
    with pytest.raises(InconsistentDataError, match="same continuation token twice"):
        await walk(source, start, end)
    assert len(source.sent) == 2


# -- next_url elsewhere ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "elsewhere",
    [
        cont("x", "/v2/data/liquidation.v1/token/btc"),
        cont("x", "/v2/data/trades.v1/token/eth"),
        "https://eu.market-api.kaiko.io" + PATH + "?continuation_token=x",
    ],
    ids=["other-asset", "other-endpoint", "other-host"],
)
async def test_a_next_url_to_another_path_or_host_keeps_nothing(elsewhere: str) -> None:
    start, end = DAY_START, DAY_START + 4 * HOUR
    source = Canned(
        {
            first_key(start, end): body([wire_row(start)], cont("a"), "a"),
            cont("a"): body([wire_row(start + HOUR)], elsewhere, "b"),
        }
    )
    with pytest.raises(UnsafeURLError, match="not followed"):
        await walk(source, start, end)
    assert elsewhere not in source.sent


async def test_the_client_refuses_another_assets_next_url(mocked: aioresponses) -> None:
    start, end = "2025-02-01T00:00:00Z", "2025-02-01T04:00:00Z"
    btc = cont("x", "/v2/data/liquidation.v1/token/btc")
    params = TOKEN.first_params(ETH, SubRange(DAY_START, DAY_START + 4 * HOUR), "asc", 1000)
    mocked.get(
        f"{FIRST}?{urlencode(params)}", body=body([wire_row(DAY_START)], btc, "x"), repeat=True
    )
    mocked.get(btc, body=body([wire_row(DAY_START + HOUR)]), repeat=True)
    async with LiquidationClient(
        api_key="k-trust", rate_limit=1000, retry=RetryPolicy(max_attempts=1)
    ) as client:
        with pytest.raises(UnsafeURLError, match="token/btc, not the requested"):
            await client.fetch("eth", start, end, sort="asc")
        with pytest.raises(UnsafeURLError):
            async with client.stream("eth", start, end, sort="asc") as stream:
                [row async for row in stream]
    # Only the first page, once per call: the btc URL was never asked for.
    assert [url.path for _, url in mocked.requests] == [PATH]
    assert sum(len(v) for v in mocked.requests.values()) == 2
