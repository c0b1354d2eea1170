"""Reading an events request into an :class:`EventQuery`, or a 400 / 404 that names the problem.

Pure. The rules are the events endpoint's doc (``KAIKO_API.md``, "A second liquidation
endpoint: events"): ``instrument_class`` ``future`` or ``perpetual-future``; ``start_time``
inclusive and ``end_time`` exclusive in ISO 8601, to the millisecond (events are stamped
in milliseconds); ``sort`` ``asc``/``desc`` (default ``desc``); ``page_size`` 1 to 1000
(default 100). A missing ``start_time`` means the start of the data, a missing
``end_time`` now (the emulator's clock), as on the token route.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from .errors import Rejection
from .events import INSTRUMENT_CLASSES, INSTRUMENTS, KEYS_PER_MS, Instrument, find_instrument
from .grid import DATA_START_S, SORTS, ParamError, format_ms, ms_ceil, parse_iso_time
from .params import parse_page_size

__all__ = ["EventQuery", "parse_event_query", "resolve_instrument"]


class EventQuery(msgspec.Struct, frozen=True, array_like=True):
    """Everything an events query asked for; a continuation token carries it whole.

    ``query_start_time`` / ``query_end_time`` are the caller's strings, echoed verbatim;
    ``start_ms`` / ``end_ms`` the window ``[start, end)`` in epoch milliseconds.
    """

    exchange: str
    instrument_class: str
    instrument: str
    sort: str
    page_size: int
    query_start_time: str
    query_end_time: str
    start_ms: int
    end_ms: int

    @property
    def descending(self) -> bool:
        return self.sort == "desc"

    @property
    def first_position(self) -> int:
        """The cursor of the first page (a key, see :data:`.events.KEYS_PER_MS`): the
        window's far end in serving order."""
        return (self.end_ms if self.descending else self.start_ms) * KEYS_PER_MS

    @property
    def path(self) -> tuple[str, str, str]:
        return (self.exchange, self.instrument_class, self.instrument)


def resolve_instrument(exchange: str, instrument_class: str, code: str) -> Instrument:
    """The instrument of a request's path (any case), or a 404 listing those served."""
    exchange, instrument_class, code = exchange.lower(), instrument_class.lower(), code.lower()
    found = find_instrument(exchange, instrument_class, code)
    if found is not None:
        return found
    served = ", ".join(str(i) for i in INSTRUMENTS)
    why = ""
    if instrument_class not in INSTRUMENT_CLASSES:
        why = f"instrument_class must be {' or '.join(INSTRUMENT_CLASSES)}; "
    raise Rejection(
        404,
        f"Unknown instrument {exchange}:{instrument_class}:{code}; {why}"
        f"this emulator serves (exchange:instrument_class:instrument) {served}",
    )


def parse_event_query(
    instrument: Instrument, params: Mapping[str, str], *, now_ms: int
) -> EventQuery:
    """Validate the parameters of a first events request (one without a token).

    ``now_ms`` (epoch milliseconds) is the end of the window when none is given.
    """
    try:
        sort = params.get("sort", "desc")
        if sort not in SORTS:
            raise ParamError(f"sort {sort!r} is not allowed; use asc or desc")
        page_size = parse_page_size(params.get("page_size"))
        start_text = params.get("start_time", format_ms(DATA_START_S * 1000))
        end_text = params.get("end_time", format_ms(now_ms))
        start = parse_iso_time(start_text, "start_time")
        end = parse_iso_time(end_text, "end_time")
    except ParamError as exc:
        raise Rejection(400, str(exc)) from None
    if start >= end:
        raise Rejection(
            400,
            f"start_time {start_text!r} is not before end_time {end_text!r}; "
            "the window is [start_time, end_time)",
        )
    return EventQuery(
        exchange=instrument.exchange,
        instrument_class=instrument.instrument_class,
        instrument=instrument.code,
        sort=sort,
        page_size=page_size,
        query_start_time=start_text,
        query_end_time=end_text,
        start_ms=ms_ceil(start),
        end_ms=ms_ceil(end),
    )
