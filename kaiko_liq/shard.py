"""One shard's page chain: the first request with parameters, then the cursor to the end.

Every page's rows are checked as they come: inside the shard's window, on the grid,
strictly in the requested order, their two timestamps agreeing, so rows can neither
repeat nor go missing without an error. The transport sends and retries; this module
decides when a chain is over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from .errors import InconsistentDataError
from .models import LiquidationRow
from .plan import SubRange, buckets_in
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
    """Every row of ``shard``, in ``query.sort`` order.

    The chain ends only at an answer with neither ``next_url`` nor
    ``continuation_token`` (see :mod:`kaiko_liq.protocol`'s assumptions); pages with few
    rows or none are followed. It stays finite without guessing how the server sizes its
    pages: a cursor seen twice is a loop, and since an honest page covers at least one
    bucket, more empty pages in a row than the shard has buckets is one too.
    """
    first = page_url(transport.base_url, query.asset)
    url = first
    params: dict[str, str] | None = first_page_params(
        shard.start, shard.end, query.interval, query.sort, query.page_size
    )
    lo, hi = query.interval.floor(shard.start), query.interval.ceil(shard.end)
    buckets = buckets_in(shard.start, shard.end, query.interval)
    rows: list[LiquidationRow] = []
    seen: set[str] = set()
    empty_run = 0
    while True:
        page = await transport.get_page(url, params)
        check_rows(rows[-1] if rows else None, page.rows, lo, hi, query, url)
        rows.extend(page.rows)
        if page.is_last:
            return rows
        empty_run = 0 if page.rows else empty_run + 1
        if empty_run > buckets:
            raise InconsistentDataError(
                f"{empty_run} empty pages in a row, more than the {buckets} buckets of "
                f"[{format_time(shard.start)}, {format_time(shard.end)}): the server's "
                "cursor does not advance; stopping instead of looping",
                url,
            )
        # next_url when given (Kaiko: it "can be called directly"); else the token alone
        # on the same endpoint (Kaiko: "subsequent calls should only use continuation_token").
        token = page.continuation_token
        for marker in (token, page.next_url):
            if marker is None:
                continue
            if marker in seen:
                raise InconsistentDataError(
                    "the server sent the same continuation token twice; stopping instead "
                    "of looping",
                    url,
                )
            seen.add(marker)
        if page.next_url is not None:
            url, params = check_next_url(page.next_url, first), None
        else:
            assert token is not None
            url, params = first, {"continuation_token": token}


def check_rows(
    previous: LiquidationRow | None,
    rows: list[LiquidationRow],
    lo: datetime,
    hi: datetime,
    query: ShardQuery,
    url: str,
) -> None:
    """Rows must lie in ``[lo, hi)``, on the grid, strictly in the requested order, and
    each row's ``interval_timestamp`` must be its ``interval_time`` in nanoseconds (the
    doc's example) or milliseconds (the doc's label)."""
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
        # On the grid, t is a whole number of seconds, so this is exact.
        seconds = int(t)
        stamp = row.interval_timestamp
        if stamp != seconds * 1_000_000_000 and stamp != seconds * 1000:
            raise InconsistentDataError(
                f"row at {format_time(row.interval_time)} has interval_timestamp {stamp}, "
                f"which is not that instant in nanoseconds ({seconds * 1_000_000_000}) or "
                f"milliseconds ({seconds * 1000})",
                url,
            )
        if last is not None and (t <= last if ascending else t >= last):
            raise InconsistentDataError(
                f"row at {format_time(row.interval_time)} follows "
                f"{format_time(datetime.fromtimestamp(last, UTC))}: duplicate or out of "
                f"{query.sort} order",
                url,
            )
        last = t
