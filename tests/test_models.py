"""The wire models decode the seed's own example exactly as printed."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from kaiko_liq.models import LiquidationRow, decode_envelope, decode_rows, encode_rows
from tests.seed import seed_response_json


def test_seed_example_decodes_field_for_field() -> None:
    envelope = decode_envelope(seed_response_json())
    assert envelope.query is not None
    q = envelope.query
    assert (q.query_start_time, q.query_end_time) == (
        "2025-01-31T09:00:01Z",
        "2025-02-27T23:59:59Z",
    )
    assert (q.data_start_time, q.data_end_time) == ("2025-01-31T09:00:00Z", "2025-02-28T00:00:00Z")
    assert (q.start_timestamp, q.end_timestamp) == (1740693600000, 1740700800000)
    assert (q.page_size, q.sort, q.token, q.interval) == (2, "desc", "eth", "1h")
    assert (q.commodity, q.data_version) == ("liquidationEvents", "v1")
    assert envelope.answer_timestamp == 1743768595574
    assert envelope.access is not None and envelope.access.access_range is not None
    assert envelope.access.access_range.start_timestamp == 1688428800000
    assert envelope.access.data_range is not None
    assert envelope.access.data_range.start_timestamp is None
    assert envelope.continuation_token and envelope.continuation_token.startswith("4AQYBmrX")
    assert envelope.next_url and "continuation_token=" in envelope.next_url

    [row] = decode_rows(envelope.data)
    assert row.interval_time == datetime(2025, 2, 27, 23, tzinfo=UTC)
    # Documented "in milliseconds", but 19 digits: nanoseconds, kept as sent.
    assert row.interval_timestamp == 1740697200000000000
    assert row.interval_timestamp == int(row.interval_time.timestamp()) * 10**9
    assert (row.total_trades, row.long_trades, row.short_trades) == (40, 2, 38)
    assert row.total_amount == 474520.3599480028
    assert [e.exchange for e in row.exchanges] == ["bbit", "okex"]
    assert row.exchanges[0].long_amount == 0.0
    assert sum(e.total_trades for e in row.exchanges) == row.total_trades


def test_interval_time_with_milliseconds_also_decodes() -> None:
    body = encode_rows([]).replace(b"[]", b"")  # noqa: F841 - keeps encoder covered
    raw = (
        b'[{"interval_time":"2025-03-17T00:00:00.000Z","interval_timestamp":1742169600000000000,'
        b'"total_trades":0,"total_amount":0,"long_trades":0,"long_amount":0,"short_trades":0,'
        b'"short_amount":0,"exchanges":[]}]'
    )
    [row] = decode_rows(raw)
    assert row.interval_time == datetime(2025, 3, 17, tzinfo=UTC)


def test_envelope_is_lenient_rows_are_strict() -> None:
    envelope = decode_envelope(b'{"query": {"page_size": "2"}, "data": [], "extra": 1}')
    assert envelope.query is not None and envelope.query.page_size == 2
    bad = (
        b'[{"interval_time":"2025-03-17T00:00:00Z","interval_timestamp":1,'
        b'"total_trades":"7","total_amount":0,"long_trades":0,"long_amount":0,'
        b'"short_trades":0,"short_amount":0,"exchanges":[]}]'
    )
    with pytest.raises(msgspec.ValidationError, match="total_trades"):
        decode_rows(bad)


def test_rows_round_trip_through_the_encoder() -> None:
    rows = decode_rows(decode_envelope(seed_response_json()).data)
    again = decode_rows(encode_rows(rows))
    assert again == rows
    assert isinstance(again[0], LiquidationRow)


def test_interval_time_must_carry_an_offset_and_comes_out_in_utc() -> None:
    row = (
        b'[{"interval_time":"2025-03-17T01:00:00+01:00","interval_timestamp":1,'
        b'"total_trades":0,"total_amount":0,"long_trades":0,"long_amount":0,'
        b'"short_trades":0,"short_amount":0,"exchanges":[]}]'
    )
    [decoded] = decode_rows(row)
    assert decoded.interval_time == datetime(2025, 3, 17, tzinfo=UTC)
    assert decoded.interval_time.tzinfo is UTC
    with pytest.raises(msgspec.ValidationError, match="timezone"):
        decode_rows(row.replace(b"+01:00", b""))
