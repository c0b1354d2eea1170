"""Token-level liquidation volumes: ``GET /v2/data/liquidation.v1/token/{asset}``.

Everything the generic machinery needs to know about this endpoint, and nothing else
(the endpoint doc: ``shared/seeds/000_da3de7948c6182f6.txt``; assumptions it only implies
are marked **Assumption**):

* The target is an asset at an interval: ``{asset}`` is the path's one parameter,
  ``interval`` a query parameter that fixes the grid of buckets.
* **Assumption**: buckets are aligned to the UTC epoch grid of the interval, and a bucket
  is at most one row (a bucket with no liquidations may be absent, or present with
  zeros). So a window of ``n`` buckets needs at most ``ceil(n / page_size)`` pages, and
  shards are planned up front (:class:`~kaiko_liq.sharding.GridShards`).
* ``interval_timestamp`` is documented "in milliseconds" but every example is 19 digits:
  nanoseconds. Both are accepted; each row's must name its ``interval_time``.
* A bucket is final ``settle`` after it closes (see :mod:`kaiko_liq.settle`).

The tables a row becomes, :data:`TOKEN_TABLE`: a bucket's totals, its per-exchange
breakdown, or both nested.

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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from ..errors import InconsistentDataError
from ..models import ExchangeVolume, LiquidationRow, decode_page
from ..plan import SubRange, buckets_in
from ..query import Interval, format_time, validate_asset
from ..sharding import GridShards
from ..tables import Column, Shape, TableSpec, nested, plain
from . import Route, register

__all__ = ["FIGURES", "TOKEN", "TOKEN_TABLE", "Token", "TokenRoute"]

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


@dataclass(frozen=True, slots=True)
class Token:
    """What a token request is about: one asset (lower-case, validated) at one interval."""

    asset: str
    interval: Interval


class _RowOrder:
    """Rows must lie in ``[lo, hi)``, on the grid, strictly in the requested order, and
    each row's ``interval_timestamp`` must be its ``interval_time`` in nanoseconds (the
    doc's example) or milliseconds (the doc's label). Keeps the last row's time across
    the pages of one sub-range."""

    def __init__(self, interval: Interval, lo: datetime, hi: datetime, sort: str) -> None:
        self._interval = interval
        self._lo, self._hi = lo, hi
        self._low, self._high = lo.timestamp(), hi.timestamp()
        self._ascending = sort == "asc"
        self._sort = sort
        self._last: float | None = None

    def __call__(self, rows: Sequence[LiquidationRow], url: str) -> None:
        # Epoch seconds, not datetime arithmetic: this runs for every row.
        step = self._interval.seconds
        low, high, last, ascending = self._low, self._high, self._last, self._ascending
        for row in rows:
            t = row.interval_time.timestamp()
            if not low <= t < high:
                raise InconsistentDataError(
                    f"row at {format_time(row.interval_time)} is outside the requested "
                    f"window [{format_time(self._lo)}, {format_time(self._hi)})",
                    url,
                )
            if t % step:
                raise InconsistentDataError(
                    f"row at {format_time(row.interval_time)} is not on the {self._interval} grid",
                    url,
                )
            # On the grid, t is a whole number of seconds, so this is exact.
            seconds = int(t)
            stamp = row.interval_timestamp
            if stamp != seconds * 1_000_000_000 and stamp != seconds * 1000:
                raise InconsistentDataError(
                    f"row at {format_time(row.interval_time)} has interval_timestamp "
                    f"{stamp}, which is not that instant in nanoseconds "
                    f"({seconds * 1_000_000_000}) or milliseconds ({seconds * 1000})",
                    url,
                )
            if last is not None and (t <= last if ascending else t >= last):
                raise InconsistentDataError(
                    f"row at {format_time(row.interval_time)} follows "
                    f"{format_time(datetime.fromtimestamp(last, UTC))}: duplicate or out "
                    f"of {self._sort} order",
                    url,
                )
            last = t
        self._last = last


class TokenRoute(Route[Token, LiquidationRow]):
    name: ClassVar[str] = "token"
    row_name: ClassVar[str] = "bucket"
    noun: ClassVar[str] = "asset"
    path_template: ClassVar[str] = "/v2/data/liquidation.v1/token/{asset}"
    policy = GridShards()

    def path_params(self, target: Token) -> dict[str, str]:
        return {"asset": target.asset}

    def label(self, target: Token) -> str:
        return target.asset

    def label_of(self, given: Any) -> str:
        return given.asset if isinstance(given, Token) else validate_asset(given)

    def decode(self, body: bytes) -> object:
        return decode_page(body)

    def first_params(
        self, target: Token, shard: SubRange, sort: str, page_size: int
    ) -> dict[str, str]:
        # Times at most to the millisecond, as the docs write them: start rounded down,
        # end up, so the window never shrinks (and buckets, an hour at least, cannot tell).
        return {
            "interval": target.interval.text,
            "sort": sort,
            "start_time": format_time(shard.start),
            "end_time": format_time(shard.end, round_up=True),
            "page_size": str(page_size),
        }

    def grid(self, target: Token) -> Interval:
        return target.interval

    def time_of(self, row: LiquidationRow) -> datetime:
        return row.interval_time

    def page_check(self, target: Token, lo: datetime, hi: datetime, sort: str) -> _RowOrder:
        return _RowOrder(target.interval, lo, hi, sort)

    def max_empty_pages(self, target: Token, lo: datetime, hi: datetime) -> tuple[int, str]:
        # An honest page covers at least one bucket.
        return buckets_in(lo, hi, target.interval), "buckets"

    @property
    def table(self) -> TableSpec[LiquidationRow]:
        return TOKEN_TABLE

    def recheck_span(self, target: Token, recheck: timedelta, page_size: int) -> timedelta:
        # At most one page of buckets: the recheck costs one request per asset and run.
        return min(recheck, target.interval.delta * page_size)

    def store_folder(self, target: Token) -> str:
        return target.interval.name


#: The one instance: routes are stateless.
TOKEN = register(TokenRoute())
