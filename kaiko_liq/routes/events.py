"""Derivative liquidation events:
``GET /v2/data/liquidation.v1/trades/{exchange}/{instrument_class}/{instrument}``.

Everything the generic machinery needs to know about this endpoint (Kaiko's "Derivative
liquidation events" page, summed up in ``shared/KAIKO_API.md``). What the docs leave open
is decided here, each marked **Assumption**:

* The target is an instrument: three path parameters. ``instrument_class`` is
  ``future`` or ``perpetual-future``.
* ``start_time`` is inclusive, ``end_time`` exclusive, both sent to the millisecond; the
  window travels inside the continuation token (Kaiko), so later pages follow the cursor.
* ``timestamp`` is documented in milliseconds. **Assumption**: as with the token route's
  ``interval_timestamp``, the label may be wrong, so the magnitude decides
  (:func:`event_ms`): below ``10**14`` it is milliseconds (up to the year 5138), below
  ``10**17`` microseconds, else nanoseconds. A row's instant is its timestamp floored
  to the millisecond, the grid that requests are written on, so "inside
  ``[start, end)``" means what the server means.
* **Assumption**: several events can share a millisecond, and a page can stop inside
  one: rows are in the requested order, ties allowed; a ``trade_id`` seen twice in one
  sub-range is a repeat (Kaiko makes one up where the exchange gives none, so every event
  has one).
* **Assumption**: nothing says how dense a window is, so shards are whole UTC days split
  as they are fetched (:class:`~kaiko_liq.sharding.AdaptiveShards`). For the loop bound a
  page is taken to span at least a minute when a server sizes pages by time.
* **Assumption**: events sharing a millisecond come in the server's own order, and a
  ``desc`` query gives them in exactly the reverse of an ``asc`` one. A cache keeps
  events ascending and serves ``desc`` by reversing them, so through a cache ties come
  in that order; a plain ``desc`` query from a server that orders ties some other way
  (by ``trade_id`` both ways, say) would give the same events, but ties in another
  order. Nothing else depends on the order within a millisecond.
* ``rate`` may be a number or null.
* An event is final ``settle`` after it happened (see :mod:`kaiko_liq.settle`).
* The recheck (a store fetching its newest rows again on each run, see
  :mod:`kaiko_liq.settle`) covers at most :data:`RECHECK_LIMIT` (an hour) of events,
  not the client's whole ``recheck`` (a day by default): a dense instrument has tens of
  pages a day, and the recheck should cost about a page per instrument and run (a
  sparse hour is one page, a dense one a few). An exchange that reports events later
  than that is covered by a longer ``settle``, not by the recheck.

The table a row becomes, :data:`EVENTS_TABLE`: one flat row per liquidation event.

``events``, one row per event::

    exchange, instrument_class, instrument,
    time, timestamp, trade_id, price, amount, amount_quote, amount_usd, rate, position_side

``time`` is the event's instant (``timestamp`` read as above) as
``timestamp[ns, tz=UTC]``: nanoseconds like every time in kaiko-liq's tables, so events
line up with the token route's ``interval_time`` without a cast; ``timestamp`` is the
integer as sent. ``rate`` may be null. CSV, JSON Lines and Parquet write one file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from ..errors import InconsistentDataError, InvalidArgumentError
from ..models import LiquidationEvent, decode_event_page
from ..plan import SubRange
from ..query import MILLISECOND, MillisecondGrid, epoch_ms, format_time, from_epoch_ms
from ..sharding import AdaptiveShards
from ..tables import Shape, TableSpec, derived, plain
from . import Route, register

__all__ = [
    "EVENTS",
    "EVENTS_TABLE",
    "INSTRUMENT_CLASSES",
    "RECHECK_LIMIT",
    "EventsRoute",
    "Instrument",
    "event_ms",
    "parse_instrument",
    "parse_instrument_spec",
]

INSTRUMENT_CLASSES = ("future", "perpetual-future")
_CODE_RE = re.compile(r"[A-Za-z0-9_-]+")
_MINUTE = timedelta(minutes=1)
#: The most of the newest stored events a store fetches again on each run.
RECHECK_LIMIT = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Instrument:
    """What an events request is about: ``exchange``, ``instrument_class``,
    ``instrument``, validated and lower-case."""

    exchange: str
    instrument_class: str
    instrument: str

    def __str__(self) -> str:
        return f"{self.exchange}:{self.instrument_class}:{self.instrument}"


def parse_instrument(exchange: str, instrument_class: str, instrument: str) -> Instrument:
    """Validate the three path parameters; each becomes one URL path segment."""
    for name, value in (("exchange", exchange), ("instrument", instrument)):
        if not isinstance(value, str) or _CODE_RE.fullmatch(value) is None:
            raise InvalidArgumentError(
                f"{name} {value!r} must be a code of letters, digits, '-' and '_' "
                f"(for example {'binc' if name == 'exchange' else 'btc-usdt'})"
            )
    if instrument_class not in INSTRUMENT_CLASSES:
        raise InvalidArgumentError(
            f"instrument_class {instrument_class!r} is not allowed; use "
            f"{' or '.join(map(repr, INSTRUMENT_CLASSES))}"
        )
    return Instrument(exchange.lower(), instrument_class, instrument.lower())


def parse_instrument_spec(spec: str | Instrument) -> Instrument:
    """``EXCHANGE:CLASS:INSTRUMENT`` (``binc:perpetual-future:btc-usdt``), as the CLI
    takes it; an :class:`Instrument` (already checked) as it is."""
    if isinstance(spec, Instrument):
        return spec
    parts = spec.split(":") if isinstance(spec, str) else []
    if len(parts) != 3:
        raise InvalidArgumentError(
            f"instrument {spec!r} is not EXCHANGE:CLASS:INSTRUMENT, for example "
            "'binc:perpetual-future:btc-usdt'"
        )
    return parse_instrument(*parts)


def event_ms(row: LiquidationEvent) -> int:
    """The event's instant in whole milliseconds, whatever unit ``timestamp`` is in."""
    stamp = row.timestamp
    if stamp < 10**14:
        return stamp
    if stamp < 10**17:
        return stamp // 1000
    return stamp // 1_000_000


class _EventOrder:
    """Events must lie in ``[lo, hi)``, in the requested order (ties allowed), and no
    ``trade_id`` may come twice in one sub-range."""

    def __init__(self, lo: datetime, hi: datetime, sort: str) -> None:
        self._lo, self._hi = lo, hi
        self._low = epoch_ms(lo)
        self._high = epoch_ms(hi)
        self._ascending = sort == "asc"
        self._sort = sort
        self._last: int | None = None
        self._ids: set[str] = set()

    def __call__(self, rows: Sequence[LiquidationEvent], url: str) -> None:
        low, high, last, ascending, ids = (
            self._low,
            self._high,
            self._last,
            self._ascending,
            self._ids,
        )
        for row in rows:
            t = event_ms(row)
            if not low <= t < high:
                raise InconsistentDataError(
                    f"event {row.trade_id!r} at {format_time(from_epoch_ms(t))} is outside "
                    f"the requested window [{format_time(self._lo)}, {format_time(self._hi)})",
                    url,
                )
            if last is not None and (t < last if ascending else t > last):
                raise InconsistentDataError(
                    f"event {row.trade_id!r} at {format_time(from_epoch_ms(t))} follows "
                    f"{format_time(from_epoch_ms(last))}: out of {self._sort} order",
                    url,
                )
            if row.trade_id in ids:
                raise InconsistentDataError(
                    f"event {row.trade_id!r} at {format_time(from_epoch_ms(t))} came twice",
                    url,
                )
            ids.add(row.trade_id)
            last = t
        self._last = last


class EventsRoute(Route[Instrument, LiquidationEvent]):
    name: ClassVar[str] = "events"
    row_name: ClassVar[str] = "instant"
    noun: ClassVar[str] = "instrument"
    path_template: ClassVar[str] = (
        "/v2/data/liquidation.v1/trades/{exchange}/{instrument_class}/{instrument}"
    )
    policy = AdaptiveShards()

    def path_params(self, target: Instrument) -> dict[str, str]:
        return {
            "exchange": target.exchange,
            "instrument_class": target.instrument_class,
            "instrument": target.instrument,
        }

    def label(self, target: Instrument) -> str:
        return str(target)

    def label_of(self, given: Any) -> str:
        return str(given if isinstance(given, Instrument) else parse_instrument_spec(given))

    def decode(self, body: bytes) -> object:
        return decode_event_page(body)

    def first_params(
        self, target: Instrument, shard: SubRange, sort: str, page_size: int
    ) -> dict[str, str]:
        return {
            "start_time": format_time(shard.start),
            "end_time": format_time(shard.end, round_up=True),
            "sort": sort,
            "page_size": str(page_size),
        }

    def grid(self, target: Instrument) -> MillisecondGrid:
        return MILLISECOND

    def time_of(self, row: LiquidationEvent) -> datetime:
        return from_epoch_ms(event_ms(row))

    def page_check(self, target: Instrument, lo: datetime, hi: datetime, sort: str) -> _EventOrder:
        return _EventOrder(lo, hi, sort)

    def max_empty_pages(self, target: Instrument, lo: datetime, hi: datetime) -> tuple[int, str]:
        return (hi - lo) // _MINUTE + 1, "minutes"

    def recheck_span(self, target: Instrument, recheck: timedelta, page_size: int) -> timedelta:
        # An hour at most: about a page per instrument and run (see the module docstring).
        return min(recheck, RECHECK_LIMIT)

    @property
    def table(self) -> TableSpec[LiquidationEvent]:
        return EVENTS_TABLE


EVENTS_TABLE: TableSpec[LiquidationEvent] = TableSpec(
    row=LiquidationEvent,
    keys=("exchange", "instrument_class", "instrument"),
    shapes=(
        Shape(
            "events",
            (
                derived("time", "time_ms", event_ms),
                plain("timestamp", "int64"),
                plain("trade_id", "string"),
                plain("price", "float64"),
                plain("amount", "float64"),
                plain("amount_quote", "float64"),
                plain("amount_usd", "float64"),
                plain("rate", "float64?"),
                plain("position_side", "string"),
            ),
        ),
    ),
    files=(("events", ""),),
    stored="events",
    time="time",
)


#: The one instance: routes are stateless.
EVENTS = register(EventsRoute())
