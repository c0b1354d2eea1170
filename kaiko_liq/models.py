"""msgspec Structs of the wire format of ``/v2/data/liquidation.v1/token/{asset}`` and of
``/v2/data/liquidation.v1/trades/{exchange}/{instrument_class}/{instrument}`` (events).

Field names are the API's own (see the endpoint doc's "Fields" and "Response example").
Rows are decoded strictly: a count that arrives as a string is an error, not a guess, and
a row that contradicts itself is refused (see :class:`LiquidationRow`).
The envelope is decoded leniently (``page_size`` has been seen as ``"2"`` on other Kaiko
endpoints), so it is decoded in two passes: the envelope with ``data`` kept raw, then the
rows with their own strict decoder. Unknown fields are ignored everywhere, so a field
Kaiko adds later does not break old clients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "Access",
    "Amount",
    "Count",
    "Envelope",
    "EventPageBody",
    "ExchangeVolume",
    "LiquidationEvent",
    "LiquidationRow",
    "PageBody",
    "PositionSide",
    "QueryEcho",
    "TimestampRange",
    "decode_envelope",
    "decode_event_page",
    "decode_events",
    "decode_page",
    "decode_rows",
    "encode_events",
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
    milliseconds (the doc's label): :mod:`kaiko_liq.routes.token`'s page check refuses a page
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


#: The side of the position an event closed (events endpoint: ``long`` / ``short``).
PositionSide = Literal["long", "short"]


class LiquidationEvent(msgspec.Struct, frozen=True, gc=False):
    """One liquidation on one instrument, as the events endpoint's rows name its fields.

    Checked while decoding: ``timestamp`` is a non-negative integer (the doc says
    milliseconds; its magnitude is the client's to check, as for ``interval_timestamp``),
    ``price`` and the amounts are non-negative numbers, ``position_side`` is ``long`` or
    ``short``. ``rate`` is a number or null: its type is not documented (KAIKO_API.md).
    ``trade_id`` is the exchange's, or one Kaiko made up when the exchange gives none.
    """

    timestamp: Annotated[int, msgspec.Meta(ge=0)]
    trade_id: str
    price: Amount
    amount: Amount
    amount_quote: Amount
    amount_usd: Amount
    rate: float | None
    position_side: PositionSide


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
    # The events endpoint's path parameters, echoed.
    exchange: str | None = None
    instrument_class: str | None = None
    instrument: str | None = None


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


class EventPageBody(_Answer, frozen=True):
    """A whole answer of the events endpoint with its rows decoded (:func:`decode_event_page`)."""

    data: list[LiquidationEvent] | None = None


# One decoder per type, built once (msgspec perf tips).
_page_decoder = msgspec.json.Decoder(PageBody)
_event_page_decoder = msgspec.json.Decoder(EventPageBody)
_envelope_decoder = msgspec.json.Decoder(Envelope, strict=False)
_rows_decoder = msgspec.json.Decoder(list[LiquidationRow])
_events_decoder = msgspec.json.Decoder(list[LiquidationEvent])
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
        return PageBody(**_two_passes(body, decode_rows))


def decode_event_page(body: bytes | str) -> EventPageBody:
    """:func:`decode_page` for the events endpoint: the same envelope, event rows."""
    try:
        return _event_page_decoder.decode(body)
    except msgspec.ValidationError:
        return EventPageBody(**_two_passes(body, decode_events))


def _two_passes(
    body: bytes | str, rows: Callable[[msgspec.Raw], Sequence[object]]
) -> dict[str, Any]:
    """The fields of an answer read in two passes: the envelope leniently, then its
    ``data`` strictly with ``rows``."""
    envelope = decode_envelope(body)
    try:
        data = rows(envelope.data) if envelope.data else None
    except msgspec.ValidationError as exc:
        # Name the field as it sits in the body, not in the data array alone.
        raise msgspec.ValidationError(str(exc).replace("`$[", "`$.data[")) from None
    fields = {f: getattr(envelope, f) for f in _Answer.__struct_fields__}
    return {**fields, "data": data}


def decode_envelope(body: bytes | str) -> Envelope:
    """Decode an answer's envelope; raises ``msgspec.DecodeError`` on malformed JSON."""
    return _envelope_decoder.decode(body)


def decode_rows(raw: msgspec.Raw | bytes) -> list[LiquidationRow]:
    """Decode the ``data`` array strictly; raises ``msgspec.ValidationError`` on a bad row."""
    return _rows_decoder.decode(raw)


def encode_rows(rows: list[LiquidationRow]) -> bytes:
    """Encode rows back to the wire's JSON (used by the emulator and JSON Lines output)."""
    return _encoder.encode(rows)


def decode_events(raw: msgspec.Raw | bytes) -> list[LiquidationEvent]:
    """Decode an events answer's ``data`` array strictly (``msgspec.ValidationError``)."""
    return _events_decoder.decode(raw)


def encode_events(events: list[LiquidationEvent]) -> bytes:
    """Encode events back to the wire's JSON (``rate`` None is written as ``null``)."""
    return _encoder.encode(events)
