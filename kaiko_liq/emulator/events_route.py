"""The events route, :data:`EVENTS_ROUTE` (Kaiko's "Derivative liquidation events").

The app runs latency, auth, rate limit and faults for it as for the token route (see
:mod:`.app`); this module turns what passes into a page: the instrument from the path
(unknown: a 404 listing those served), the query from the continuation token if there is
one (its instrument must be the path's; other parameters are then ignored), else from the
parameters, then the page (:mod:`.events_paging`) in the token route's envelope, with
this endpoint's path parameters echoed in ``query``.
"""

from __future__ import annotations

import math
from datetime import datetime

import msgspec
from aiohttp import web

from ..models import encode_events
from .answer import PageAnswer
from .config import EmulatorConfig
from .envelope import encode_around
from .errors import Rejection
from .events import Instrument
from .events_paging import EventSlice, slice_events
from .events_params import EventQuery, parse_event_query, resolve_instrument
from .grid import format_clock, format_ms
from .tokens import TokenCodec

__all__ = ["EVENTS_ROUTE", "EventsRoute"]

EVENTS_ROUTE = "/v2/data/liquidation.v1/trades/{exchange}/{instrument_class}/{instrument}"


class _EventsQueryBlock(msgspec.Struct):
    request_time: str
    query_start_time: str
    query_end_time: str
    start_time: str
    start_timestamp: int
    end_time: str
    end_timestamp: int
    page_size: int
    sort: str
    exchange: str
    instrument_class: str
    instrument: str
    commodity: str
    data_version: str


class EventsRoute:
    """Pages of the events route for one emulator (its config and token key)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self._tokens = TokenCodec(config.seed, EventQuery)

    def answer(self, request: web.Request, request_time: datetime) -> PageAnswer:
        """The page a request asks for; a :class:`Rejection` (400, 404) if it cannot be."""
        now_ms = math.ceil(request_time.timestamp() * 1000)
        instrument, query, position = self._query(request, now_ms)
        config = self._config
        cap = config.page_cap
        page = slice_events(
            instrument,
            start_ms=query.start_ms,
            end_ms=query.end_ms,
            position=position,
            descending=query.descending,
            limit=query.page_size if cap is None else min(cap, query.page_size),
            now_ms=now_ms,
            seed=config.seed,
            empty_last_page=config.empty_last_page,
            paging=config.paging,
        )
        token = next_url = None
        if page.next_position is not None:
            token = self._tokens.encode(query, page.next_position)
            # Absolute, from the request's own scheme and host, and nothing but the token.
            next_url = str(request.url.with_query({"continuation_token": token}))
        head, tail = encode_around(
            _block(query, page, request_time),
            answer_time=config.clock(),
            continuation_token=token,
            next_url=next_url,
        )
        events = page.events
        # An event never changes once it exists: a page's bytes are named by its events.
        key = ("events", *query.path, len(events), page.keys)
        return PageAnswer(head, lambda: encode_events(events), tail, key)

    def _query(self, request: web.Request, now_ms: int) -> tuple[Instrument, EventQuery, int]:
        info = request.match_info
        instrument = resolve_instrument(
            info["exchange"], info["instrument_class"], info["instrument"]
        )
        token = request.query.get("continuation_token")
        if token is None:
            query = parse_event_query(instrument, request.query, now_ms=now_ms)
            return instrument, query, query.first_position
        query, position = self._tokens.decode(token)
        if instrument.path != query.path:
            raise Rejection(
                400,
                f"continuation_token was issued for instrument {':'.join(query.path)}, "
                f"not {instrument}; follow next_url exactly as received",
            )
        return instrument, query, position


def _block(query: EventQuery, page: EventSlice, request_time: datetime) -> _EventsQueryBlock:
    return _EventsQueryBlock(
        request_time=format_clock(request_time),
        query_start_time=query.query_start_time,
        query_end_time=query.query_end_time,
        start_time=format_ms(page.start_ms),
        start_timestamp=page.start_ms,
        end_time=format_ms(page.end_ms),
        end_timestamp=page.end_ms,
        page_size=query.page_size,
        sort=query.sort,
        exchange=query.exchange,
        instrument_class=query.instrument_class,
        instrument=query.instrument,
        commodity="liquidationEvents",
        data_version="v1",
    )
