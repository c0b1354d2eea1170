"""LiquidationClient: a sharded, concurrent fetch that equals one plain query.

A window is cut into shards (:mod:`kaiko_liq.plan`), the shards are fetched concurrently
under one limiter (:mod:`kaiko_liq.transport`), each shard follows its ``next_url`` chain
to the end, and the shards' rows are handed back in the requested order. Every shard's
rows are checked to lie inside the shard, on the grid and strictly in order, so rows can
neither repeat nor go missing at a boundary without an error.

With ``cache_dir`` a window is cut into *pieces* instead: settled spans the local store
(:mod:`kaiko_liq.store`) already holds are read from it, settled spans it lacks are
fetched and added to it, and buckets not settled yet are fetched and never stored. The
answer is the same rows either way.

Example, against the built-in emulator::

    async with running_emulator() as emu:
        async with LiquidationClient(base_url=emu.base_url) as client:
            rows = await client.fetch("eth", "2025-02-01", "2025-03-01", interval="4h")
            frame = await client.fetch_frame(["btc", "eth"], "2025-02-01", "2025-03-01")
            async for row in client.stream("btc", "2025-01-08", "2026-01-08"):
                ...
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import urlsplit

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
    redact_url,
    register_secret,
)
from .export import require_optional
from .keys import API_KEY_ENV, resolve_api_key
from .models import LiquidationRow
from .plan import SubRange, plan_subranges
from .progress import plural
from .protocol import (
    REGIONS,
    check_base_url,
    page_url,
    region_base_url,
)
from .query import (
    MAX_CONCURRENCY_RANGE,
    MAX_PAGE_SIZE,
    RATE_LIMIT_RANGE,
    Interval,
    TimeLike,
    format_time,
    parse_duration,
    parse_interval,
    parse_rate_limit,
    validate_asset,
    validate_max_concurrency,
    validate_page_size,
    validate_request,
    validate_sort,
)
from .retry import RetryPolicy
from .rowiter import RowIterator
from .shard import ShardQuery, fetch_shard
from .store import RECHECK, SETTLE, gaps_in
from .transport import DEFAULT_MAX_RESPONSE_BYTES, ClientStats, Timeouts, Transport

if TYPE_CHECKING:
    from .live import Follow
    from .store import ShardStore

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_STREAM_WINDOW",
    "MAX_CONCURRENCY_RANGE",
    "RATE_LIMIT_RANGE",
    "Backend",
    "LiquidationClient",
    "RowStream",
]

logger = logging.getLogger("kaiko_liq")

#: Requests per second: Kaiko's published standard limit for the REST API, 6000 per
#: minute per key. A key allowed less gets 429s, and the adaptive limiter slows down to it.
DEFAULT_RATE_LIMIT = 100.0
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

Backend = Literal["pandas", "polars", "arrow"]
BACKENDS: tuple[Backend, ...] = ("pandas", "polars", "arrow")
_SHAPES = ("totals", "exchanges", "nested")

#: Where a piece's rows come from: the network only, the network then into the store,
#: the store, or the network compared with the store (the recheck of its newest buckets).
_Source = Literal["net", "fill", "stored", "recheck"]
#: A clock difference with the server worth a warning (logged once per client).
CLOCK_WARNING = timedelta(minutes=1)


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


@dataclass(frozen=True, slots=True)
class _Piece:
    """A span of one request fetched or read as one: a planned shard when there is no
    cache; with one, a stored span, a shard of a gap, or a shard of the unsettled tail."""

    shard: SubRange
    source: _Source


class LiquidationClient:
    """Async client of Kaiko's token-level liquidation volumes.

    Args:
        api_key: Kaiko API key; defaults to the ``KAIKO_API_KEY`` environment variable
            (see :func:`kaiko_liq.keys.resolve_api_key`). Required for Kaiko's own hosts;
            with ``base_url`` (the emulator, a proxy) a placeholder is sent when there is
            none.
        region: ``"us"`` or ``"eu"`` (``https://{region}.market-api.kaiko.io``).
        base_url: overrides ``region``; plain http only to loopback unless
            ``allow_insecure_http``; no ``user:password@`` unless ``allow_credentials``
            (they are sent, and cut out of every URL the client shows).
        rate_limit: requests per second shared by everything this client does, or a
            string such as ``"6000/min"`` or ``"100/s"``. Default 100/s (6000/min).
        max_concurrency: requests in flight at once.
        page_size: rows per page asked for (1..1000; default 1000, the documented max).
        timeouts: connect and read timeouts per attempt.
        retry: the retry policy (attempts, backoff, Retry-After cap, deadline).
        adaptive_rate: slow the shared limiter down on 429s and recover on success.
        cache_dir: keep settled buckets in a local Parquet store under this directory
            (one per origin and interval) and fetch only what it lacks.
        max_response_bytes: the largest decompressed body accepted; a larger answer is
            :class:`~kaiko_liq.errors.ResponseTooLargeError`.
        now: our clock (default: the system's, UTC); tests inject one. Which buckets
            have settled is judged on the earlier of it and the server's clock (the
            ``answer_time`` of its latest answer, or its ``Date`` header); see
            :meth:`settled_before`.
        settle: how long after a bucket closes its figures count as final (default
            1 h; a ``timedelta`` or ``"90m"``, ``"2h"``). Only final buckets are
            stored; later ones are fetched every time.
        recheck: how far back from the newest stored bucket every fetch that touches
            it fetches again and replaces what changed (default 24 h, at most one page;
            ``0`` turns it off): figures a server revised after they were stored.
        cache_namespace: the name of this server's store under ``cache_dir`` (default:
            its origin). The built-in emulator gets a fixed one, since it listens on a
            new port each time but serves the same settled data.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        region: str = "us",
        base_url: str | None = None,
        rate_limit: float | str = DEFAULT_RATE_LIMIT,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        page_size: int = MAX_PAGE_SIZE,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        adaptive_rate: bool = True,
        allow_insecure_http: bool = False,
        allow_credentials: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        now: Callable[[], datetime] | None = None,
        cache_namespace: str | None = None,
        settle: timedelta | str = SETTLE,
        recheck: timedelta | str = RECHECK,
    ) -> None:
        if region not in REGIONS:
            raise InvalidArgumentError(f"region {region!r} is not allowed; use 'us' or 'eu'")
        rate = parse_rate_limit(rate_limit, "rate_limit")
        validate_max_concurrency(max_concurrency)
        self._page_size = validate_page_size(page_size)
        if base_url is None:
            base = region_base_url(region)
        else:
            base = check_base_url(
                base_url,
                allow_insecure_http=allow_insecure_http,
                allow_credentials=allow_credentials,
            )
            register_secret(urlsplit(base).password)
        if cache_dir is not None and not isinstance(cache_dir, str | os.PathLike):
            raise InvalidArgumentError(
                f"cache_dir must be a directory path, got {type(cache_dir).__name__}"
            )
        if cache_dir is not None:
            # Checked now: found missing at the first write, it would fail a good answer.
            require_optional("pyarrow.parquet", "cache_dir", extra="parquet")
        if now is not None and not callable(now):
            raise InvalidArgumentError("now must be a callable returning an aware datetime")
        self.settle = parse_duration(settle, "settle")
        self.recheck = parse_duration(recheck, "recheck")
        key = resolve_api_key(api_key, required=False)
        if key is None:
            if base_url is None:
                raise InvalidArgumentError(
                    f"no API key; pass api_key or set {API_KEY_ENV}. To try it without one, "
                    "use the built-in emulator (synthetic data): kaiko_liq.fetch(..., "
                    "emulator=True), or base_url=emu.base_url inside "
                    "'async with running_emulator() as emu'"
                )
            key = _PLACEHOLDER_KEY
        self.rate_limit = rate
        self.max_concurrency = max_concurrency
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self._cache_namespace = cache_namespace
        self._now = now or _utc_now
        self._transport = Transport(
            base_url=base,
            api_key=key,
            rate_limit=rate,
            max_concurrency=max_concurrency,
            timeouts=timeouts or Timeouts(),
            retry_policy=retry or RetryPolicy(),
            adaptive_rate=adaptive_rate,
            max_response_bytes=max_response_bytes,
        )
        self._streams: set[RowStream] = set()
        # Cancelled by aclose: a follow waits under one, and wakes to raise.
        self._wakers: set[anyio.CancelScope] = set()
        self._stores: dict[str, ShardStore] = {}
        self._clock_warned = False
        #: Stored buckets this client found changed by the server and replaced.
        self.revised = 0

    def __repr__(self) -> str:
        cache = f", cache_dir={self.cache_dir!r}" if self.cache_dir is not None else ""
        return (
            f"LiquidationClient(base_url={self.base_url!r}, rate_limit={self.rate_limit:g}, "
            f"max_concurrency={self.max_concurrency}{cache}, api_key=***)"
        )

    @property
    def base_url(self) -> str:
        """The base URL, without any ``user:password@``."""
        return redact_url(self._transport.base_url)

    @property
    def server(self) -> str:
        """Whose data a store of this client holds: the base URL, or the cache
        namespace (the built-in emulator's, whose port changes from run to run)."""
        ns = self._cache_namespace
        return self.base_url if ns is None else f"namespace:{ns}"

    @property
    def stats(self) -> ClientStats:
        """Requests, retries, 429s, pages, rows and bytes, since the client was made."""
        return self._transport.stats

    @property
    def closed(self) -> bool:
        return self._transport.closed

    def now(self) -> datetime:
        """The client's clock (UTC): what decides which buckets have settled."""
        t = self._now()
        if not isinstance(t, datetime) or t.tzinfo is None:
            raise InvalidArgumentError(f"now() must return an aware datetime, got {t!r}")
        return t.astimezone(UTC)

    def settled_before(self, interval: str = "1h") -> datetime:
        """Buckets starting before this are final: closed :attr:`settle` ago (plus a
        small margin) on the earlier of our clock and the server's, as its latest
        answer gave it. ``row.interval_time < client.settled_before(interval)`` tells a
        final row from one the server may still change: the one test used by the cache,
        ``backfill``, ``follow`` and the CLI."""
        from .store import settled_horizon

        return settled_horizon(parse_interval(interval), self._judged_now(), settle=self.settle)

    def _judged_now(self) -> datetime:
        """The earlier of our clock and the server's; a difference over a minute is
        logged once."""
        ours = self.now()
        theirs = self._transport.server_now()
        if theirs is None:
            return ours
        if abs(ours - theirs) > CLOCK_WARNING and not self._clock_warned:
            self._clock_warned = True
            logger.warning(
                "the server's clock (%s) and ours (%s) differ by %.0fs; settlement is "
                "judged on the earlier",
                format_time(theirs),
                format_time(ours),
                abs((ours - theirs).total_seconds()),
            )
        return min(ours, theirs)

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
        """Cancel open streams, wake waiting follows (they raise
        :class:`ClientClosedError`) and close the HTTP session. Safe to call twice."""
        for stream in list(self._streams):
            await stream.aclose()
        await self._transport.aclose()
        for scope in list(self._wakers):
            scope.cancel()

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
        """The shards a fetch of this window would use, ascending; validates like fetch.

        ``on_shard`` reports each of them as it completes, with a cache too (where a
        shard completes when every part of it has been read or fetched)."""
        return self._request(asset, start, end, interval, "asc", page_size).shards

    def _store(self, interval: Interval) -> ShardStore | None:
        if self.cache_dir is None:
            return None
        store = self._stores.get(interval.text)
        if store is None:
            from .store import cache_store

            store = cache_store(
                self.cache_dir, self.base_url, interval, namespace=self._cache_namespace
            )
            self._stores[interval.text] = store
        return store

    async def _pieces(self, req: _Request) -> list[_Piece]:
        """What a request is made of, ascending. Without a cache, its planned shards."""
        store = self._store(req.interval)
        if store is None:
            return [_Piece(shard, "net") for shard in req.shards]
        grid = req.interval
        lo, hi = grid.floor(req.start), grid.ceil(req.end)
        horizon = max(lo, min(hi, self.settled_before(grid.text)))
        spans: list[tuple[datetime, datetime, _Source]] = []
        if lo < horizon:
            covered = await anyio.to_thread.run_sync(store.covered, req.asset)
            gaps = gaps_in(lo, horizon, grid, covered)
            # The newest stored buckets are fetched again and compared (one page).
            newest = covered[-1][1] if covered else lo
            window = min(self.recheck, grid.delta * req.page_size)
            recheck_from = max(lo, grid.ceil(newest - window)) if window else newest
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
                parts = [SubRange(span_start, span_end)]  # one page: within page_size
            elif source == "stored":
                # Read a stored span one planned shard at a time: a stream then holds no
                # more of it at once than it would of a fetched one.
                bounds = [span_start, *(c for c in cuts if span_start < c < span_end), span_end]
                parts = [SubRange(a, b) for a, b in itertools.pairwise(bounds)]
            else:
                parts = plan_subranges(span_start, span_end, grid, req.page_size)
            pieces.extend(_Piece(part, source) for part in parts)
        return [
            _Piece(SubRange(p.shard.start, p.shard.end, i), p.source) for i, p in enumerate(pieces)
        ]

    async def _load(self, req: _Request, piece: _Piece) -> list[LiquidationRow]:
        """One piece's rows in ``req.sort`` order."""
        query = ShardQuery(req.asset, req.interval, req.sort, req.page_size)
        if piece.source == "net":
            return await fetch_shard(self._transport, query, piece.shard)
        store = self._store(req.interval)
        assert store is not None
        shard = piece.shard
        rows: list[LiquidationRow] | None = None
        if piece.source == "stored":
            rows = await self._read(store, req.asset, shard)
        if rows is None:
            # Fetched ascending, as the store keeps them; reversed below for "desc".
            ascending = ShardQuery(req.asset, req.interval, "asc", req.page_size)
            rows = await fetch_shard(self._transport, ascending, shard)
            if piece.source == "recheck":
                await self._revise(store, req.asset, shard, rows)
            else:
                await self._save(store, req.asset, req.interval, shard, rows)
        return rows if req.sort == "asc" else rows[::-1]

    async def _revise(
        self, store: ShardStore, asset: str, shard: SubRange, rows: list[LiquidationRow]
    ) -> None:
        """Replace the stored buckets of a rechecked span that the server changed."""
        from .store import StorageError

        with anyio.CancelScope(shield=True):
            try:
                changed = await anyio.to_thread.run_sync(
                    store.revise, asset, shard.start, shard.end, rows
                )
            except StorageError as exc:
                logger.warning("cache: could not revise %s %s: %s", asset, _span(shard), exc)
                return
        self.revised += len(changed)
        if changed:
            logger.warning(
                "cache: %s: %s revised by the server since stored (%s)",
                asset,
                plural(len(changed), "bucket"),
                ", ".join(format_time(t) for t in changed[:3])
                + (", ..." if len(changed) > 3 else ""),
            )

    async def _read(
        self, store: ShardStore, asset: str, shard: SubRange
    ) -> list[LiquidationRow] | None:
        """A stored span's rows, or ``None`` when the store cannot give them after all (a
        file found damaged and moved aside, say): then the span is fetched again."""
        from .store import NotStoredError, StorageError

        try:
            return await anyio.to_thread.run_sync(store.read_rows, asset, shard.start, shard.end)
        except (StorageError, NotStoredError) as exc:
            logger.warning("cache: %s %s fetched again: %s", asset, _span(shard), exc)
            return None

    async def _save(
        self,
        store: ShardStore,
        asset: str,
        grid: Interval,
        shard: SubRange,
        rows: list[LiquidationRow],
    ) -> None:
        from .store import StorageError

        # Judged again now that the server has answered: buckets its clock says may
        # still change are returned but not stored (they are fetched again next time).
        end = min(shard.end, self.settled_before(grid.text))
        if end <= shard.start:
            return
        if end < shard.end:
            rows = [r for r in rows if r.interval_time < end]
        # Shielded: once fetched, a shard lands in the store whole, or not at all.
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(store.write, asset, shard.start, end, rows)
            except StorageError as exc:
                # The answer is still complete and right; only the cache missed out.
                logger.warning("cache: could not store %s %s: %s", asset, _span(shard), exc)

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
        outcome = _Outcome()
        async with anyio.create_task_group() as tg:
            stop = _Stop(tg.cancel_scope)
            tg.start_soon(self._collect, req, on_shard, outcome, stop)
        if stop.fatal is not None:
            raise stop.fatal
        return outcome.result(req)

    async def fetch_many(
        self,
        assets: str | Iterable[str],
        start: TimeLike,
        end: TimeLike,
        *,
        interval: str = "1h",
        sort: str = "desc",
        page_size: int | None = None,
        on_shard: Callable[[str, SubRange], None] | None = None,
    ) -> dict[str, list[LiquidationRow]]:
        """:meth:`fetch` for several assets at once: ``{asset: rows}`` in the order given,
        keyed by the codes as given (``"BTC"`` stays ``"BTC"``).

        Every asset's shards run concurrently under the client's one limiter, and every
        argument is checked before anything is sent. A failure every shard would hit (an
        unknown asset's 404, a wrong key) stops the whole call and is raised as itself,
        its message naming the asset; shards that failed after their retries are raised
        at the end as that asset's :class:`IncompleteFetchError`, or, when several assets
        have them, as one :class:`FetchManyIncompleteError` naming each.

        ``on_shard(asset, shard)`` is called as each shard of :meth:`plan` completes.
        """
        given = _asset_list(assets)
        reqs = [self._request(a, start, end, interval, sort, page_size) for a in given]
        self._check_open()
        outcomes = [_Outcome() for _ in reqs]
        async with anyio.create_task_group() as tg:
            stop = _Stop(tg.cancel_scope)
            for req, outcome in zip(reqs, outcomes, strict=True):
                report = None if on_shard is None else _for_asset(on_shard, req.asset)
                tg.start_soon(self._collect, req, report, outcome, stop)
        if stop.fatal is not None:
            raise stop.fatal
        results: dict[str, list[LiquidationRow]] = {}
        incomplete: dict[str, IncompleteFetchError] = {}
        for name, req, outcome in zip(given, reqs, outcomes, strict=True):
            try:
                results[name] = outcome.result(req)  # keyed as given: r["BTC"] works
            except IncompleteFetchError as exc:
                incomplete[name] = exc
        if len(incomplete) == 1:
            raise next(iter(incomplete.values()))
        if incomplete:
            raise FetchManyIncompleteError(incomplete)
        return results

    async def fetch_frame(
        self,
        assets: str | Iterable[str],
        start: TimeLike,
        end: TimeLike,
        *,
        interval: str = "1h",
        sort: str = "asc",
        page_size: int | None = None,
        backend: str = "pandas",
        shape: str = "totals",
    ) -> Any:
        """The rows of one asset or several as one DataFrame (or Arrow table).

        ``backend``: ``"pandas"``, ``"polars"`` or ``"arrow"``. ``shape``: ``"totals"``
        (one row per asset and bucket), ``"exchanges"`` (the long per-exchange table) or
        ``"nested"`` (totals plus an ``exchanges`` list column); the columns are those of
        :mod:`kaiko_liq.export`, with ``asset`` always present and ``interval_time`` a
        UTC timestamp. Rows: the first asset's, then the next's, each in ``sort`` order.
        The backend's package is checked before anything is fetched.
        """
        convert = _converter(backend, shape)
        rows = await self.fetch_many(
            assets, start, end, interval=interval, sort=sort, page_size=page_size
        )
        # The asset column holds the codes as sent (lower case), however they were given.
        rows = {validate_asset(asset): asset_rows for asset, asset_rows in rows.items()}
        # A year of several assets is a second of conversion: keep the loop responsive.
        return await anyio.to_thread.run_sync(convert, rows)

    async def fetch_shard(
        self,
        asset: str,
        shard: SubRange,
        *,
        interval: str = "1h",
        sort: str = "asc",
        page_size: int | None = None,
    ) -> list[LiquidationRow]:
        """The rows of one planned shard (from :meth:`plan`), its page chain followed to
        the end, in ``sort`` order. Not re-planned, not cached; an error is raised as
        itself (not wrapped in :class:`IncompleteFetchError`). For callers that schedule
        shards themselves, such as :func:`kaiko_liq.backfill.backfill`."""
        name = validate_asset(asset)
        grid = parse_interval(interval)
        order = validate_sort(sort)
        size = self._page_size if page_size is None else validate_page_size(page_size)
        if not isinstance(shard, SubRange) or not shard.start < shard.end:
            raise InvalidArgumentError(
                f"shard must be a SubRange from client.plan() with start < end, got {shard!r}"
            )
        self._check_open()
        return await fetch_shard(self._transport, ShardQuery(name, grid, order, size), shard)

    async def _collect(
        self,
        req: _Request,
        on_shard: Callable[[SubRange], None] | None,
        outcome: _Outcome,
        stop: _Stop,
    ) -> None:
        """Load every piece of ``req`` concurrently into ``outcome``. A fatal error stops
        the whole call (with ``fetch_many``, every asset's work)."""
        try:
            outcome.pieces = await self._pieces(req)
        except Exception as exc:
            stop.stop(exc)
            return
        progress = _Progress(req.shards, outcome.pieces, on_shard)

        async def run(piece: _Piece) -> None:
            try:
                outcome.rows[piece.shard.index] = await self._load(req, piece)
            except Exception as exc:
                if isinstance(exc, KaikoLiqError) and not is_fatal(exc):
                    outcome.failed.append(FailedRange(piece.shard.start, piece.shard.end, exc))
                else:
                    # A wrong key, asset or parameter fails every shard alike (and a bug
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

    def follow(
        self,
        asset: str,
        *,
        interval: str = "1h",
        since: TimeLike | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> Follow:
        """Rows from ``since`` (default: the last day), then each new bucket as soon as it
        settles, for ever: an async iterator (see :mod:`kaiko_liq.live`). Transient
        failures are retried with backoff indefinitely; others are raised. ``sleep``
        (default ``anyio.sleep``) is how it waits; tests pass one that moves their clock
        (the client's ``now``)."""
        from .live import Follow

        return Follow(self, asset, interval=interval, since=since, sleep=sleep)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _span(shard: SubRange) -> str:
    return f"[{format_time(shard.start)}, {format_time(shard.end)})"


def _asset_list(assets: str | Iterable[str]) -> list[str]:
    """One code or several; refused when empty or when one is given twice."""
    if isinstance(assets, str):
        return [assets]
    try:
        given = list(assets)
    except TypeError:
        raise InvalidArgumentError(
            f"assets must be an asset code or a list of them, got {type(assets).__name__}"
        ) from None
    if not given:
        raise InvalidArgumentError("assets is empty; pass an asset code such as 'eth'")
    seen: set[str] = set()
    for asset in given:
        name = validate_asset(asset)
        if name in seen:
            raise InvalidArgumentError(f"asset {name!r} is given twice; list each asset once")
        seen.add(name)
    return given


def _for_asset(on_shard: Callable[[str, SubRange], None], asset: str) -> Callable[[SubRange], None]:
    return lambda shard: on_shard(asset, shard)


def _converter(backend: str, shape: str) -> Callable[[dict[str, list[LiquidationRow]]], Any]:
    """The export function for ``backend``, its package checked now, before a fetch."""
    from . import export

    if shape not in _SHAPES:
        raise InvalidArgumentError(f"shape {shape!r} is not one of {', '.join(map(repr, _SHAPES))}")
    checked: export.Shape = shape  # type: ignore[assignment]
    if backend == "arrow":
        export.import_optional("pyarrow", "fetch_frame(backend='arrow')", extra="parquet")
        return lambda rows: export.to_arrow(rows, shape=checked)
    if backend == "pandas":
        export.import_optional("pandas", "fetch_frame(backend='pandas')")
        export.import_optional("pyarrow", "fetch_frame(backend='pandas')", extra="pandas")
        return lambda rows: export.to_pandas(rows, shape=checked)
    if backend == "polars":
        export.import_optional("polars", "fetch_frame(backend='polars')")
        return lambda rows: export.to_polars(rows, shape=checked)
    raise InvalidArgumentError(
        f"backend {backend!r} is not one of {', '.join(map(repr, BACKENDS))}"
    )


@dataclass(slots=True)
class _Stop:
    """The scope of one call (all its assets) and the first error that stopped it."""

    scope: anyio.CancelScope
    fatal: BaseException | None = None

    def stop(self, error: BaseException) -> None:
        if self.fatal is None:
            self.fatal = error
        self.scope.cancel()


@dataclass(slots=True)
class _Outcome:
    """What one request's pieces came to: rows by piece index, and the failed ones."""

    pieces: list[_Piece] = field(default_factory=list)
    rows: dict[int, list[LiquidationRow]] = field(default_factory=dict)
    failed: list[FailedRange] = field(default_factory=list)

    def result(self, req: _Request) -> list[LiquidationRow]:
        """The merged rows in ``req.sort`` order, or an IncompleteFetchError."""
        if self.failed:
            failed = sorted(self.failed, key=lambda f: f.start)
            done = [(p.shard.start, p.shard.end) for p in self.pieces if p.shard.index in self.rows]
            raise IncompleteFetchError(req.asset, failed, done)
        order = self.pieces if req.sort == "asc" else self.pieces[::-1]
        rows: list[LiquidationRow] = []
        previous: LiquidationRow | None = None
        for piece in order:
            chunk = self.rows[piece.shard.index]
            if chunk and previous is not None:
                _check_boundary(previous, chunk[0], req.asset, req.sort)
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


def _check_boundary(before: LiquidationRow, after: LiquidationRow, asset: str, sort: str) -> None:
    a, b = before.interval_time, after.interval_time
    if (b <= a) if sort == "asc" else (b >= a):
        raise InconsistentDataError(
            f"rows at a shard boundary repeat or go out of order: {format_time(a)} then "
            f"{format_time(b)}",
            page_url("", asset),
        )


@dataclass(slots=True)
class _Slot:
    """One piece's result, filled by its task and read by the consumer in order."""

    piece: _Piece
    done: anyio.Event
    rows: list[LiquidationRow] | None = None
    error: Exception | None = None


class RowStream(RowIterator):
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
        self._started = False
        super().__init__()
        self._slots: list[_Slot] = []

    def __repr__(self) -> str:
        return (
            f"RowStream(asset={self._req.asset!r}, start={format_time(self._req.start)!r}, "
            f"end={format_time(self._req.end)!r}, shards={len(self._req.shards)})"
        )

    def _before_next(self) -> None:
        # Once the generator has raised it would only say "exhausted", and a closed
        # stream must never look like a complete range.
        self._check_not_closed()

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
        self._client._streams.add(self)
        try:
            pieces = await self._client._pieces(req)
        except BaseException:
            self._client._streams.discard(self)  # the finally below is not reached yet
            raise
        order = pieces if req.sort == "asc" else pieces[::-1]
        slots = self._slots = [_Slot(piece, anyio.Event()) for piece in order]
        permits = anyio.Semaphore(self._window)
        self._task = asyncio.get_running_loop().create_task(self._produce(slots, permits))
        previous: LiquidationRow | None = None
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
                        req.asset,
                        [FailedRange(shard.start, shard.end, slot.error)],
                        done,
                        pending=pending,
                    ) from slot.error
                if slot.rows is None:
                    raise ClientClosedError("the stream's fetch was cancelled before it finished")
                rows, slot.rows = slot.rows, None
                permits.release()
                if rows and previous is not None:
                    _check_boundary(previous, rows[0], req.asset, req.sort)
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
                slot.rows = await self._client._load(self._req, slot.piece)
            except Exception as exc:
                # Handed to the consumer, which raises it in order; nothing is dropped.
                slot.error = exc
            finally:
                slot.done.set()

        async with anyio.create_task_group() as tg:
            for slot in slots:
                await permits.acquire()
                tg.start_soon(run, slot)
