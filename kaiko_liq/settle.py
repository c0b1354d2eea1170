"""When data is final: the one home of the settlement rule.

Kaiko's docs do not say when a bucket's figures (or an event) stop changing; exchanges
report liquidations late at times. So "settled" is a policy with a setting, judged on the
earlier of our clock and the server's (:meth:`LiquidationClient.final_before`):

* a row is final :data:`SETTLE` after its span closed (a bucket's end; an event's time),
  plus :data:`CLOCK_MARGIN` for clocks that disagree a little;
* a store re-fetches its newest rows, :data:`RECHECK` back from the newest it holds, on
  every run that touches them, and replaces what the server revised since.

Only what has settled is stored: a bucket still filling, kept, would be short for ever.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .query import Grid

__all__ = ["CLOCK_MARGIN", "RECHECK", "SETTLE", "settled_horizon"]

#: How long after a bucket closes before it counts as settled: time for the provider to
#: finish aggregating it. Kaiko's docs do not say; an hour is what the emulator models.
SETTLE = timedelta(hours=1)
#: How far back from the newest stored bucket every run that touches it fetches again,
#: to catch figures the server revised after we stored them (one page per asset).
RECHECK = timedelta(hours=24)
#: How far our clock may run ahead of the server's. A bucket stored as settled is kept
#: for ever, so one stored by a clock a few seconds fast would stay short for ever.
CLOCK_MARGIN = timedelta(seconds=30)


def settled_horizon(grid: Grid, now: datetime, *, settle: timedelta = SETTLE) -> datetime:
    """The end of what is final at ``now``: ``now`` less ``settle`` and
    :data:`CLOCK_MARGIN`, floored to the grid. Every row before it is final: a bucket
    before it closed at least that long ago (it ends at or before the floor), an event
    before it happened at least that long ago; the bucket starting at it may still be
    filling. ``now`` should be the earlier of our clock and the server's
    (:meth:`LiquidationClient.final_before` does that). The one rule: routes
    (:meth:`~kaiko_liq.routes.Route.horizon`) and the client only call it."""
    return grid.floor(now - settle - CLOCK_MARGIN)
