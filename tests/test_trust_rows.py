"""Rows that contradict themselves, on canned bodies: refused, never kept.

A row's two timestamps must name the same instant (nanoseconds as the doc's example,
milliseconds as its label); counts are non-negative integers and amounts non-negative
finite numbers, for the row and for each exchange. Sums are deliberately not checked.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from kaiko_liq.errors import (
    InconsistentDataError,
    MalformedBodyError,
    UnexpectedResponseError,
    is_fatal,
)
from kaiko_liq.protocol import Page, Retry, decipher
from tests.test_trust_paging import DAY_START, FIRST, HOUR, Canned, body, first_key, walk, wire_row

END = DAY_START + 3 * HOUR
NS = wire_row(DAY_START)["interval_timestamp"]


async def fetch_one(row: dict[str, Any]) -> list[Any]:
    return await walk(Canned({first_key(DAY_START, END): body([row])}), DAY_START, END)


async def test_nanoseconds_and_milliseconds_that_agree_are_both_accepted() -> None:
    assert len(await fetch_one(wire_row(DAY_START, interval_timestamp=NS))) == 1
    rows = await fetch_one(wire_row(DAY_START, interval_timestamp=NS // 1_000_000))
    assert rows[0].interval_timestamp == NS // 1_000_000  # kept as sent


@pytest.mark.parametrize(
    "stamp",
    [
        NS + 3600 * 10**9,  # an hour off, in ns
        NS // 10**6 - 3_600_000,  # an hour off, in ms
        NS // 10**9,  # seconds: neither documented magnitude
        NS // 1000,  # microseconds
        0,
        -NS,
    ],
    ids=["hour-off-ns", "hour-off-ms", "seconds", "micros", "zero", "negative"],
)
async def test_timestamps_that_disagree_are_refused(stamp: int) -> None:
    with pytest.raises(InconsistentDataError, match=f"interval_timestamp {stamp}, which is not"):
        await fetch_one(wire_row(DAY_START, interval_timestamp=stamp))


async def test_a_mismatch_on_a_later_page_refuses_the_shard() -> None:
    good = [wire_row(DAY_START)]
    bad = [wire_row(DAY_START + HOUR, interval_timestamp=NS)]  # the first hour's stamp
    source = Canned(
        {
            first_key(DAY_START, END): body(good, FIRST + "?continuation_token=a", "a"),
            FIRST + "?continuation_token=a": body(bad),
        }
    )
    with pytest.raises(InconsistentDataError) as info:
        await walk(source, DAY_START, END)
    assert is_fatal(info.value)


def venue_with(**changes: Any) -> dict[str, Any]:
    row = wire_row(DAY_START)
    row["exchanges"] = [{**row["exchanges"][0], **changes}]
    return row


BAD_FIGURES = [
    pytest.param(wire_row(DAY_START, total_trades=-1), "total_trades", id="negative-count"),
    pytest.param(wire_row(DAY_START, long_trades=1.5), "long_trades", id="fractional-count"),
    pytest.param(wire_row(DAY_START, short_trades=True), "short_trades", id="bool-count"),
    pytest.param(wire_row(DAY_START, short_trades="2"), "short_trades", id="string-count"),
    pytest.param(wire_row(DAY_START, total_amount=-0.01), "total_amount", id="negative-amount"),
    pytest.param(venue_with(long_trades=-3), "exchanges[0].long_trades", id="venue-count"),
    pytest.param(venue_with(short_amount=-5.0), "exchanges[0].short_amount", id="venue-amount"),
]


@pytest.mark.parametrize(("row", "field"), BAD_FIGURES)
def test_bad_counts_and_amounts_are_refused_naming_the_field(
    row: dict[str, Any], field: str
) -> None:
    with pytest.raises(UnexpectedResponseError) as info:
        decipher(200, {}, body([row]), FIRST, max_bytes=1 << 20)
    assert f"$.data[0].{field}" in str(info.value)
    assert is_fatal(info.value)


@pytest.mark.parametrize("literal", ["1e999", "-1e999"])
def test_an_amount_too_large_for_a_float_is_refused(literal: str) -> None:
    raw = body([wire_row(DAY_START)]).replace(
        b'"total_amount": 30.5', b'"total_amount": ' + literal.encode(), 1
    )
    assert literal.encode() in raw
    with pytest.raises(UnexpectedResponseError, match="out of range") as info:
        decipher(200, {}, raw, FIRST, max_bytes=1 << 20)
    assert is_fatal(info.value)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_and_never_decode(literal: str) -> None:
    raw = body([wire_row(DAY_START)]).replace(b"30.5", literal.encode(), 1)
    outcome = decipher(200, {}, raw, FIRST, max_bytes=1 << 20)
    # Not JSON at all: treated like a body cut short (retried, then an error), never a row.
    assert isinstance(outcome, Retry) and isinstance(outcome.error, MalformedBodyError)


def test_sums_are_not_checked_a_server_may_round() -> None:
    row = wire_row(DAY_START, total_amount=30.499999, total_trades=4)
    outcome = decipher(200, {}, body([row]), FIRST, max_bytes=1 << 20)
    assert isinstance(outcome, Page) and outcome.rows[0].total_trades == 4


def test_zero_and_negative_zero_are_fine() -> None:
    row = venue_with(long_trades=0, long_amount=-0.0)
    outcome = decipher(200, {}, json.dumps({"data": [row]}).encode(), FIRST, max_bytes=1 << 20)
    assert isinstance(outcome, Page) and outcome.rows[0].exchanges[0].long_trades == 0
    assert timedelta(0) == outcome.rows[0].interval_time - DAY_START
