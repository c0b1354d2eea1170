"""The aiohttp application: one route, ``GET /v2/data/liquidation.v1/token/{asset}``.

A request goes through these steps, in this order (the order is part of the contract):

1. **latency** - sleep ``latency`` + jitter: it models the round trip, so every request
   on the route pays it, errors included;
2. **auth** - ``X-Api-Key`` missing, empty or (with ``api_key`` set) wrong: 401;
3. **rate limit** - per key; over it: 429 ``Rate limit reached`` (``Retry-After`` only
   with ``retry_after``: Kaiko documents none);
4. **faults** - with probability ``fault_rate``: a 5xx, a dropped connection, or a body
   cut short (see :mod:`.faults`); rate-limited requests never reach this step;
5. **asset** - unknown: 404;
6. **query** - from the continuation token if there is one (other parameters are then
   ignored), else from the parameters: a bad one is a 400 naming it;
7. **answer** - the page, msgspec-encoded, gzipped when the client accepts gzip (the
   rows of a page are compressed once and cached, see :mod:`.compression`).

Every error body is ``{"result": "error", "message": ...}``, unknown routes included.

The events route (:mod:`.events_route`) goes through the same steps, its instrument in
place of the asset (step 5) and its own query (step 6).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from email.utils import format_datetime

from aiohttp import web

from ..models import encode_rows
from .answer import PageAnswer
from .compression import GzipAssembler, gzip_bytes
from .config import EmulatorConfig
from .data import ASSETS
from .envelope import encode_page
from .errors import Rejection, error_body
from .events_route import EVENTS_ROUTE, EventsRoute
from .faults import FAULT_MESSAGES, Fault, FaultInjector, Latency
from .paging import PageSlice, slice_page
from .params import Query, parse_query
from .ratelimit import Clock, KeyedRateLimiter
from .stats import DROPPED, EmulatorStats
from .tokens import TokenCodec

__all__ = ["CONFIG_KEY", "EVENTS_ROUTE", "ROUTE", "STATS_KEY", "create_app"]

ROUTE = "/v2/data/liquidation.v1/token/{asset}"
CONFIG_KEY = web.AppKey("kaiko_liq.emulator.config", EmulatorConfig)
STATS_KEY = web.AppKey("kaiko_liq.emulator.stats", EmulatorStats)

#: Counted when the client went away before its answer (nginx's convention).
CLIENT_CLOSED = 499
_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Vary": "Accept-Encoding"}
_GZIP_HEADERS = {**_HEADERS, "Content-Encoding": "gzip"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Dropped(Exception):
    """The handler closed the connection on purpose; there is no response to send."""


def _wire_form(request: web.Request, body: bytes) -> tuple[bytes, dict[str, str]]:
    """The body as sent (gzipped when the client accepts gzip) and its headers."""
    if _accepts_gzip(request):
        return gzip_bytes(body), dict(_GZIP_HEADERS)
    return body, dict(_HEADERS)


def _respond(
    request: web.Request, status: int, body: bytes, extra: Mapping[str, str] | None = None
) -> web.Response:
    wire, headers = _wire_form(request, body)
    headers.update(extra or {})
    return web.Response(status=status, body=wire, headers=headers)


def _accepts_gzip(request: web.Request) -> bool:
    """``gzip`` is listed in Accept-Encoding and not refused with ``q=0``."""
    for item in request.headers.get("Accept-Encoding", "").split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            q = params.strip().replace(" ", "")
            return q not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class _Emulator:
    """The state behind one application: config, counters, limiter, fault stream."""

    def __init__(self, config: EmulatorConfig, clock: Clock) -> None:
        self.config = config
        self.stats = EmulatorStats()
        self._latency = Latency(config.latency, config.jitter, config.seed)
        self._faults = FaultInjector(config.fault_rate, config.seed)
        self._tokens = TokenCodec(config.seed, Query)
        self._gzip = GzipAssembler()
        self._events = EventsRoute(config)
        rate = config.requests_per_second
        self._limiter = None if rate is None else KeyedRateLimiter(rate, clock=clock)

    def _gzips(self, request: web.Request) -> bool:
        """Whether this page answer goes gzipped (the config allows, the client accepts)."""
        return self.config.gzip and _accepts_gzip(request)

    @web.middleware
    async def observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count every request and its outcome; make framework errors JSON too."""
        self.stats.started()
        status = CLIENT_CLOSED  # stays so if the handler is cancelled (client went away)
        try:
            response = await handler(request)
            status = response.status
            if not response.prepared:
                # HTTP's Date is the server's clock (RFC 9110), the one answer_time gives.
                response.headers["Date"] = format_datetime(self.config.clock(), usegmt=True)
            return response
        except web.HTTPException as exc:  # unknown route, wrong method...
            status = exc.status
            return _respond(request, exc.status, error_body(exc.reason))
        except _Dropped:
            status = DROPPED
            # Nothing reaches the client: the transport is closed. aiohttp notices the
            # closed transport when it tries to send this, and drops it quietly.
            return web.Response(status=500)
        finally:
            self.stats.finished(status)

    async def liquidations(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._token_answer)

    def _token_answer(self, request: web.Request, request_time: datetime) -> PageAnswer:
        """The token route's page: steps 5 to 7 (asset, query, answer)."""
        query, position = self._query(request, request_time)
        head, page, tail = self._page(request, query, position, request_time)
        rows = page.rows
        key: tuple[object, ...] | None = None
        if page.final:  # figures still filling: this page's bytes are not for keeping
            # A page's rows never change: its first and last buckets and its length say
            # which rows they are, so they are compressed once (see compression.py).
            key = (query.asset, query.seconds, query.sort, len(rows))
            if rows:
                key += (rows[0].interval_timestamp, rows[-1].interval_timestamp)
        return PageAnswer(head, lambda: encode_rows(rows), tail, key)

    async def liquidation_events(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._events.answer)

    async def _serve(
        self, request: web.Request, answer: Callable[[web.Request, datetime], PageAnswer]
    ) -> web.StreamResponse:
        """Steps 1 to 7 (see the module docstring) around a route's ``answer``."""
        request_time = self.config.clock()
        delay = self._latency.draw()
        if delay > 0:
            await asyncio.sleep(delay)
        truncate = False
        try:
            self._rate_limit(self._authenticate(request))
            truncate = self._inject_fault(request)
            page = answer(request, request_time)
        except Rejection as rejection:
            body = error_body(rejection.message)
            if truncate:
                return await _send_truncated(request, rejection.status, body)
            return _respond(request, rejection.status, body, rejection.headers)
        if truncate:
            return await _send_truncated(request, 200, page.head + page.rows() + page.tail)
        if not self._gzips(request):
            return web.Response(body=page.head + page.rows() + page.tail, headers=_HEADERS)
        if page.key is None:
            body = gzip_bytes(page.head + page.rows() + page.tail)
        else:
            body = self._gzip.assemble(page.head, page.key, page.rows, page.tail)
        return web.Response(body=body, headers=_GZIP_HEADERS)

    def _inject_fault(self, request: web.Request) -> bool:
        """Maybe fail: raise for a 5xx or a drop; ``True`` when the body is to be cut."""
        fault = self._faults.draw()
        if fault is None:
            return False
        self.stats.faults[fault.value] += 1
        if fault is Fault.DROP:
            if request.transport is not None:
                request.transport.close()
            raise _Dropped
        if fault.status is not None:
            raise Rejection(fault.status, FAULT_MESSAGES[fault])
        return True  # TRUNCATE: cut short whatever answer the request gets

    def _authenticate(self, request: web.Request) -> str:
        key = request.headers.get("X-Api-Key", "").strip()
        if not key:
            raise Rejection(401, "Missing API key: send it in the X-Api-Key header")
        expected = self.config.api_key
        if expected is not None and key != expected:
            raise Rejection(401, "Invalid API key")  # never echo the key
        return key

    def _rate_limit(self, key: str) -> None:
        if self._limiter is None:
            return
        wait = self._limiter.acquire(key)
        if wait > 0:
            headers = {}
            if self.config.retry_after:
                # Whole seconds, at least 1: Retry-After takes no fractions (RFC 9110).
                headers["Retry-After"] = str(max(1, math.ceil(wait)))
            raise Rejection(429, "Rate limit reached", headers)

    def _query(self, request: web.Request, now: datetime) -> tuple[Query, int]:
        asset = request.match_info["asset"].lower()
        if asset not in ASSETS:
            raise Rejection(
                404, f"Unknown asset {asset!r}; this emulator serves {', '.join(ASSETS)}"
            )
        token = request.query.get("continuation_token")
        if token is None:
            query = parse_query(asset, request.query, now=math.ceil(now.timestamp()))
            return query, query.first_position
        query, position = self._tokens.decode(token)
        if query.asset != asset:
            raise Rejection(
                400,
                f"continuation_token was issued for asset {query.asset!r}, "
                f"not {asset!r}; follow next_url exactly as received",
            )
        return query, position

    def _page(
        self, request: web.Request, query: Query, position: int, request_time: datetime
    ) -> tuple[bytes, PageSlice, bytes]:
        """The page at ``position``: its rows, and the JSON before and after them."""
        cap = self.config.page_cap
        now = request_time.timestamp()
        page = slice_page(
            query.asset,
            query.seconds,
            data_start=query.data_start,
            data_end=query.data_end,
            position=position,
            descending=query.descending,
            limit=query.page_size if cap is None else min(cap, query.page_size),
            now=now,
            settle=self.config.settle_seconds,
            seed=self.config.seed,
            empty_last_page=self.config.empty_last_page,
            paging=self.config.paging,
        )
        token = next_url = None
        if page.next_position is not None:
            token = self._tokens.encode(query, page.next_position)
            # Absolute, from the request's own scheme and host, and nothing but the token.
            next_url = str(request.url.with_query({"continuation_token": token}))
        head, tail = encode_page(
            query,
            page,
            request_time=request_time,
            answer_time=self.config.clock(),
            continuation_token=token,
            next_url=next_url,
        )
        return head, page, tail


async def _send_truncated(request: web.Request, status: int, body: bytes) -> web.StreamResponse:
    """Promise the whole body in Content-Length, send half of it, then close."""
    wire, headers = _wire_form(request, body)
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = len(wire)
    response.force_close()  # no keep-alive: the connection ends after the short body
    await response.prepare(request)
    await response.write(wire[: len(wire) // 2])
    return response


def create_app(
    config: EmulatorConfig | None = None, *, clock: Clock = time.monotonic
) -> web.Application:
    """An aiohttp application serving the emulated endpoint.

    ``clock`` is the rate limiter's (monotonic seconds); tests inject a fake one.
    ``app[STATS_KEY]`` holds the :class:`EmulatorStats`, ``app[CONFIG_KEY]`` the config.
    """
    emulator = _Emulator(config or EmulatorConfig(), clock)
    app = web.Application(middlewares=[emulator.observe])
    app[CONFIG_KEY] = emulator.config
    app[STATS_KEY] = emulator.stats
    app.router.add_get(ROUTE, emulator.liquidations)
    app.router.add_get(EVENTS_ROUTE, emulator.liquidation_events)
    return app
