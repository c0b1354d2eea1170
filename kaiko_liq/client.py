"""LiquidationClient: a sharded, concurrent fetch that equals one plain query.

A window is cut into shards (:mod:`kaiko_liq.plan`), the shards are fetched concurrently
under one limiter (:mod:`kaiko_liq.transport`), each shard follows its ``next_url`` chain
to the end, and the shards' rows are handed back in the requested order. Every shard's
rows are checked to lie inside the shard, on the grid and strictly in order, so rows can
neither repeat nor go missing at a boundary without an error.

Example, against the built-in emulator::

    async with running_emulator() as emu:
        async with LiquidationClient(base_url=emu.base_url) as client:
            rows = await client.fetch("eth", "2025-02-01", "2025-03-01", interval="4h")
            async for row in client.stream("btc", "2025-01-08", "2026-01-08"):
                ...
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Self

import anyio

from .errors import (
    ClientClosedError,
    FailedRange,
    IncompleteFetchError,
    InconsistentDataError,
    InvalidArgumentError,
    KaikoLiqError,
    is_fatal,
)
from .models import LiquidationRow
from .plan import SubRange, plan_subranges
from .protocol import (
    REGIONS,
    check_base_url,
    page_url,
    region_base_url,
)
from .query import (
    MAX_PAGE_SIZE,
    Interval,
    TimeLike,
    format_time,
    validate_page_size,
    validate_request,
)
from .retry import RetryPolicy
from .shard import ShardQuery, fetch_shard
from .transport import ClientStats, Timeouts, Transport

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_STREAM_WINDOW",
    "MAX_CONCURRENCY_RANGE",
    "RATE_LIMIT_RANGE",
    "LiquidationClient",
    "RowStream",
]

#: Requests per second. Kaiko publishes per-key limits from 1000/min (older docs) to
#: 6000/min; 15/s stays under the lowest, and the adaptive limiter backs off on 429s.
DEFAULT_RATE_LIMIT = 15.0
#: What ``rate_limit`` (requests/s) and ``max_concurrency`` may be set to.
RATE_LIMIT_RANGE = (1.0, 10_000.0)
MAX_CONCURRENCY_RANGE = (1, 256)
#: Requests in flight at once: enough to hide ~100-300 ms of latency at the rate above.
DEFAULT_MAX_CONCURRENCY = 16
#: Shards a stream fetches ahead of the one its consumer is reading. One keeps a page in
#: flight while the consumer works (about 10,000 rows/s per stream at 100 ms latency)
#: and memory flat: a shard is up to ~1000 decoded rows, ~2 MB, and the benchmark's
#: target (peak RSS +20% at most from one month to two years) leaves room for one more.
#: Pass ``window=`` to read further ahead; ``fetch`` is the fast path.
DEFAULT_STREAM_WINDOW = 1
#: The key sent to a ``base_url`` when no key is configured (the emulator accepts any).
_PLACEHOLDER_KEY = "kaiko-liq-anonymous"
_API_KEY_ENV = "KAIKO_API_KEY"
#: Printable ASCII without spaces: what a header value can carry unchanged.
_KEY_RE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class _Request:
    """A validated fetch: everything needed to plan and send, nothing left to check."""

    asset: str
    start: datetime
    end: datetime
    interval: Interval
    sort: str
    page_size: int
    shards: list[SubRange]

    def shards_in_order(self) -> list[SubRange]:
        return self.shards if self.sort == "asc" else self.shards[::-1]


class LiquidationClient:
    """Async client of Kaiko's token-level liquidation volumes.

    Args:
        api_key: Kaiko API key; defaults to the ``KAIKO_API_KEY`` environment variable.
            Required for Kaiko's own hosts; with ``base_url`` (the emulator, a proxy) a
            placeholder is sent when there is none.
        region: ``"us"`` or ``"eu"`` (``https://{region}.market-api.kaiko.io``).
        base_url: overrides ``region``; plain http only to loopback unless
            ``allow_insecure_http``.
        rate_limit: requests per second shared by everything this client does.
        max_concurrency: requests in flight at once.
        page_size: rows per page asked for (1..1000; default 1000, the documented max).
        timeouts: connect and read timeouts per attempt.
        retry: the retry policy (attempts, backoff, Retry-After cap, deadline).
        adaptive_rate: slow the shared limiter down on 429s and recover on success.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        region: str = "us",
        base_url: str | None = None,
        rate_limit: float = DEFAULT_RATE_LIMIT,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        page_size: int = MAX_PAGE_SIZE,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        adaptive_rate: bool = True,
        allow_insecure_http: bool = False,
    ) -> None:
        if region not in REGIONS:
            raise InvalidArgumentError(f"region {region!r} is not allowed; use 'us' or 'eu'")
        if isinstance(rate_limit, bool) or not isinstance(rate_limit, int | float):
            raise InvalidArgumentError(f"rate_limit must be a number, got {rate_limit!r}")
        low, high = RATE_LIMIT_RANGE
        if not low <= rate_limit <= high:
            raise InvalidArgumentError(
                f"rate_limit {rate_limit} is out of range; use requests per second, "
                f"{low:g} to {high:g}"
            )
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise InvalidArgumentError(
                f"max_concurrency must be an integer, got {max_concurrency!r}"
            )
        least, most = MAX_CONCURRENCY_RANGE
        if not least <= max_concurrency <= most:
            raise InvalidArgumentError(
                f"max_concurrency {max_concurrency} is out of range; allowed: {least} to {most}"
            )
        self._page_size = validate_page_size(page_size)
        if base_url is None:
            base = region_base_url(region)
        else:
            base = check_base_url(base_url, allow_insecure_http=allow_insecure_http)
        key = api_key if api_key is not None else os.environ.get(_API_KEY_ENV) or None
        if key is not None and not key.strip():
            raise InvalidArgumentError("api_key is empty; pass your Kaiko key or leave it None")
        if key is not None and _KEY_RE.fullmatch(key) is None:
            # The key itself is never shown: not even a bad one belongs in a message.
            raise InvalidArgumentError(
                "api_key has characters an HTTP header cannot carry (spaces, control "
                "characters or non-ASCII); check for a stray newline from a file or paste"
            )
        if key is None:
            if base_url is None:
                raise InvalidArgumentError(
                    f"no API key: pass api_key=... or set {_API_KEY_ENV}; "
                    "or pass base_url= of the built-in emulator to try it without one"
                )
            key = _PLACEHOLDER_KEY
        self.rate_limit = float(rate_limit)
        self.max_concurrency = max_concurrency
        self._transport = Transport(
            base_url=base,
            api_key=key,
            rate_limit=float(rate_limit),
            max_concurrency=max_concurrency,
            timeouts=timeouts or Timeouts(),
            retry_policy=retry or RetryPolicy(),
            adaptive_rate=adaptive_rate,
        )
        self._streams: set[RowStream] = set()

    def __repr__(self) -> str:
        return (
            f"LiquidationClient(base_url={self.base_url!r}, rate_limit={self.rate_limit:g}, "
            f"max_concurrency={self.max_concurrency}, api_key=***)"
        )

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    @property
    def stats(self) -> ClientStats:
        """Requests, retries, 429s, pages, rows and bytes, since the client was made."""
        return self._transport.stats

    @property
    def closed(self) -> bool:
        return self._transport.closed

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel open streams and close the HTTP session. Safe to call twice."""
        for stream in list(self._streams):
            await stream.aclose()
        await self._transport.aclose()

    def _check_open(self) -> None:
        if self._transport.closed:
            raise ClientClosedError(ClientClosedError.CLIENT_CLOSED)

    # -- planning -----------------------------------------------------------------

    def _request(
        self,
        asset: str,
        start: TimeLike,
        end: TimeLike,
        interval: str,
        sort: str,
        page_size: int | None,
    ) -> _Request:
        req = validate_request(asset, start, end, interval=interval, sort=sort, page_size=page_size)
        size = self._page_size if req.page_size is None else req.page_size
        shards = plan_subranges(req.start, req.end, req.interval, size)
        return _Request(req.asset, req.start, req.end, req.interval, sort, size, shards)

    def plan(
        self,
        asset: str,
        start: TimeLike,
        end: TimeLike,
        *,
        interval: str = "1h",
        page_size: int | None = None,
    ) -> list[SubRange]:
        """The shards a fetch of this window would use, ascending; validates like fetch."""
        return self._request(asset, start, end, interval, "asc", page_size).shards

    # -- fetching -----------------------------------------------------------------

    async def fetch(
        self,
        asset: str,
        start: TimeLike,
        end: TimeLike,
        *,
        interval: str = "1h",
        sort: str = "desc",
        page_size: int | None = None,
        on_shard: Callable[[SubRange], None] | None = None,
    ) -> list[LiquidationRow]:
        """Every row of ``[start, end)``, in ``sort`` order, exactly as one query paged to
        its end would return them. Raises :class:`IncompleteFetchError` if any shard
        failed (after retries), naming the failed and the completed shards.

        ``on_shard`` is called with each shard (see :meth:`plan`) as it completes, for
        progress reporting."""
        req = self._request(asset, start, end, interval, sort, page_size)
        self._check_open()
        results: dict[int, list[LiquidationRow]] = {}
        failed: list[FailedRange] = []
        fatal: list[BaseException] = []

        async def run(shard: SubRange, tg: anyio.abc.TaskGroup) -> None:
            try:
                results[shard.index] = await self._fetch_shard(req, shard)
                if on_shard is not None:
                    on_shard(shard)
            except Exception as exc:
                if isinstance(exc, KaikoLiqError) and not is_fatal(exc):
                    failed.append(FailedRange(shard.start, shard.end, exc))
                else:
                    # A wrong key, asset or parameter fails every shard alike (and a bug
                    # is no shard's fault): stop now, and raise it as it is.
                    fatal.append(exc)
                    tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for shard in req.shards:
                tg.start_soon(run, shard, tg)
        if fatal:
            raise fatal[0]
        if failed:
            failed.sort(key=lambda f: f.start)
            done = [(s.start, s.end) for s in req.shards if s.index in results]
            raise IncompleteFetchError(req.asset, failed, done)
        rows: list[LiquidationRow] = []
        previous: LiquidationRow | None = None
        for shard in req.shards_in_order():
            chunk = results[shard.index]
            if chunk and previous is not None:
                _check_boundary(previous, chunk[0], req)
            if chunk:
                previous = chunk[-1]
            rows.extend(chunk)
        return rows

    def stream(
        self,
        asset: str,
        start: TimeLike,
        end: TimeLike,
        *,
        interval: str = "1h",
        sort: str = "desc",
        page_size: int | None = None,
        window: int | None = None,
    ) -> RowStream:
        """The rows of ``[start, end)`` in ``sort`` order, as soon as all before them are in.

        At most ``window`` shards (default :data:`DEFAULT_STREAM_WINDOW`, at most
        ``max_concurrency``) are fetched ahead of the one being read, so memory stays
        O(window x page) whatever the range. Use it as
        ``async for row in client.stream(...)`` or, to bound its life explicitly,
        ``async with client.stream(...) as rows: async for row in rows``. Leaving early
        cancels what is in flight.
        """
        req = self._request(asset, start, end, interval, sort, page_size)
        self._check_open()
        ahead = min(self.max_concurrency, DEFAULT_STREAM_WINDOW) if window is None else window
        if isinstance(ahead, bool) or not isinstance(ahead, int) or ahead < 1:
            raise InvalidArgumentError(f"window must be a positive integer, got {window!r}")
        return RowStream(self, req, ahead)

    async def _fetch_shard(self, req: _Request, shard: SubRange) -> list[LiquidationRow]:
        """One shard's rows, its page chain followed to the end (:mod:`kaiko_liq.shard`)."""
        query = ShardQuery(req.asset, req.interval, req.sort, req.page_size)
        return await fetch_shard(self._transport, query, shard)


def _check_boundary(before: LiquidationRow, after: LiquidationRow, req: _Request) -> None:
    ascending = req.sort == "asc"
    a, b = before.interval_time, after.interval_time
    if (b <= a) if ascending else (b >= a):
        raise InconsistentDataError(
            f"rows at a shard boundary repeat or go out of order: {format_time(a)} then "
            f"{format_time(b)}",
            page_url("", req.asset),
        )


@dataclass(slots=True)
class _Slot:
    """One shard's result, filled by its task and read by the consumer in order."""

    shard: SubRange
    done: anyio.Event
    rows: list[LiquidationRow] | None = None
    error: Exception | None = None


class RowStream:
    """Ordered rows of one request; an async iterator and an async context manager.

    The shards are fetched by a producer task that owns a task group; the consumer never
    yields from inside a task group (anyio's rule), it only waits on per-shard events. A
    semaphore of ``window`` permits keeps the producer at most that many shards ahead.
    """

    def __init__(self, client: LiquidationClient, req: _Request, window: int) -> None:
        self._client = client
        self._req = req
        self._window = window
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._managed = False
        self._started = False
        self._iterator: AsyncIterator[LiquidationRow] | None = None
        self._slots: list[_Slot] = []

    def __repr__(self) -> str:
        return (
            f"RowStream(asset={self._req.asset!r}, start={format_time(self._req.start)!r}, "
            f"end={format_time(self._req.end)!r}, shards={len(self._req.shards)})"
        )

    async def __aenter__(self) -> Self:
        self._managed = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[LiquidationRow]:
        if self._managed:
            return self
        # Plain ``async for``: we must not hold the generator, so that breaking out drops
        # its last reference and asyncio's async-generator finalizer closes it on the next
        # loop step, which cancels the producer. (Held, it would live until gc or close.)
        return self._rows()

    async def __anext__(self) -> LiquidationRow:
        # Checked here too: once the generator has raised, it would only say "exhausted",
        # and a closed stream must never look like a complete range.
        self._check_not_closed()
        return await self._held_iterator().__anext__()

    def _held_iterator(self) -> AsyncIterator[LiquidationRow]:
        if self._iterator is None:
            self._iterator = self._rows()
        return self._iterator

    async def aclose(self) -> None:
        """Cancel the producer and wait for it; nothing is left running."""
        self._closed = True
        self._client._streams.discard(self)
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                # Our own cancellation of the producer; re-raise only if we are cancelled too.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        # Wake a consumer waiting on shards nobody will fetch now: it raises
        # ClientClosedError rather than hang, or end quietly as if the range were complete.
        for slot in self._slots:
            slot.done.set()

    def _check_not_closed(self) -> None:
        if self._closed:
            raise ClientClosedError(
                "this stream was closed (or its client was) before it was read to the end"
            )

    async def _rows(self) -> AsyncIterator[LiquidationRow]:
        self._check_not_closed()
        if self._started:
            raise InvalidArgumentError("a stream can be iterated once; call stream() again")
        self._started = True
        self._client._check_open()
        req = self._req
        order = req.shards_in_order()
        slots = self._slots = [_Slot(shard, anyio.Event()) for shard in order]
        permits = anyio.Semaphore(self._window)
        self._client._streams.add(self)
        self._task = asyncio.get_running_loop().create_task(self._produce(slots, permits))
        previous: LiquidationRow | None = None
        try:
            for position, slot in enumerate(slots):
                await slot.done.wait()
                self._check_not_closed()
                if slot.error is not None:
                    if not isinstance(slot.error, KaikoLiqError) or is_fatal(slot.error):
                        raise slot.error
                    done = [(s.shard.start, s.shard.end) for s in slots[:position]]
                    pending = [(s.shard.start, s.shard.end) for s in slots[position + 1 :]]
                    raise IncompleteFetchError(
                        req.asset,
                        [FailedRange(slot.shard.start, slot.shard.end, slot.error)],
                        done,
                        pending=pending,
                    ) from slot.error
                if slot.rows is None:
                    raise ClientClosedError("the stream's fetch was cancelled before it finished")
                rows, slot.rows = slot.rows, None
                permits.release()
                if rows and previous is not None:
                    _check_boundary(previous, rows[0], req)
                if rows:
                    previous = rows[-1]
                for row in rows:
                    yield row
                    self._check_not_closed()
        finally:
            task, self._task = self._task, None
            if task is not None and not task.done():
                task.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.gather(task, return_exceptions=True)
            self._client._streams.discard(self)

    async def _produce(self, slots: list[_Slot], permits: anyio.Semaphore) -> None:
        async def run(slot: _Slot) -> None:
            try:
                slot.rows = await self._client._fetch_shard(self._req, slot.shard)
            except Exception as exc:
                # Handed to the consumer, which raises it in order; nothing is dropped.
                slot.error = exc
            finally:
                slot.done.set()

        async with anyio.create_task_group() as tg:
            for slot in slots:
                await permits.acquire()
                tg.start_soon(run, slot)
