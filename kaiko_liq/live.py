"""Following an asset live: the settled past, then each new bucket as soon as it settles.

A bucket is final once it has closed and had the client's ``settle`` to settle, on the
earlier of our clock and the server's (:meth:`LiquidationClient.final_before`, the
client's one rule).
:class:`Follow` keeps a *cursor*, the start of the first bucket not handed out yet; each
poll fetches up to the horizon our clock allows, judges again on the clock the server's
answer gave, hands out the buckets before that and moves the cursor there, so no bucket
is handed out twice or skipped, quiet ones (no row) included. Between polls it sleeps
until the next bucket settles, plus :data:`POLL_MARGIN` for clocks that disagree a
little; longer (up to an interval) while the server's clock holds it back.

Each poll also re-reads the buckets handed out in the last ``client.recheck`` (at most a
page, in the same request; where it starts is the route's rule,
:meth:`~kaiko_liq.routes.Route.recheck_from`): a bucket the server changed since is a
:class:`Revision`, given to ``on_revision`` when there is one, else logged as a warning.
Only buckets the server's clock (as it just answered) calls final are compared: a server
that falls behind answers for buckets it has not settled, which are no revision. The
iterator itself never repeats a bucket.

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
import inspect
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import anyio

from .errors import (
    ClientClosedError,
    ConnectError,
    InvalidArgumentError,
    KaikoLiqError,
    is_fatal,
)
from .fs import StorageError
from .models import LiquidationRow
from .progress import plural
from .query import TimeLike, format_time, parse_interval, parse_time, validate_asset
from .routes import Route
from .routes.token import TOKEN, Token
from .rowiter import RowIterator
from .settle import CLOCK_MARGIN


class FollowedClient(Protocol):
    """What a follow needs of its client (:class:`~kaiko_liq.client.LiquidationClient`)."""

    settle: timedelta
    recheck: timedelta

    @property
    def page_size(self) -> int: ...

    def now(self) -> datetime: ...

    def judged_now(self) -> datetime: ...

    def final_before(self, route: Route[Any, Any], target: Any) -> datetime: ...

    def check_open(self) -> None: ...

    def cancelled_on_close(self) -> AbstractContextManager[anyio.CancelScope]: ...

    async def fetch(
        self, asset: str, start: TimeLike, end: TimeLike, *, interval: str, sort: str
    ) -> list[LiquidationRow]: ...


__all__ = [
    "DEFAULT_LOOKBACK",
    "MAX_BACKOFF",
    "POLL_MARGIN",
    "Follow",
    "OnRevision",
    "Revision",
    "backoff",
]

logger = logging.getLogger("kaiko_liq")
T = TypeVar("T")

#: How far back a follow starts when ``since`` is not given.
DEFAULT_LOOKBACK = timedelta(days=1)
#: Polls are this long after a bucket settles: the margin the store's horizon allows a
#: server clock a little behind ours (at least it, or a poll would find nothing new).
POLL_MARGIN = CLOCK_MARGIN
#: The longest wait between two tries after a failure.
MAX_BACKOFF = 300.0


@dataclass(frozen=True, slots=True)
class Revision:
    """A bucket handed out earlier whose figures the server has changed since."""

    interval_time: datetime
    #: The bucket now; ``None`` when it has no row any more (no liquidations).
    row: LiquidationRow | None
    #: As handed out (or as the last revision gave it); ``None`` when it had no row.
    previous: LiquidationRow | None


#: Called with each :class:`Revision`, before the poll's new rows; it may be a coroutine
#: function (then awaited). What it raises ends the follow.
OnRevision = Callable[[Revision], object]


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
    ``follow(..., since=cursor)`` carries on exactly where this one stopped (and rechecks
    only what it has handed out itself). :attr:`revised` counts the revisions found.
    """

    def __init__(
        self,
        client: FollowedClient,
        asset: str,
        *,
        interval: str = "1h",
        since: TimeLike | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        on_revision: OnRevision | None = None,
    ) -> None:
        self._client = client
        self._asset = validate_asset(asset)
        self._interval = parse_interval(interval)
        self._target = Token(self._asset, self._interval)
        now = client.now()
        start = now - DEFAULT_LOOKBACK if since is None else parse_time(since, "since")
        if start > now:
            # A typo'd year would otherwise wait, silently, for years.
            raise InvalidArgumentError(
                f"since {format_time(start)} is in the future (now is {format_time(now)}); "
                "a follow starts in the past, e.g. since='-1d' or an earlier date"
            )
        if on_revision is not None and not callable(on_revision):
            raise InvalidArgumentError(
                f"on_revision must be a function taking a Revision, got {on_revision!r}"
            )
        self._start = self._cursor = self._interval.floor(start)
        self._sleep = sleep or anyio.sleep
        self._on_revision = on_revision
        # The rows handed out (or revised) that the recheck window still covers; a
        # bucket in it with no entry was handed out quiet.
        self._recent: dict[datetime, LiquidationRow] = {}
        self._started = False
        #: Buckets found revised by the server after they were handed out.
        self.revised = 0
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
        with self._client.cancelled_on_close():
            return await work()
        # Only a cancel from aclose ends the scope without a result or an error.
        self._client.check_open()
        raise ClientClosedError(ClientClosedError.CLIENT_CLOSED)

    def _recheck_from(self) -> datetime:
        """Where a poll starts: the recheck window (at most a page) before the cursor,
        never before this follow's start (nothing before it was handed out)."""
        client = self._client
        start = TOKEN.recheck_from(self._target, self._cursor, client.recheck, client.page_size)
        return max(self._start, start)

    async def _rows(self) -> AsyncIterator[LiquidationRow]:
        if self._started:
            raise InvalidArgumentError("a follow can be iterated once; call follow() again")
        self._started = True
        grid = self._interval
        failures = 0
        while True:
            # Our clock bounds what can have settled; the server's, once it answers, may
            # say less.
            ours = TOKEN.horizon(self._target, self._client.now(), self._client.settle)
            answered = False
            if ours > self._cursor:
                start = self._recheck_from()
                try:
                    fetch = functools.partial(
                        self._client.fetch,
                        self._asset,
                        start,
                        ours,
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
                failures, answered = 0, True
                final = min(ours, self._client.final_before(TOKEN, self._target))
                await self._revise(start, final, [r for r in rows if r.interval_time < final])
                for row in rows:
                    if self._cursor <= row.interval_time < final:
                        # Moved before the row is handed out: a consumer that stops after
                        # it and restarts from the cursor gets the next bucket, not this
                        # one again.
                        self._cursor = row.interval_time + grid.delta
                        self._recent[row.interval_time] = row
                        yield row
                self._cursor = max(self._cursor, final)
            await self._pause(answered)

    async def _revise(self, start: datetime, final: datetime, rows: list[LiquidationRow]) -> None:
        """Compare the re-read ``[start, min(cursor, final))`` with what was handed out;
        report each bucket that changed, and remember it as it is now. Buckets from
        ``final`` on are not final on the server's clock (it has fallen behind): its
        answer for them is no revision, and they are compared once it has caught up."""
        end = min(self._cursor, final)
        fetched = {row.interval_time: row for row in rows if row.interval_time < end}
        self._recent = {t: r for t, r in self._recent.items() if t >= start}
        changed = [
            Revision(t, fetched.get(t), self._recent.get(t))
            for t in sorted(fetched.keys() | {t for t in self._recent if t < end})
            if fetched.get(t) != self._recent.get(t)
        ]
        for revision in changed:
            if revision.row is None:
                del self._recent[revision.interval_time]
            else:
                self._recent[revision.interval_time] = revision.row
        if not changed:
            return
        self.revised += len(changed)
        shown = ", ".join(format_time(r.interval_time) for r in changed[:3])
        more = ", ..." if len(changed) > 3 else ""
        if self._on_revision is None:
            logger.warning(
                "follow %s: %s revised by the server after they were handed out (%s%s); "
                "pass on_revision= to get them",
                self._asset,
                plural(len(changed), "bucket"),
                shown,
                more,
            )
            return
        logger.info(
            "follow %s: %s revised (%s%s)", self._asset, plural(len(changed), "bucket"), shown, more
        )
        for revision in changed:
            result = self._on_revision(revision)
            if inspect.isawaitable(result):
                await result

    async def _pause(self, answered: bool) -> None:
        """Sleep until the bucket at the cursor settles on our clock; right after an
        answer, on the earlier of ours and the server's (as it just gave it), but asked
        again after at most an interval: a server far behind may catch up."""
        client, grid = self._client, self._interval
        settles = self._cursor + grid.delta + client.settle + POLL_MARGIN
        wait = (settles - client.now()).total_seconds()
        if answered:
            # Whole seconds: a server clock given to the second is not a poll early.
            theirs = math.ceil((settles - client.judged_now()).total_seconds())
            wait = max(wait, min(theirs, grid.delta.total_seconds()))
        wait = max(wait, 0.0)
        logger.debug(
            "follow %s: sleeping %.0fs until %s, when the bucket %s settles",
            self._asset,
            wait,
            format_time(settles),
            format_time(self._cursor),
        )
        await self._until_closed(functools.partial(self._sleep, wait))
