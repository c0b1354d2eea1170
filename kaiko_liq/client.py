"""LiquidationClient: the library's facade, a fetch that equals one plain query.

The client checks its arguments once, turns each call into a typed request of a route
(:mod:`kaiko_liq.routes`: token volumes, :mod:`~kaiko_liq.routes.token`; liquidation
events, :mod:`~kaiko_liq.routes.events`) and hands it to the fetch engine
(:mod:`kaiko_liq.engine`): the window is cut into shards by the route's policy, the
shards are fetched concurrently under one limiter (:mod:`kaiko_liq.transport`), each
follows its page chain to the end, and the rows are handed back in the requested order,
checked by the route so that none can repeat or go missing at a boundary unnoticed.

With ``cache_dir`` a window is cut into *pieces* instead: settled spans the store
(:mod:`kaiko_liq.cache`) already holds are read from it, settled spans it lacks are
fetched and added to it, and rows not settled yet are fetched and never stored. The
answer is the same rows either way. What "settled" means is the client's one rule,
:meth:`LiquidationClient.final_before`.

Example, against the built-in emulator::

    async with running_emulator() as emu:
        async with LiquidationClient(base_url=emu.base_url) as client:
            rows = await client.fetch("eth", "2025-02-01", "2025-03-01", interval="4h")
            frame = await client.fetch_frame(["btc", "eth"], "2025-02-01", "2025-03-01")
            events = await client.fetch_events(
                "binc", "perpetual-future", "btc-usdt", "2025-02-01", "2025-02-02"
            )
            async for row in client.stream("btc", "2025-01-08", "2026-01-08"):
                ...
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

import anyio

from .cache import server_identity
from .engine import Engine, Request, RowStream, Shelf
from .errors import ClientClosedError, InvalidArgumentError, redact_url, register_secret
from .fs import open_storage
from .keys import API_KEY_ENV, resolve_api_key
from .models import LiquidationEvent, LiquidationRow
from .optional import require_optional
from .plan import SubRange
from .protocol import REGIONS, check_base_url, region_base_url
from .query import (
    MAX_CONCURRENCY_RANGE,
    MAX_PAGE_SIZE,
    RATE_LIMIT_RANGE,
    Grid,
    TimeLike,
    Window,
    format_time,
    parse_duration,
    parse_interval,
    parse_rate_limit,
    parse_time,
    validate_asset,
    validate_max_concurrency,
    validate_page_size,
    validate_request,
    validate_sort,
    validate_window,
)
from .retry import RetryPolicy
from .routes import Route
from .routes.events import EVENTS, Instrument, parse_instrument, parse_instrument_spec
from .routes.token import TOKEN, Token
from .settle import RECHECK, SETTLE
from .transport import DEFAULT_MAX_RESPONSE_BYTES, ClientStats, Timeouts, Transport

if TYPE_CHECKING:
    from .live import Follow, OnRevision
    from .store import ShardStore
    from .tables import TableSpec

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

Row = TypeVar("Row")
Target = TypeVar("Target")

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
#: A clock difference with the server worth a warning (logged once per client).
CLOCK_WARNING = timedelta(minutes=1)


class LiquidationClient:
    """Async client of Kaiko's liquidation data: token-level volumes (:meth:`fetch`,
    :meth:`fetch_many`, :meth:`fetch_frame`, :meth:`stream`, :meth:`follow`) and
    liquidation events (:meth:`fetch_events`, :meth:`fetch_events_many`,
    :meth:`stream_events`, :meth:`fetch_events_frame`); every setting below applies to
    both.

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
        cache_dir: keep settled rows in a Parquet store under this directory, or under
            ``s3://bucket/prefix`` (one store per server and kind of rows: interval, or
            events), and fetch only what it lacks.
        max_response_bytes: the largest decompressed body accepted; a larger answer is
            :class:`~kaiko_liq.errors.ResponseTooLargeError`.
        now: our clock (default: the system's, UTC); tests inject one. Which rows
            have settled is judged on the earlier of it and the server's clock (the
            ``answer_time`` of its latest answer, or its ``Date`` header); see
            :meth:`final_before`.
        settle: how long after a bucket closes (an event happens) it counts as final
            (default 1 h; a ``timedelta`` or ``"90m"``, ``"2h"``). Only final rows are
            stored; later ones are fetched every time.
        recheck: how far back from the newest stored row every fetch that touches it
            fetches again and replaces what changed (default 24 h; at most one page of
            buckets, an hour of events; ``0`` turns it off): rows a server revised
            after they were stored. A recheck that fails is logged and the stored rows
            are served.
        cache_namespace: the name of this server's store under ``cache_dir`` (default:
            its origin). The built-in emulator gets a fixed one, since it listens on a
            new port each time but serves the same settled data.
        storage_options: S3 settings for an ``s3://`` ``cache_dir`` (names as polars
            spells them: ``endpoint_url``, ``region``, ``aws_access_key_id``, ...; see
            :data:`kaiko_liq.fs.STORAGE_OPTIONS`); the standard AWS environment otherwise.
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
        recheck: timedelta | str | int = RECHECK,
        storage_options: Mapping[str, Any] | None = None,
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
        if cache_dir is not None and not os.fspath(cache_dir).strip():
            # '' would be the current directory: a store dropped wherever the caller runs.
            raise InvalidArgumentError(
                f"cache_dir {os.fspath(cache_dir)!r} is empty: it must name a directory, "
                "e.g. cache_dir='kaiko-cache', '.' for this one, or 's3://bucket/prefix'"
            )
        if cache_dir is not None:
            # Checked now: found missing at the first write, it would fail a good answer.
            require_optional("pyarrow.parquet", "cache_dir", extra="parquet")
            open_storage(cache_dir, storage_options=storage_options)  # options checked now
        elif storage_options:
            raise InvalidArgumentError("storage_options apply to cache_dir; give one or drop them")
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
        self._storage_options = dict(storage_options or {})
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
        # Cancelled by aclose: a follow waits under one, and wakes to raise.
        self._wakers: set[anyio.CancelScope] = set()
        self._stores: dict[str, ShardStore[Any, Any]] = {}
        self._stores_lock = anyio.Lock()
        # Whose data a store holds: the base URL normalised, so spellings of one server
        # share a store (and its manifest agrees with its folder).
        self._server = (
            server_identity(base) if cache_namespace is None else f"namespace:{cache_namespace}"
        )
        self._clock_warned = False
        self._engine = Engine(
            self._transport,
            store_for=self._store_for,
            horizon=self.final_before,
            check_open=self._check_open,
            recheck=self.recheck,
        )

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
        """Whose data a store of this client holds: the base URL as
        :func:`~kaiko_liq.cache.server_identity` normalises it, or the cache namespace
        (the built-in emulator's, whose port changes from run to run)."""
        return self._server

    @property
    def revised(self) -> int:
        """Stored rows this client found changed by the server and replaced (see
        ``recheck``): buckets for volumes."""
        return self._engine.revised

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
        """Buckets of ``interval`` starting before this are final:
        ``row.interval_time < client.settled_before(interval)`` tells a final row from
        one the server may still change. :meth:`final_before` for token volumes."""
        # The horizon depends on the interval only, not on the asset.
        return self.final_before(TOKEN, Token("", parse_interval(interval)))

    def final_before(self, route: Route[Any, Any], target: Any) -> datetime:
        """Rows of ``target`` before this are final: the one rule, used by the cache,
        ``backfill``, ``follow`` and the CLI. A row is final :attr:`settle` (plus a small
        margin) after its span closed (a bucket's end, an event's time) on the earlier
        of our clock and the server's, as its latest answer gave it
        (:meth:`~kaiko_liq.routes.Route.horizon`)."""
        return route.horizon(target, self.judged_now(), self.settle)

    def judged_now(self) -> datetime:
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
        await self._engine.aclose()
        await self._transport.aclose()
        for scope in list(self._wakers):
            scope.cancel()

    def _check_open(self) -> None:
        if self._transport.closed:
            raise ClientClosedError(ClientClosedError.CLIENT_CLOSED)

    check_open = _check_open

    @property
    def page_size(self) -> int:
        """Rows per page asked for when a call gives no ``page_size``."""
        return self._page_size

    @contextmanager
    def cancelled_on_close(self) -> Iterator[anyio.CancelScope]:
        """A cancel scope that :meth:`aclose` cancels: work that waits (a follow between
        polls) is cut short when the client closes, instead of at its next poll.
        :class:`ClientClosedError` if the client is closed already."""
        with anyio.CancelScope() as scope:
            self._wakers.add(scope)
            try:
                self._check_open()
                yield scope
            finally:
                self._wakers.discard(scope)

    # -- the edge: arguments in, typed requests out ---------------------------------

    def _window(
        self,
        start: TimeLike,
        end: TimeLike,
        sort: str,
        page_size: int | None,
        *,
        grid: Grid | None = None,
    ) -> Window:
        lo, hi = parse_time(start, "start"), parse_time(end, "end")
        validate_window(lo, hi)
        order = validate_sort(sort)
        size = self._page_size if page_size is None else validate_page_size(page_size)
        return Window(lo, hi, order, size)

    def _token(
        self,
        asset: str,
        start: TimeLike,
        end: TimeLike,
        interval: str,
        sort: str,
        page_size: int | None,
    ) -> Request[Token, LiquidationRow]:
        req = validate_request(asset, start, end, interval=interval, sort=sort, page_size=page_size)
        size = self._page_size if req.page_size is None else req.page_size
        window = Window(req.start, req.end, validate_sort(sort), size)
        return self._engine.request(TOKEN, Token(req.asset, req.interval), window)

    def _events(
        self,
        exchange: str,
        instrument_class: str,
        instrument: str,
        start: TimeLike,
        end: TimeLike,
        sort: str,
        page_size: int | None,
    ) -> Request[Instrument, LiquidationEvent]:
        target = parse_instrument(exchange, instrument_class, instrument)
        return self._engine.request(EVENTS, target, self._window(start, end, sort, page_size))

    def request(
        self,
        route: Route[Target, Row],
        target: Target,
        start: TimeLike,
        end: TimeLike,
        *,
        sort: str = "asc",
        page_size: int | None = None,
    ) -> Request[Target, Row]:
        """A validated, planned request of any route (``target`` already typed: a
        :class:`~kaiko_liq.routes.token.Token`, an
        :class:`~kaiko_liq.routes.events.Instrument`): what callers that schedule shards
        themselves (:func:`kaiko_liq.backfill.backfill`) work from."""
        return self._engine.request(route, target, self._window(start, end, sort, page_size))

    async def fetch_part(
        self, req: Request[Any, Row], shard: SubRange, *, sort: str | None = None
    ) -> list[Row]:
        """The rows of one shard of ``req`` (from ``req.shards``, or any sub-window of
        it), fetched by the route's policy in ``sort`` order (default the request's). Not
        cached; an error is raised as itself, not wrapped in
        :class:`IncompleteFetchError`."""
        if not isinstance(shard, SubRange) or not shard.start < shard.end:
            raise InvalidArgumentError(f"shard must be a SubRange with start < end, got {shard!r}")
        self._check_open()
        order = req.window.sort if sort is None else validate_sort(sort)
        route = req.route
        return await route.policy.fetch(
            self._transport, route, req.target, shard, order, req.window.page_size
        )

    async def fetch_requests(
        self,
        reqs: Sequence[Request[Any, Row]],
        *,
        on_shard: Callable[[Request[Any, Row], SubRange], None] | None = None,
    ) -> list[list[Row]]:
        """Several requests of :meth:`request` at once, under the one limiter: each one's
        rows in its order, failures as :meth:`fetch_many`'s. For callers that checked
        their arguments already (the CLI): nothing is parsed again."""
        reports = [None if on_shard is None else _for_request(on_shard, r) for r in reqs]
        return await self._engine.fetch_many(reqs, reports)

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
        return self._token(asset, start, end, interval, "asc", page_size).shards

    async def _store_for(self, route: Route[Any, Any], target: Any) -> Shelf[Any] | None:
        """``target``'s shelf of the cache, found once per kind of rows (route folder)
        in a worker thread: finding it reads the location (S3's head, list and get
        block), which must not hold up the loop."""
        if self.cache_dir is None:
            return None
        folder = route.store_folder(target)
        store = self._stores.get(folder)
        if store is None:
            async with self._stores_lock:  # concurrent requests find it once
                store = self._stores.get(folder)
                if store is None:
                    store = await anyio.to_thread.run_sync(self._open_store, route, target)
                    self._stores[folder] = store
        return store.shelf(target)

    def _open_store(self, route: Route[Any, Any], target: Any) -> ShardStore[Any, Any]:
        from .cache import cache_store

        assert self.cache_dir is not None
        return cache_store(
            self.cache_dir,
            self.base_url,
            route,
            target,
            namespace=self._cache_namespace,
            storage_options=self._storage_options,
        )

    # -- token volumes ----------------------------------------------------------------

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
        req = self._token(asset, start, end, interval, sort, page_size)
        return await self._engine.fetch(req, on_shard)

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
        """:meth:`fetch` for several assets at once: ``{asset: rows}`` in the order given.

        Every asset's shards run concurrently under the client's one limiter, and every
        argument is checked before anything is sent. A failure every shard would hit (an
        unknown asset's 404, a wrong key) stops the whole call and is raised as itself,
        its message naming the asset; shards that failed after their retries are raised
        at the end as that asset's :class:`IncompleteFetchError`, or, when several assets
        have them, as one :class:`FetchManyIncompleteError` naming each.

        ``on_shard(asset, shard)`` is called as each shard of :meth:`plan` completes.
        """
        given = _asset_list(assets)
        reqs = [self._token(a, start, end, interval, sort, page_size) for a in given]
        reports = [None if on_shard is None else _for_asset(on_shard, r.label) for r in reqs]
        rows = await self._engine.fetch_many(reqs, reports)
        return dict(zip(given, rows, strict=True))

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
        convert = _converter(TOKEN.table, backend, shape)
        rows = await self.fetch_many(
            assets, start, end, interval=interval, sort=sort, page_size=page_size
        )
        # A year of several assets is a second of conversion: keep the loop responsive.
        # The asset column holds the codes as sent (lower case), however they were given.
        by_key: dict[tuple[str, ...], list[Any]] = {
            (validate_asset(a),): r for a, r in rows.items()
        }
        return await anyio.to_thread.run_sync(convert, by_key)

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
        if not isinstance(shard, SubRange) or not shard.start < shard.end:
            raise InvalidArgumentError(
                f"shard must be a SubRange from client.plan() with start < end, got {shard!r}"
            )
        req = self._token(asset, shard.start, shard.end, interval, sort, page_size)
        return await self.fetch_part(req, shard)

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
    ) -> RowStream[LiquidationRow]:
        """The rows of ``[start, end)`` in ``sort`` order, as soon as all before them are in.

        At most ``window`` shards (default :data:`DEFAULT_STREAM_WINDOW`, at most
        ``max_concurrency``) are fetched ahead of the one being read, so memory stays
        O(window x page) whatever the range. Use it as
        ``async for row in client.stream(...)`` or, to bound its life explicitly,
        ``async with client.stream(...) as rows: async for row in rows``. Leaving early
        cancels what is in flight.
        """
        req = self._token(asset, start, end, interval, sort, page_size)
        return self._engine.stream(req, self._ahead(window))

    def _ahead(self, window: int | None) -> int:
        ahead = min(self.max_concurrency, DEFAULT_STREAM_WINDOW) if window is None else window
        if isinstance(ahead, bool) or not isinstance(ahead, int) or ahead < 1:
            raise InvalidArgumentError(f"window must be a positive integer, got {window!r}")
        return ahead

    # -- liquidation events -----------------------------------------------------------

    async def fetch_events(
        self,
        exchange: str,
        instrument_class: str,
        instrument: str,
        start: TimeLike,
        end: TimeLike,
        *,
        sort: str = "desc",
        page_size: int | None = None,
        on_shard: Callable[[SubRange], None] | None = None,
    ) -> list[LiquidationEvent]:
        """Every liquidation event of one instrument in ``[start, end)``, in ``sort``
        order (by time; events sharing a millisecond in the server's order), exactly as
        one query paged to its end would return them.

        ``instrument_class`` is ``"future"`` or ``"perpetual-future"``. Days are fetched
        concurrently, and a dense day is split as it is fetched (see
        :mod:`kaiko_liq.sharding`); ``on_shard`` is called as each day completes. Raises
        :class:`IncompleteFetchError` naming what is missing if any part failed."""
        req = self._events(exchange, instrument_class, instrument, start, end, sort, page_size)
        return await self._engine.fetch(req, on_shard)

    async def fetch_events_many(
        self,
        instruments: Iterable[str | Instrument],
        start: TimeLike,
        end: TimeLike,
        *,
        sort: str = "desc",
        page_size: int | None = None,
        on_shard: Callable[[str, SubRange], None] | None = None,
    ) -> dict[str, list[LiquidationEvent]]:
        """:meth:`fetch_events` for several instruments at once, all under the client's
        one limiter: ``{"binc:perpetual-future:btc-usdt": events, ...}`` in the order
        given. ``instruments`` are :class:`~kaiko_liq.routes.events.Instrument` or
        ``"EXCHANGE:CLASS:INSTRUMENT"`` strings, each checked before anything is sent;
        failures as :meth:`fetch_many`'s. ``on_shard(instrument, day)`` as each day
        completes."""
        targets = _instrument_list(instruments)
        window = self._window(start, end, sort, page_size)
        reqs = [self._engine.request(EVENTS, t, window) for t in targets]
        reports = [None if on_shard is None else _for_asset(on_shard, r.label) for r in reqs]
        rows = await self._engine.fetch_many(reqs, reports)
        return {str(t): r for t, r in zip(targets, rows, strict=True)}

    def stream_events(
        self,
        exchange: str,
        instrument_class: str,
        instrument: str,
        start: TimeLike,
        end: TimeLike,
        *,
        sort: str = "desc",
        page_size: int | None = None,
        window: int | None = None,
    ) -> RowStream[LiquidationEvent]:
        """:meth:`fetch_events` one event at a time, a day (``window`` days) ahead at
        most, as :meth:`stream` does for volumes."""
        req = self._events(exchange, instrument_class, instrument, start, end, sort, page_size)
        return self._engine.stream(req, self._ahead(window))

    async def fetch_events_frame(
        self,
        exchange: str,
        instrument_class: str,
        instrument: str,
        start: TimeLike,
        end: TimeLike,
        *,
        sort: str = "asc",
        page_size: int | None = None,
        backend: str = "pandas",
    ) -> Any:
        """:meth:`fetch_events` as one DataFrame (or Arrow table): ``backend`` is
        ``"pandas"``, ``"polars"`` or ``"arrow"``; columns ``exchange``,
        ``instrument_class``, ``instrument``, then the event's (``time`` a UTC
        timestamp). The backend's package is checked before anything is fetched."""
        convert = _converter(EVENTS.table, backend, None)
        req = self._events(exchange, instrument_class, instrument, start, end, sort, page_size)
        rows = await self._engine.fetch(req)
        key = tuple(EVENTS.path_params(req.target).values())
        by_key: dict[tuple[str, ...], list[Any]] = {key: rows}
        return await anyio.to_thread.run_sync(convert, by_key)

    def follow(
        self,
        asset: str,
        *,
        interval: str = "1h",
        since: TimeLike | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        on_revision: OnRevision | None = None,
    ) -> Follow:
        """Rows from ``since`` (default: the last day), then each new bucket as soon as it
        settles, for ever: an async iterator (see :mod:`kaiko_liq.live`). Transient
        failures are retried with backoff indefinitely; others are raised. ``sleep``
        (default ``anyio.sleep``) is how it waits; tests pass one that moves their clock
        (the client's ``now``). ``on_revision`` is called with a
        :class:`~kaiko_liq.live.Revision` for each bucket the server changed after it
        was handed out (found by re-reading the last ``recheck`` on every poll); without
        it they are logged as warnings. The iterator never repeats a bucket."""
        from .live import Follow

        return Follow(
            self, asset, interval=interval, since=since, sleep=sleep, on_revision=on_revision
        )


def _utc_now() -> datetime:
    return datetime.now(UTC)


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


def _instrument_list(instruments: Iterable[str | Instrument]) -> list[Instrument]:
    """Instruments or ``EX:CLASS:INSTR`` specs; refused when empty or given twice."""
    if isinstance(instruments, str | Instrument):
        instruments = [instruments]
    found: list[Instrument] = []
    for item in instruments:
        target = parse_instrument_spec(item)
        if target in found:
            raise InvalidArgumentError(f"instrument {target} is given twice; list each once")
        found.append(target)
    if not found:
        raise InvalidArgumentError(
            "no instrument given; pass one such as 'binc:perpetual-future:btc-usdt'"
        )
    return found


def _for_request(
    on_shard: Callable[[Request[Any, Row], SubRange], None], req: Request[Any, Row]
) -> Callable[[SubRange], None]:
    return lambda shard: on_shard(req, shard)


def _for_asset(on_shard: Callable[[str, SubRange], None], asset: str) -> Callable[[SubRange], None]:
    return lambda shard: on_shard(asset, shard)


def _converter(
    spec: TableSpec[Any], backend: str, shape: str | None
) -> Callable[[dict[tuple[str, ...], list[Any]]], Any]:
    """The conversion to ``backend``, its package checked now, before a fetch."""
    from . import tables
    from .optional import import_optional

    chosen = spec.shape(shape).name
    if backend == "arrow":
        import_optional("pyarrow", "backend='arrow'", extra="parquet")
        return lambda rows: tables.to_arrow(spec, rows, shape=chosen)
    if backend == "pandas":
        import_optional("pandas", "backend='pandas'")
        import_optional("pyarrow", "backend='pandas'", extra="pandas")
        return lambda rows: tables.to_pandas(spec, rows, shape=chosen)
    if backend == "polars":
        import_optional("polars", "backend='polars'")
        return lambda rows: tables.to_polars(spec, rows, shape=chosen)
    raise InvalidArgumentError(
        f"backend {backend!r} is not one of {', '.join(map(repr, BACKENDS))}"
    )
