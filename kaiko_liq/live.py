"""Following an asset live: the settled past, then each new bucket as soon as it settles.

A bucket is final once it has closed and had :data:`kaiko_liq.store.SETTLE` to settle
(the emulator settles it the same way). :class:`Follow` keeps a *cursor*, the start of
the first bucket not handed out yet; each step fetches ``[cursor, horizon)`` (the settled
horizon now) with :meth:`LiquidationClient.fetch` and moves the cursor to the horizon, so
no bucket is handed out twice or skipped, quiet ones (no row) included. Between steps it
sleeps until the next bucket settles, plus :data:`POLL_MARGIN` for clocks that disagree a
little.

A failure retrying can fix (5xx, 429, timeouts, dropped connections, a fetch with failed
shards) is retried forever with capped exponential backoff, each one logged on the
``kaiko_liq`` logger; anything else (a wrong key, an unknown asset, an answer that cannot
be trusted) is raised. Nothing runs between two rows: leaving the loop leaves nothing
behind.

Example::

    async with LiquidationClient() as client:
        async for row in client.follow("btc"):  # the last day, then every new hour
            print(row.interval_time, row.total_amount)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import anyio

from .errors import (
    ClientClosedError,
    ConnectError,
    InvalidArgumentError,
    KaikoLiqError,
    is_fatal,
)
from .models import LiquidationRow
from .query import TimeLike, format_time, parse_interval, parse_time, validate_asset
from .rowiter import RowIterator
from .store import CLOCK_MARGIN, SETTLE, StorageError, settled_horizon

if TYPE_CHECKING:
    from .client import LiquidationClient

__all__ = ["DEFAULT_LOOKBACK", "MAX_BACKOFF", "POLL_MARGIN", "Follow", "backoff"]

logger = logging.getLogger("kaiko_liq")
T = TypeVar("T")

#: How far back a follow starts when ``since`` is not given.
DEFAULT_LOOKBACK = timedelta(days=1)
#: Polls are this long after a bucket settles: the margin the store's horizon allows a
#: server clock a little behind ours (at least it, or a poll would find nothing new).
POLL_MARGIN = CLOCK_MARGIN
#: The longest wait between two tries after a failure.
MAX_BACKOFF = 300.0


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row: 1, 2, 4, ... up to 300."""
    return min(MAX_BACKOFF, 2.0 ** max(0, failures - 1))


def _transient(error: KaikoLiqError) -> bool:
    """Whether waiting and trying again can fix it: not a bad key, asset or answer
    (:func:`~kaiko_liq.errors.is_fatal`), a closed client or a filesystem refusing."""
    if isinstance(error, ConnectError):
        return True  # offline for a while (a laptop asleep): a follow waits it out
    return not (is_fatal(error) or isinstance(error, ClientClosedError | StorageError))


class Follow(RowIterator[LiquidationRow]):
    """Rows of one asset from ``since`` on, then each bucket as it settles; never ends.

    An async iterator (``async for row in client.follow("btc")``) and an async context
    manager. :attr:`cursor` is the start of the first bucket not yet handed out: a new
    ``follow(..., since=cursor)`` carries on exactly where this one stopped.
    """

    def __init__(
        self,
        client: LiquidationClient,
        asset: str,
        *,
        interval: str = "1h",
        since: TimeLike | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._asset = validate_asset(asset)
        self._interval = parse_interval(interval)
        now = client.now()
        start = now - DEFAULT_LOOKBACK if since is None else parse_time(since, "since")
        if start > now:
            # A typo'd year would otherwise wait, silently, for years.
            raise InvalidArgumentError(
                f"since {format_time(start)} is in the future (now is {format_time(now)}); "
                "a follow starts in the past, e.g. since='-1d' or an earlier date"
            )
        self._cursor = self._interval.floor(start)
        self._sleep = sleep or anyio.sleep
        self._started = False
        super().__init__()

    def __repr__(self) -> str:
        return (
            f"Follow(asset={self._asset!r}, interval={self._interval.text!r}, "
            f"cursor={format_time(self._cursor)!r})"
        )

    @property
    def cursor(self) -> datetime:
        """Every bucket before this has been handed out (or had no row)."""
        return self._cursor

    async def aclose(self) -> None:
        iterator, self._iterator = self._iterator, None
        if iterator is not None:
            await iterator.aclose()  # type: ignore[attr-defined]

    async def _until_closed(self, work: Callable[[], Awaitable[T]]) -> T:
        """``work()``, cut short when the client closes (its ``aclose`` cancels the
        scopes it was given): then :class:`ClientClosedError`, not a wait for the next
        poll."""
        with anyio.CancelScope() as scope:
            self._client._wakers.add(scope)
            try:
                self._client._check_open()
                return await work()
            finally:
                self._client._wakers.discard(scope)
        # Only a cancel from aclose ends the scope without a result or an error.
        self._client._check_open()
        raise ClientClosedError(ClientClosedError.CLIENT_CLOSED)

    async def _rows(self) -> AsyncIterator[LiquidationRow]:
        if self._started:
            raise InvalidArgumentError("a follow can be iterated once; call follow() again")
        self._started = True
        grid = self._interval
        failures = 0
        while True:
            horizon = settled_horizon(grid, self._client.now())
            if horizon <= self._cursor:
                settles = self._cursor + grid.delta + SETTLE + POLL_MARGIN
                wait = max((settles - self._client.now()).total_seconds(), 0.0)
                logger.debug(
                    "follow %s: sleeping %.0fs until %s, when the bucket %s settles",
                    self._asset,
                    wait,
                    format_time(settles),
                    format_time(self._cursor),
                )
                await self._until_closed(functools.partial(self._sleep, wait))
                continue
            try:
                fetch = functools.partial(
                    self._client.fetch,
                    self._asset,
                    self._cursor,
                    horizon,
                    interval=grid.text,
                    sort="asc",
                )
                rows = await self._until_closed(fetch)
            except KaikoLiqError as exc:
                if not _transient(exc):
                    raise
                failures += 1
                delay = backoff(failures)
                logger.warning(
                    "follow %s: fetching from %s failed (%d in a row), retrying in %.0fs: %s",
                    self._asset,
                    format_time(self._cursor),
                    failures,
                    delay,
                    exc,
                )
                await self._until_closed(functools.partial(self._sleep, delay))
                continue
            failures = 0
            for row in rows:
                # Moved before the row is handed out: a consumer that stops after it and
                # restarts from the cursor gets the next bucket, not this one again.
                self._cursor = row.interval_time + grid.delta
                yield row
            self._cursor = horizon
