"""msgspec Structs of the wire format of ``/v2/data/liquidation.v1/token/{asset}``.

Field names are the API's own (see the endpoint doc's "Fields" and "Response example").
Rows are decoded strictly: a count that arrives as a string is an error, not a guess, and
a row that contradicts itself is refused (see :class:`LiquidationRow`).
The envelope is decoded leniently (``page_size`` has been seen as ``"2"`` on other Kaiko
endpoints), so it is decoded in two passes: the envelope with ``data`` kept raw, then the
rows with their own strict decoder. Unknown fields are ignored everywhere, so a field
Kaiko adds later does not break old clients.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

__all__ = [
    "Access",
    "Amount",
    "Count",
    "Envelope",
    "ExchangeVolume",
    "LiquidationRow",
    "PageBody",
    "QueryEcho",
    "TimestampRange",
    "decode_envelope",
    "decode_page",
    "decode_rows",
    "encode_rows",
]


#: A count: an integer, never negative. An amount: a number, never negative; JSON has no
#: NaN or infinity, and msgspec refuses a literal too large for a float ("1e999"), so an
#: amount that decoded is finite. Checked by msgspec while it decodes (cheaper than a loop
#: over the rows afterwards; measured). Sums are not checked: a real server may round.
Count = Annotated[int, msgspec.Meta(ge=0)]
Amount = Annotated[float, msgspec.Meta(ge=0)]


# gc=False: rows hold only scalars and a list of scalar structs, so they cannot form
# cycles; untracked, a fetch that keeps 100k rows costs the cycle collector nothing.
class ExchangeVolume(msgspec.Struct, frozen=True, gc=False):
    """One exchange's share of a bucket (an entry of a row's ``exchanges``)."""

    exchange: str
    total_trades: Count
    total_amount: Amount
    long_trades: Count
    long_amount: Amount
    short_trades: Count
    short_amount: Amount


class LiquidationRow(msgspec.Struct, frozen=True, gc=False):
    """One interval bucket of liquidations for an asset, all exchanges together.

    ``interval_time`` is a timezone-aware UTC datetime; ``interval_timestamp`` is the
    integer exactly as sent, which is nanoseconds although the doc says milliseconds.
    The two must name the same instant, in nanoseconds (the doc's example) or in
    milliseconds (the doc's label): :func:`kaiko_liq.shard.check_rows` refuses a page
    where they do not, in the loop that checks every row's place anyway.
    """

    # tz=True: a time without an offset is an error, never read as local time.
    interval_time: Annotated[datetime, msgspec.Meta(tz=True)]
    interval_timestamp: int
    total_trades: Count
    total_amount: Amount
    long_trades: Count
    long_amount: Amount
    short_trades: Count
    short_amount: Amount
    exchanges: list[ExchangeVolume]

    def __post_init__(self) -> None:
        # Kaiko sends "Z"; any other offset is the same instant, handed out in UTC.
        if self.interval_time.tzinfo is not UTC:
            msgspec.structs.force_setattr(self, "interval_time", self.interval_time.astimezone(UTC))


class QueryEcho(msgspec.Struct, frozen=True):
    """The envelope's ``query`` block. Every field is optional: it is informative only."""

    request_time: str | None = None
    query_start_time: str | None = None
    query_end_time: str | None = None
    data_start_time: str | None = None
    data_end_time: str | None = None
    start_time: str | None = None
    start_timestamp: int | None = None
    end_time: str | None = None
    end_timestamp: int | None = None
    page_size: int | None = None
    sort: str | None = None
    token: str | None = None
    interval: str | None = None
    commodity: str | None = None
    data_version: str | None = None


class TimestampRange(msgspec.Struct, frozen=True):
    start_timestamp: int | None = None
    end_timestamp: int | None = None


class Access(msgspec.Struct, frozen=True):
    access_range: TimestampRange | None = None
    data_range: TimestampRange | None = None


class _Answer(msgspec.Struct, frozen=True):
    """The envelope's fields around ``data``, as the seed's example and Kaiko's envelope
    docs name them; the two answers below differ only in how ``data`` is held."""

    query: QueryEcho | None = None
    answer_time: str | None = None
    answer_timestamp: int | None = None
    access: Access | None = None
    result: str | None = None
    message: str | None = None
    continuation_token: str | None = None
    next_url: str | None = None


class Envelope(_Answer, frozen=True):
    """A whole answer. ``data`` stays raw until :func:`decode_rows` decodes it strictly."""

    # Raw cannot sit in a union; an absent ``data`` is the empty Raw.
    data: msgspec.Raw = msgspec.Raw(b"")


class PageBody(_Answer, frozen=True):
    """A whole answer with its rows decoded: what :func:`decode_page` returns."""

    data: list[LiquidationRow] | None = None


# One decoder per type, built once (msgspec perf tips).
_page_decoder = msgspec.json.Decoder(PageBody)
_envelope_decoder = msgspec.json.Decoder(Envelope, strict=False)
_rows_decoder = msgspec.json.Decoder(list[LiquidationRow])
_encoder = msgspec.json.Encoder()


def decode_page(body: bytes | str) -> PageBody:
    """Decode a whole answer: envelope leniently, rows strictly, in one pass when it can.

    The fast path is one strict pass over the body. Only when that fails is the body read
    again in two passes, the envelope leniently (``page_size: "2"`` is fine) and the rows
    strictly, so a string where a row needs a number still raises, naming the field.
    """
    try:
        return _page_decoder.decode(body)
    except msgspec.ValidationError:
        envelope = decode_envelope(body)
        try:
            rows = decode_rows(envelope.data) if envelope.data else None
        except msgspec.ValidationError as exc:
            # Name the field as it sits in the body, not in the data array alone.
            raise msgspec.ValidationError(str(exc).replace("`$[", "`$.data[")) from None
        fields = {f: getattr(envelope, f) for f in _Answer.__struct_fields__}
        return PageBody(**fields, data=rows)


def decode_envelope(body: bytes | str) -> Envelope:
    """Decode an answer's envelope; raises ``msgspec.DecodeError`` on malformed JSON."""
    return _envelope_decoder.decode(body)


def decode_rows(raw: msgspec.Raw | bytes) -> list[LiquidationRow]:
    """Decode the ``data`` array strictly; raises ``msgspec.ValidationError`` on a bad row."""
    return _rows_decoder.decode(raw)


def encode_rows(rows: list[LiquidationRow]) -> bytes:
    """Encode rows back to the wire's JSON (used by the emulator and JSON Lines output)."""
    return _encoder.encode(rows)


# TEMP until the events model lands
class LiquidationEvent(msgspec.Struct, frozen=True, gc=False):
    """One liquidation event (``/v2/data/liquidation.v1/trades/...``)."""

    timestamp: int
    trade_id: str
    price: float
    amount: float
    amount_quote: float
    amount_usd: float
    rate: float | None
    position_side: Literal["long", "short"]
