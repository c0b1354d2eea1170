"""The events route's table: one flat row per liquidation event.

``events``, one row per event::

    exchange, instrument_class, instrument,
    time, timestamp, trade_id, price, amount, amount_quote, amount_usd, rate, position_side

``time`` is ``timestamp`` (milliseconds, as the endpoint doc says) as
``timestamp[ns, tz=UTC]``: nanoseconds like every time in kaiko-liq's tables, so events
line up with the token route's ``interval_time`` without a cast; ``timestamp`` is the
integer as sent. ``rate`` may be null. CSV, JSON Lines and Parquet write one file.
"""

from __future__ import annotations

from operator import attrgetter

from ..models import LiquidationEvent
from ..tables import Shape, TableSpec, derived, plain

__all__ = ["EVENTS_TABLE"]

EVENTS_TABLE: TableSpec[LiquidationEvent] = TableSpec(
    row=LiquidationEvent,
    keys=("exchange", "instrument_class", "instrument"),
    shapes=(
        Shape(
            "events",
            (
                derived("time", "time_ms", attrgetter("timestamp")),
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
