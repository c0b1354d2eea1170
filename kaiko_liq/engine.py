"""The fetch engine, for any route: plan, fetch shards concurrently, merge in order,
stream, and serve settled spans from a store.

A request (a route, its target, a window) is cut into shards by the route's
:class:`~kaiko_liq.routes.ShardPolicy`; the shards are fetched concurrently under the
transport's one limiter, each by the policy; their rows are handed back in the
requested order. Every shard's rows were checked by the route to lie inside the shard
and in order; the merge checks that consecutive shards meet in order too, so rows can
neither repeat nor go missing at a boundary without an error.

With a store a request is cut into *pieces* instead: settled spans the store already
holds are read from it, settled spans it lacks are fetched and added to it, and what has
not settled yet is fetched and never stored. The answer is the same rows either way.

Nothing here names an endpoint, and nothing here validates an argument: requests come
typed and checked from the facade (:mod:`kaiko_liq.client`).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, Protocol, TypeVar

import anyio

from .errors import (
    ClientClosedError,
    FailedRange,
    FetchManyIncompleteError,
    IncompleteFetchError,
    InconsistentDataError,
    InvalidArgumentError,
    KaikoLiqError,
    is_fatal,
)
from .plan import SubRange
from .progress import plural
from .protocol import PageSource
from .query import Window, format_time
from .routes import Route
from .rowiter import RowIterator
from .spans import gaps_in

__all__ = ["Engine", "Request", "RowStream", "Shelf"]

logger = logging.getLogger("kaiko_liq")

Row = TypeVar("Row")
Target = TypeVar("Target")

#: Where a piece's rows come from: the network only, the network then into the store,
#: the store, or the network compared with the store (the recheck of its newest rows).
_Source = Literal["net", "fill", "stored", "recheck"]


class Shelf(Protocol[Row]):
    """One target's part of a store, as the engine uses it (the methods block: they run
    in a worker thread). Rows are ascending; spans are ``[start, end)``."""

    def covered(self) -> list[tuple[datetime, datetime]]:
        """The stored spans, merged, ascending."""
        ...

    def read_rows(self, start: datetime, end: datetime) -> list[Row]: ...

    def write(self, start: datetime, end: datetime, rows: list[Row]) -> object: ...

    def revise(self, start: datetime, end: datetime, rows: list[Row]) -> list[datetime]:
        """Make the stored span hold ``rows``; the instants whose rows changed."""
        ...


@dataclass(frozen=True, slots=True)
class Request(Generic[Target, Row]):
    """One validated fetch: a route, its target, the window and its shards."""

    route: Route[Target, Row]
    target: Target
    window: Window
    shards: list[SubRange]

    @property
    def label(self) -> str:
        return self.route.label(self.target)


@dataclass(frozen=True, slots=True)
class _Piece:
    """A span of one request fetched or read as one: a planned shard when there is no
    store; with one, a stored span, a shard of a gap, or a shard of the unsettled tail."""

    shard: SubRange
    source: _Source


class Engine:
    """Fetches requests through ``source`` (the transport).

    ``store_for(route, target)`` gives the shelf that keeps ``target``'s settled rows,
    or ``None`` (no cache), awaited (finding a store may read S3: never on the loop);
    ``horizon(route, target)`` the end of what has settled now, asked again when a
    fetched piece is about to be stored or revised (the server's clock may have said
    less meanwhile); ``recheck`` how far back from the newest stored row every request
    that reaches it fetches again, replacing what the server revised.
    """

    def __init__(
        self,
        source: PageSource,
        *,
        store_for: Callable[[Route[Any, Any], Any], Awaitable[Shelf[Any] | None]],
        horizon: Callable[[Route[Any, Any], Any], datetime],
        check_open: Callable[[], None],
        recheck: timedelta = timedelta(0),
    ) -> None:
        self._source = source
        self._store_for = store_for
        self._horizon = horizon
        self._recheck = recheck
        self.check_open = check_open
        self.streams: set[RowStream[Any]] = set()
        #: Stored rows found changed by the server and replaced (by instant).
        self.revised = 0

    def request(
        self, route: Route[Target, Row], target: Target, window: Window
    ) -> Request[Target, Row]:
        return Request(route, target, window, route.policy.plan(route, target, window))

    async def aclose(self) -> None:
        for stream in list(self.streams):
            await stream.aclose()

    # -- pieces -----------------------------------------------------------------------

    async def pieces(self, req: Request[Any, Any]) -> list[_Piece]:
        """What a request is made of, ascending. Without a store, its planned shards."""
        route, target, window = req.route, req.target, req.window
        store = await self._store_for(route, target)
        if store is None:
            return [_Piece(shard, "net") for shard in req.shards]
        grid = route.grid(target)
        lo, hi = grid.floor(window.start), grid.ceil(window.end)
        horizon = max(lo, min(hi, self._horizon(route, target)))
        spans: list[tuple[datetime, datetime, _Source]] = []
        if lo < horizon:
            covered = await anyio.to_thread.run_sync(store.covered)
            gaps = gaps_in(lo, horizon, grid, covered)
            # The newest stored rows are fetched again and compared (about a page).
            newest = covered[-1][1] if covered else lo
            recheck_from = max(
                lo, route.recheck_from(target, newest, self._recheck, window.page_size)
            )
            cursor = lo
            for gap_start, gap_end in [*gaps, (horizon, horizon)]:
                if cursor < gap_start:
                    cut = min(max(cursor, recheck_from), gap_start)
                    if cursor < cut:
                        spans.append((cursor, cut, "stored"))
                    if cut < gap_start:
                        spans.append((cut, gap_start, "recheck"))
                if gap_start < gap_end:
                    spans.append((gap_start, gap_end, "fill"))
                cursor = gap_end
        if horizon < hi:
            spans.append((horizon, hi, "net"))
        # Planned shard ends on the grid (the last may be the caller's own, mid-bucket).
        cuts = sorted({s.end for s in req.shards if grid.floor(s.end) == s.end})
        pieces: list[_Piece] = []
        for span_start, span_end, source in spans:
            if source == "recheck":
                parts = [SubRange(span_start, span_end)]  # about a page: one piece
            elif source == "stored":
                # Read a stored span one planned shard at a time: a stream then holds no
                # more of it at once than it would of a fetched one.
                bounds = [span_start, *(c for c in cuts if span_start < c < span_end), span_end]
                parts = [SubRange(a, b) for a, b in itertools.pairwise(bounds)]
            else:
                part_window = Window(span_start, span_end, window.sort, window.page_size)
                parts = route.policy.plan(route, target, part_window)
            pieces.extend(_Piece(part, source) for part in parts)
        return [
            _Piece(SubRange(p.shard.start, p.shard.end, i), p.source) for i, p in enumerate(pieces)
        ]

    async def _fetch_piece(self, req: Request[Any, Row], shard: SubRange, sort: str) -> list[Row]:
        route = req.route
        return await route.policy.fetch(
            self._source, route, req.target, shard, sort, req.window.page_size
        )

    async def load(self, req: Request[Any, Row], piece: _Piece) -> list[Row]:
        """One piece's rows in the request's sort order."""
        sort = req.window.sort
        if piece.source == "net":
            return await self._fetch_piece(req, piece.shard, sort)
        shelf = await self._store_for(req.route, req.target)
        assert shelf is not None
        shard = piece.shard
        rows: list[Row] | None = None
        if piece.source == "stored":
            rows = await self._read(shelf, req, shard)
        elif piece.source == "recheck":
            rows = await self._recheck_piece(shelf, req, shard)
        if rows is None:
            # Fetched ascending, as the store keeps them; reversed below for "desc".
            rows = await self._fetch_piece(req, shard, "asc")
            await self._save(shelf, req, shard, rows)
        return rows if sort == "asc" else rows[::-1]

    async def _recheck_piece(
        self, shelf: Shelf[Row], req: Request[Any, Row], shard: SubRange
    ) -> list[Row] | None:
        """A rechecked span's rows: fetched, and what the server revised replaced in the
        store. When the fetch fails the stored rows are served (they are settled; only
        the check is missed, and the next run makes it), so a window the store holds
        whole never fails for the recheck; ``None`` if they cannot be read either."""
        try:
            rows = await self._fetch_piece(req, shard, "asc")
        except KaikoLiqError as exc:
            if isinstance(exc, ClientClosedError | InvalidArgumentError):
                raise
            logger.warning(
                "cache: %s %s: recheck failed, serving the stored rows (the next run "
                "checks again): %s",
                req.label,
                _span(shard),
                exc,
            )
            return await self._read(shelf, req, shard)
        await self._revise(shelf, req, shard, rows)
        return rows

    async def _read(
        self, shelf: Shelf[Row], req: Request[Any, Row], shard: SubRange
    ) -> list[Row] | None:
        """A stored span's rows, or ``None`` when the store cannot give them after all (a
        file found damaged and moved aside, say): then the span is fetched again."""
        from .fs import StorageError
        from .store import NotStoredError

        try:
            rows: list[Row] = await anyio.to_thread.run_sync(
                shelf.read_rows, shard.start, shard.end
            )
        except (StorageError, NotStoredError) as exc:
            logger.warning("cache: %s %s fetched again: %s", req.label, _span(shard), exc)
            return None
        return rows

    def _final_part(
        self, req: Request[Any, Row], shard: SubRange, rows: list[Row]
    ) -> tuple[datetime, list[Row]]:
        """The end of the part of ``shard`` that is final, judged again now that the
        server has answered (its clock may say less than before), and its rows."""
        end = min(shard.end, self._horizon(req.route, req.target))
        if end < shard.end:
            time_of = req.route.time_of
            rows = [r for r in rows if time_of(r) < end]
        return end, rows

    async def _save(
        self, shelf: Shelf[Row], req: Request[Any, Row], shard: SubRange, rows: list[Row]
    ) -> None:
        from .fs import StorageError

        # Rows the server's clock says may still change are returned but not stored
        # (they are fetched again next time).
        end, rows = self._final_part(req, shard, rows)
        if end <= shard.start:
            return
        # Shielded: once fetched, a shard lands in the store whole, or not at all.
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(shelf.write, shard.start, end, rows)
            except StorageError as exc:
                # The answer is still complete and right; only the cache missed out.
                logger.warning("cache: could not store %s %s: %s", req.label, _span(shard), exc)

    async def _revise(
        self, shelf: Shelf[Row], req: Request[Any, Row], shard: SubRange, rows: list[Row]
    ) -> None:
        """Replace the stored rows of a rechecked span that the server changed: only
        those its clock, as it just answered, calls final. A server behind ours (its clock
        or its aggregation) answers for buckets it has not settled yet; taken as
        revisions, they would overwrite settled rows with partial ones for ever."""
        from .fs import StorageError

        end, rows = self._final_part(req, shard, rows)
        if end <= shard.start:
            return
        with anyio.CancelScope(shield=True):
            try:
                changed = await anyio.to_thread.run_sync(shelf.revise, shard.start, end, rows)
            except StorageError as exc:
                logger.warning("cache: could not revise %s %s: %s", req.label, _span(shard), exc)
                return
        self.revised += len(changed)
        if changed:
            shown = ", ".join(format_time(t) for t in changed[:3])
            logger.warning(
                "cache: %s: %s revised by the server since stored (%s%s)",
                req.label,
                plural(len(changed), req.route.row_name),
                shown,
                ", ..." if len(changed) > 3 else "",
            )

    # -- fetching ---------------------------------------------------------------------

    async def fetch(
        self, req: Request[Any, Row], on_shard: Callable[[SubRange], None] | None = None
    ) -> list[Row]:
        """Every row of the request in its sort order, or :class:`IncompleteFetchError`."""
        return (await self.fetch_many([req], [on_shard]))[0]

    async def fetch_many(
        self,
        reqs: Sequence[Request[Any, Row]],
        on_shard: Sequence[Callable[[SubRange], None] | None] | None = None,
    ) -> list[list[Row]]:
        """Several requests at once under one limiter, each one's rows in order. A fatal
        error stops everything and is raised as itself; failed shards are raised at the
        end as the request's :class:`IncompleteFetchError`, or, when several requests
        have them, one :class:`FetchManyIncompleteError` naming each."""
        self.check_open()
        reports = list(on_shard) if on_shard is not None else [None] * len(reqs)
        outcomes: list[_Outcome[Row]] = [_Outcome() for _ in reqs]
        async with anyio.create_task_group() as tg:
            stop = _Stop(tg.cancel_scope)
            for req, outcome, report in zip(reqs, outcomes, reports, strict=True):
                tg.start_soon(self._collect, req, report, outcome, stop)
        if stop.fatal is not None:
            raise stop.fatal
        results: list[list[Row]] = []
        incomplete: dict[str, IncompleteFetchError] = {}
        for req, outcome in zip(reqs, outcomes, strict=True):
            try:
                results.append(outcome.result(req))
            except IncompleteFetchError as exc:
                incomplete[req.label] = exc
        if len(incomplete) == 1:
            raise next(iter(incomplete.values()))
        if incomplete:
            raise FetchManyIncompleteError(incomplete)
        return results

    async def _collect(
        self,
        req: Request[Any, Row],
        on_shard: Callable[[SubRange], None] | None,
        outcome: _Outcome[Row],
        stop: _Stop,
    ) -> None:
        """Load every piece of ``req`` concurrently into ``outcome``. A fatal error stops
        the whole call (every request's work)."""
        try:
            outcome.pieces = await self.pieces(req)
        except Exception as exc:
            stop.stop(exc)
            return
        progress = _Progress(req.shards, outcome.pieces, on_shard)

        async def run(piece: _Piece) -> None:
            try:
                outcome.rows[piece.shard.index] = await self.load(req, piece)
            except Exception as exc:
                if isinstance(exc, KaikoLiqError) and not is_fatal(exc):
                    outcome.failed.append(FailedRange(piece.shard.start, piece.shard.end, exc))
                else:
                    # A wrong key, target or parameter fails every shard alike (and a bug
                    # is no shard's fault): stop now, and raise it as it is.
                    stop.stop(exc)
                return
            try:
                progress.done(piece)
            except Exception as exc:  # the caller's on_shard: raised once, as itself
                stop.stop(exc)

        async with anyio.create_task_group() as tg:
            for piece in outcome.pieces:
                tg.start_soon(run, piece)

    def stream(self, req: Request[Any, Row], window: int) -> RowStream[Row]:
        self.check_open()
        return RowStream(self, req, window)


def _span(shard: SubRange) -> str:
    return f"[{format_time(shard.start)}, {format_time(shard.end)})"


@dataclass(slots=True)
class _Stop:
    """The scope of one call (all its requests) and the first error that stopped it."""

    scope: anyio.CancelScope
    fatal: BaseException | None = None

    def stop(self, error: BaseException) -> None:
        if self.fatal is None:
            self.fatal = error
        self.scope.cancel()


@dataclass(slots=True)
class _Outcome(Generic[Row]):
    """What one request's pieces came to: rows by piece index, and the failed ones."""

    pieces: list[_Piece] = field(default_factory=list)
    rows: dict[int, list[Row]] = field(default_factory=dict)
    failed: list[FailedRange] = field(default_factory=list)

    def result(self, req: Request[Any, Row]) -> list[Row]:
        """The merged rows in the request's sort order, or an IncompleteFetchError."""
        if self.failed:
            failed = sorted(self.failed, key=lambda f: f.start)
            done = [(p.shard.start, p.shard.end) for p in self.pieces if p.shard.index in self.rows]
            raise IncompleteFetchError(req.label, failed, done)
        order = self.pieces if req.window.sort == "asc" else self.pieces[::-1]
        rows: list[Row] = []
        previous: Row | None = None
        for piece in order:
            chunk = self.rows[piece.shard.index]
            if chunk and previous is not None:
                check_boundary(req, previous, chunk[0])
            if chunk:
                previous = chunk[-1]
            rows.extend(chunk)
        return rows


class _Progress:
    """Calls ``on_shard`` with each planned shard once every piece overlapping it is in."""

    def __init__(
        self,
        shards: list[SubRange],
        pieces: list[_Piece],
        on_shard: Callable[[SubRange], None] | None,
    ) -> None:
        self._on_shard = on_shard
        self._shards = shards
        self._left = [0] * len(shards)
        self._covers: dict[int, list[int]] = {}
        ends = [s.end for s in shards]  # ascending: shards are planned in order
        for piece in pieces:
            hit = []
            i = bisect.bisect_right(ends, piece.shard.start)
            while i < len(shards) and shards[i].start < piece.shard.end:
                hit.append(i)
                i += 1
            self._covers[piece.shard.index] = hit
            for i in hit:
                self._left[i] += 1

    def done(self, piece: _Piece) -> None:
        if self._on_shard is None:
            return
        for i in self._covers.get(piece.shard.index, []):
            self._left[i] -= 1
            if self._left[i] == 0:
                self._on_shard(self._shards[i])


def check_boundary(req: Request[Any, Row], before: Row, after: Row) -> None:
    """Consecutive pieces cover disjoint windows, so their rows are strictly ordered."""
    a, b = req.route.time_of(before), req.route.time_of(after)
    if (b <= a) if req.window.sort == "asc" else (b >= a):
        raise InconsistentDataError(
            f"rows at a shard boundary repeat or go out of order: {format_time(a)} then "
            f"{format_time(b)}",
            req.route.path(req.target),
        )


@dataclass(slots=True)
class _Slot(Generic[Row]):
    """One piece's result, filled by its task and read by the consumer in order."""

    piece: _Piece
    done: anyio.Event
    rows: list[Row] | None = None
    error: Exception | None = None


class RowStream(RowIterator[Row]):
    """Ordered rows of one request; an async iterator and an async context manager.

    The shards are fetched by a producer task that owns a task group; the consumer never
    yields from inside a task group (anyio's rule), it only waits on per-shard events. A
    semaphore of ``window`` permits keeps the producer at most that many shards ahead.
    """

    def __init__(self, engine: Engine, req: Request[Any, Row], window: int) -> None:
        self._engine = engine
        self._req = req
        self._window = window
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._started = False
        super().__init__()
        self._slots: list[_Slot[Row]] = []

    def __repr__(self) -> str:
        w = self._req.window
        return (
            f"RowStream({self._req.label!r}, start={format_time(w.start)!r}, "
            f"end={format_time(w.end)!r}, shards={len(self._req.shards)})"
        )

    def _before_next(self) -> None:
        # Once the generator has raised it would only say "exhausted", and a closed
        # stream must never look like a complete range.
        self._check_not_closed()

    async def aclose(self) -> None:
        """Cancel the producer and wait for it; nothing is left running."""
        self._closed = True
        self._engine.streams.discard(self)
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

    async def _rows(self) -> AsyncIterator[Row]:
        self._check_not_closed()
        if self._started:
            raise InvalidArgumentError("a stream can be iterated once; call stream() again")
        self._started = True
        engine = self._engine
        engine.check_open()
        req = self._req
        engine.streams.add(self)
        try:
            pieces = await engine.pieces(req)
        except BaseException:
            engine.streams.discard(self)  # the finally below is not reached yet
            raise
        order = pieces if req.window.sort == "asc" else pieces[::-1]
        slots = self._slots = [_Slot[Row](piece, anyio.Event()) for piece in order]
        permits = anyio.Semaphore(self._window)
        self._task = asyncio.get_running_loop().create_task(self._produce(slots, permits))
        previous: Row | None = None
        try:
            for position, slot in enumerate(slots):
                await slot.done.wait()
                self._check_not_closed()
                if slot.error is not None:
                    if not isinstance(slot.error, KaikoLiqError) or is_fatal(slot.error):
                        raise slot.error
                    shard = slot.piece.shard
                    done = [(s.piece.shard.start, s.piece.shard.end) for s in slots[:position]]
                    pending = [
                        (s.piece.shard.start, s.piece.shard.end) for s in slots[position + 1 :]
                    ]
                    raise IncompleteFetchError(
                        req.label,
                        [FailedRange(shard.start, shard.end, slot.error)],
                        done,
                        pending=pending,
                    ) from slot.error
                if slot.rows is None:
                    raise ClientClosedError("the stream's fetch was cancelled before it finished")
                rows, slot.rows = slot.rows, None
                permits.release()
                if rows and previous is not None:
                    check_boundary(req, previous, rows[0])
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
            engine.streams.discard(self)

    async def _produce(self, slots: list[_Slot[Row]], permits: anyio.Semaphore) -> None:
        async def run(slot: _Slot[Row]) -> None:
            try:
                slot.rows = await self._engine.load(self._req, slot.piece)
            except Exception as exc:
                # Handed to the consumer, which raises it in order; nothing is dropped.
                slot.error = exc
            finally:
                slot.done.set()

        async with anyio.create_task_group() as tg:
            for slot in slots:
                await permits.acquire()
                tg.start_soon(run, slot)
