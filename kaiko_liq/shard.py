"""One shard's page chain: the first request with parameters, then ``next_url`` to the end.

Every page's rows are checked as they come: inside the shard's window, on the grid,
strictly in the requested order, so rows can neither repeat nor go missing without an
error. The transport sends and retries; this module decides when a chain is over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from .errors import InconsistentDataError
from .models import LiquidationRow
from .plan import SubRange
from .protocol import Page, check_next_url, first_page_params, page_url
from .query import Interval, format_time

__all__ = ["PageSource", "ShardQuery", "check_rows", "fetch_shard"]


class PageSource(Protocol):
    """What :func:`fetch_shard` needs of a transport."""

    base_url: str

    async def get_page(self, url: str, params: dict[str, str] | None = None) -> Page: ...


@dataclass(frozen=True, slots=True)
class ShardQuery:
    """What every shard of one fetch shares."""

    asset: str
    interval: Interval
    sort: str
    page_size: int


async def fetch_shard(
    transport: PageSource, query: ShardQuery, shard: SubRange
) -> list[LiquidationRow]:
    """Every row of ``shard``, in ``query.sort`` order."""
    base = transport.base_url
    url = page_url(base, query.asset)
    params: dict[str, str] | None = first_page_params(
        shard.start, shard.end, query.interval, query.sort, query.page_size
    )
    lo, hi = query.interval.floor(shard.start), query.interval.ceil(shard.end)
    rows: list[LiquidationRow] = []
    seen: set[str] = set()
    while True:
        page = await transport.get_page(url, params)
        check_rows(rows[-1] if rows else None, page.rows, lo, hi, query, url)
        rows.extend(page.rows)
        if page.is_last:
            return rows
        assert page.next_url is not None
        marker = page.continuation_token or page.next_url
        if marker in seen:
            raise InconsistentDataError(
                "the server sent the same continuation token twice; stopping instead of looping",
                url,
            )
        seen.add(marker)
        url = check_next_url(page.next_url, base)
        params = None


def check_rows(
    previous: LiquidationRow | None,
    rows: list[LiquidationRow],
    lo: datetime,
    hi: datetime,
    query: ShardQuery,
    url: str,
) -> None:
    """Rows must lie in ``[lo, hi)``, on the grid, strictly in the requested order."""
    # Epoch seconds, not datetime arithmetic: this runs for every row.
    ascending = query.sort == "asc"
    step = query.interval.seconds
    low, high = lo.timestamp(), hi.timestamp()
    last = previous.interval_time.timestamp() if previous is not None else None
    for row in rows:
        t = row.interval_time.timestamp()
        if not low <= t < high:
            raise InconsistentDataError(
                f"row at {format_time(row.interval_time)} is outside the requested window "
                f"[{format_time(lo)}, {format_time(hi)})",
                url,
            )
        if t % step:
            raise InconsistentDataError(
                f"row at {format_time(row.interval_time)} is not on the {query.interval} grid", url
            )
        if last is not None and (t <= last if ascending else t >= last):
            raise InconsistentDataError(
                f"row at {format_time(row.interval_time)} follows "
                f"{format_time(datetime.fromtimestamp(last, UTC))}: duplicate or out of "
                f"{query.sort} order",
                url,
            )
        last = t
