"""The token route's tables: a bucket's totals, its per-exchange breakdown, or both nested.

``totals`` (the default), one row per ``(asset, interval_time)``::

    asset, interval_time, interval_timestamp,
    total_trades, total_amount, long_trades, long_amount, short_trades, short_amount

``exchanges``, the breakdown in long form, one row per ``(asset, interval_time, exchange)``::

    asset, interval_time, exchange,
    total_trades, total_amount, long_trades, long_amount, short_trades, short_amount

``nested`` keeps the API's own nesting: the totals columns plus ``exchanges`` as a
``list<struct>`` column. A store keeps it, so one file holds a whole shard.

``interval_time`` is ``timestamp[ns, tz=UTC]``; ``interval_timestamp`` the integer as
sent (nanoseconds, although the endpoint doc says milliseconds); counts int64, amounts
float64 (USD). CSV and Parquet write ``totals`` at the path and ``exchanges`` beside it
(``out.csv``, ``out.exchanges.csv``).
"""

from __future__ import annotations

from ..models import ExchangeVolume, LiquidationRow
from ..tables import Column, Shape, TableSpec, nested, plain

__all__ = ["FIGURES", "TOKEN_TABLE"]

#: A bucket's figures, the same for all exchanges together and for each one.
FIGURES: tuple[Column, ...] = (
    plain("total_trades", "int64"),
    plain("total_amount", "float64"),
    plain("long_trades", "int64"),
    plain("long_amount", "float64"),
    plain("short_trades", "int64"),
    plain("short_amount", "float64"),
)

_TIME = plain("interval_time", "time")
_TOTALS = (_TIME, plain("interval_timestamp", "int64"), *FIGURES)
_EXCHANGES = nested("exchanges", ExchangeVolume, (plain("exchange", "string"), *FIGURES))

TOKEN_TABLE: TableSpec[LiquidationRow] = TableSpec(
    row=LiquidationRow,
    keys=("asset",),
    shapes=(
        Shape("totals", _TOTALS),
        Shape("exchanges", (_TIME,), explode=_EXCHANGES),
        Shape("nested", (*_TOTALS, _EXCHANGES)),
    ),
    files=(("totals", ""), ("exchanges", ".exchanges")),
    stored="nested",
    time="interval_time",
)
