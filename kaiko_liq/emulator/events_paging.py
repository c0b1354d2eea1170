"""Which events a page holds, which window of time it covers, and where the next starts.

Pure: no I/O; the clock comes in as ``now_ms``. A cursor, ``position``, is a key
(``timestamp * KEYS_PER_MS + rank``, see :mod:`.events`): in ascending order the events
still to serve are those at or after it, in descending order those before it. A key can
stop a page inside a millisecond, which the doc leaves open, so the emulator does it
whenever a page fills there.

The two readings of ``page_size`` (``KAIKO_API.md``, "Pagination"), as on the token route:

* ``rows``: a page takes the next ``limit`` events from the cursor;
* ``time``: a page covers the next ``limit`` minutes (:data:`TIME_PAGE_MS` each) of the
  window, so a quiet stretch gives a short or empty page that still carries a cursor
  while time is left; it also holds at most ``limit`` events, cutting the stretch short
  where it holds more (events have no grid, so time alone would not bound a page).

A page's window (the envelope's ``start_time`` / ``end_time``, in milliseconds) runs from
its cursor to the next; where a cursor falls inside a millisecond, both pages name it.
``empty_last_page``: a full page (``limit`` events, or ``limit`` minutes) always carries
a cursor, even when nothing follows, so the last one leads to an empty page.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

from ..models import LiquidationEvent
from .events import KEYS_PER_MS, Instrument, iter_events

__all__ = ["TIME_PAGE_MS", "EventSlice", "slice_events"]

#: With ``paging="time"``, a page covers ``page_size`` of these (a minute each).
TIME_PAGE_MS = 60_000
_P = KEYS_PER_MS


@dataclass(frozen=True, slots=True)
class EventSlice:
    """One page: its events in serving order, the keys of its first and last event, its
    window (epoch milliseconds) and the next cursor."""

    events: list[LiquidationEvent]
    keys: tuple[int, int] | None
    start_ms: int
    end_ms: int
    next_position: int | None


def slice_events(
    instrument: Instrument,
    *,
    start_ms: int,
    end_ms: int,
    position: int,
    descending: bool,
    limit: int,
    now_ms: int,
    seed: int = 0,
    empty_last_page: bool = False,
    paging: str = "rows",
) -> EventSlice:
    """The page of ``limit`` events (or minutes, with ``paging="time"``) at ``position``
    of the window ``[start_ms, end_ms)``; events exist before ``now_ms`` only."""
    top = min(end_ms, now_ms) * _P
    if paging == "time":
        span = limit * TIME_PAGE_MS
        if descending:
            lo_ms, hi_ms = max(start_ms, -(-position // _P) - span), -(-position // _P)
            lo, hi = lo_ms * _P, min(position, top)
            reached, full = lo_ms == start_ms, hi_ms - lo_ms == span
        else:
            lo_ms, hi_ms = position // _P, min(end_ms, position // _P + span)
            lo, hi = position, min(hi_ms * _P, top)
            reached, full = hi_ms == end_ms, hi_ms - lo_ms == span
        edge = (lo_ms if descending else hi_ms) * _P
        rest = edge if not reached or (empty_last_page and full) else None
    else:
        lo, hi = (start_ms * _P, min(position, top)) if descending else (position, top)
        rest = None
    found = iter_events(instrument, lo, hi, descending=descending, seed=seed)
    taken = list(islice(found, limit))
    keys = [k for k, _ in taken]
    events = [e for _, e in taken]
    span_keys = (keys[0], keys[-1]) if keys else None
    if len(taken) == limit:
        peek = next(found, None)
        if peek is not None:  # cut short by the row limit: the next page starts at it
            rest = keys[-1] if descending else peek[0]
        elif paging == "rows" and empty_last_page:
            rest = keys[-1] if descending else (keys[-1] // _P + 1) * _P
    if descending:
        low = start_ms if rest is None else rest // _P
        return EventSlice(events, span_keys, low, -(-position // _P), rest)
    high = end_ms if rest is None else -(-rest // _P)
    return EventSlice(events, span_keys, position // _P, high, rest)
