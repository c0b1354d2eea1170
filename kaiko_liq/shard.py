"""One sub-range's page chain, for any route: the first request with parameters, then
the cursor to the end.

Every page's rows are checked as they come by the route's :meth:`~Route.page_check`
(inside the window, in the requested order, and whatever else the route knows), so rows
can neither repeat nor go missing without an error. The transport sends and retries;
this module decides when a chain is over.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from .errors import InconsistentDataError
from .plan import SubRange
from .protocol import PageSource, check_next_url
from .query import Grid, format_time

__all__ = ["Chain", "ChainRoute", "PageCheck", "fetch_chain"]

Row = TypeVar("Row")
RowIn = TypeVar("RowIn", contravariant=True)


class PageCheck(Protocol[RowIn]):
    """The checks one sub-range's pages must pass, page after page (it may keep state:
    the last row's time, the ids seen); raises
    :class:`~kaiko_liq.errors.InconsistentDataError`."""

    def __call__(self, rows: Sequence[RowIn], url: str) -> None: ...


class ChainRoute(Protocol[RowIn]):
    """What a page chain needs of a route (:class:`kaiko_liq.routes.Route` has it all)."""

    def path(self, target: Any) -> str: ...

    def decode(self, body: bytes) -> Any: ...

    def first_params(
        self, target: Any, shard: SubRange, sort: str, page_size: int
    ) -> dict[str, str]: ...

    def grid(self, target: Any) -> Grid: ...

    def page_check(
        self, target: Any, lo: datetime, hi: datetime, sort: str
    ) -> PageCheck[RowIn]: ...

    def max_empty_pages(self, target: Any, lo: datetime, hi: datetime) -> tuple[int, str]: ...


class Chain(Generic[Row]):
    """The pages of one sub-range ``[shard.start, shard.end)`` in ``sort`` order, one
    :meth:`next` at a time (an adaptive shard policy looks at the first page before it
    decides to follow the rest or to split).

    The chain ends only at an answer with neither ``next_url`` nor
    ``continuation_token`` (see :mod:`kaiko_liq.protocol`'s assumptions); pages with few
    rows or none are followed. It stays finite without guessing how the server sizes its
    pages: a cursor seen twice is a loop, and so are more empty pages in a row than the
    route allows for the window (:meth:`Route.max_empty_pages`).
    """

    def __init__(
        self,
        source: PageSource,
        route: ChainRoute[Row],
        target: Any,
        shard: SubRange,
        sort: str,
        page_size: int,
    ) -> None:
        self._source = source
        self._route = route
        self._first = source.base_url + route.path(target)
        self._url = self._first
        self._params: dict[str, str] | None = route.first_params(target, shard, sort, page_size)
        grid = route.grid(target)
        lo, hi = grid.floor(shard.start), grid.ceil(shard.end)
        self._check = route.page_check(target, lo, hi, sort)
        self._shard = shard
        self._most_empty, self._empty_unit = route.max_empty_pages(target, lo, hi)
        self._seen: set[str] = set()
        self._empty_run = 0
        self.done = False

    @property
    def url(self) -> str:
        """The URL of the first request: what errors about this chain name."""
        return self._first

    async def next(self) -> list[Row]:
        """The next page's rows, checked. Call only while not :attr:`done`."""
        assert not self.done
        url = self._url
        page = await self._source.get_page(url, self._params, self._route.decode)
        rows: list[Row] = page.rows
        self._check(rows, url)
        if page.is_last:
            self.done = True
            return rows
        self._empty_run = 0 if rows else self._empty_run + 1
        if self._empty_run > self._most_empty:
            raise InconsistentDataError(
                f"{self._empty_run} empty pages in a row, more than the {self._most_empty} "
                f"{self._empty_unit} of {window_text(self._shard.start, self._shard.end)}: "
                "the server's cursor does not advance; stopping instead of looping",
                url,
            )
        # next_url when given (Kaiko: it "can be called directly"); else the token alone
        # on the same endpoint (Kaiko: "subsequent calls should only use continuation_token").
        token = page.continuation_token
        for marker in (token, page.next_url):
            if marker is None:
                continue
            if marker in self._seen:
                raise InconsistentDataError(
                    "the server sent the same continuation token twice; stopping instead "
                    "of looping",
                    url,
                )
            self._seen.add(marker)
        if page.next_url is not None:
            self._url, self._params = check_next_url(page.next_url, self._first), None
        else:
            assert token is not None
            self._url, self._params = self._first, {"continuation_token": token}
        return rows

    async def rest(self) -> list[Row]:
        """Every row from here to the end of the chain."""
        rows: list[Row] = []
        while not self.done:
            rows.extend(await self.next())
        return rows


async def fetch_chain(
    source: PageSource,
    route: ChainRoute[Row],
    target: Any,
    shard: SubRange,
    sort: str,
    page_size: int,
) -> list[Row]:
    """Every row of ``shard`` in ``sort`` order: its page chain followed to the end."""
    return await Chain(source, route, target, shard, sort, page_size).rest()


def window_text(lo: datetime, hi: datetime) -> str:
    return f"[{format_time(lo)}, {format_time(hi)})"
