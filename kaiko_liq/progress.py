"""A one-line progress display for long runs, drawn on stderr only when it is a terminal.

The line is redrawn in place with ``\\r``, at most every ``min_interval`` seconds, and cut
to the terminal's width (a wrapped line cannot be overwritten). Piped or redirected
stderr gets nothing, so logs hold only the final summary. What the line *says* is built by
pure functions (:func:`backfill_line`, :func:`fetch_line`) that tests call directly.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TextIO

import anyio

__all__ = [
    "ProgressLine",
    "backfill_line",
    "draw_until_cancelled",
    "fetch_line",
    "format_duration",
    "plural",
]


def plural(n: int, one: str, many: str | None = None) -> str:
    """``"1 file"``, ``"2 files"``, ``"1,200 retries"`` (with ``many="retries"``)."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def format_duration(seconds: float) -> str:
    """``"42s"``, ``"3m05s"``, ``"2h07m"``: short enough for a status line."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _per_second(count: int, elapsed: float) -> str:
    return f"{count / elapsed:.1f}/s" if elapsed > 0 else "-/s"


def _shards_line(
    *, done: int, total: int, fetched: int, rows: int, requests: int, elapsed: float
) -> str:
    """The line both commands draw; time left extrapolated from ``fetched`` shards."""
    if fetched > 0 and elapsed > 0:
        left = format_duration((total - done) * elapsed / fetched) + " left"
    else:
        left = "estimating time left"
    return (
        f"shards {done}/{total} · {rows:,} rows · {requests:,} requests "
        f"({_per_second(requests, elapsed)}) · {left}"
    )


def backfill_line(
    *, done: int, total: int, skipped: int, rows: int, requests: int, elapsed: float
) -> str:
    """``shards 12/40 · 11,520 rows · 41 requests (14.2/s) · 1m12s left``.

    Time left is extrapolated from the shards fetched in this run only: shards found on
    disk cost nothing and would make the estimate absurdly optimistic.
    """
    return _shards_line(
        done=done,
        total=total,
        fetched=done - skipped,
        rows=rows,
        requests=requests,
        elapsed=elapsed,
    )


def fetch_line(
    *,
    rows: int,
    requests: int,
    elapsed: float,
    done: int | None = None,
    total: int | None = None,
) -> str:
    """``shards 3/10 · 8,760 rows · 9 requests (6.1/s) · 5s left``, as a backfill's.

    Without ``done`` and ``total`` (nothing to count to): ``8,760 rows · 9 requests
    (6.1/s) · 1s``, the time so far instead of the time left.
    """
    if done is not None and total is not None:
        return _shards_line(
            done=done, total=total, fetched=done, rows=rows, requests=requests, elapsed=elapsed
        )
    return (
        f"{rows:,} rows · {requests:,} requests ({_per_second(requests, elapsed)}) · "
        f"{format_duration(elapsed)}"
    )


class ProgressLine:
    """A status line redrawn in place. Disabled, every method is a no-op.

    Example::

        line = ProgressLine.for_stream(sys.stderr, quiet=args.quiet)
        line.show("shards 3/40")   # throttled
        line.clear()               # before printing anything else
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        enabled: bool,
        min_interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.enabled = enabled
        self.min_interval = min_interval
        self._clock = clock
        self._last_draw: float | None = None
        self._width = 0  # characters on screen now, to blank out a longer previous line

    @classmethod
    def for_stream(cls, stream: TextIO, *, quiet: bool) -> ProgressLine:
        """Enabled only when ``stream`` is a terminal and the user did not ask for quiet."""
        isatty = getattr(stream, "isatty", None)
        return cls(stream, enabled=not quiet and isatty is not None and bool(isatty()))

    def show(self, text: str, *, force: bool = False) -> None:
        """Draw ``text`` unless the last draw was under ``min_interval`` ago."""
        if not self.enabled:
            return
        now = self._clock()
        last = self._last_draw
        if not force and last is not None and now - last < self.min_interval:
            return
        self._last_draw = now
        columns = shutil.get_terminal_size(fallback=(80, 24)).columns
        text = text[: max(columns - 1, 10)]
        self.stream.write("\r" + text + " " * max(self._width - len(text), 0))
        self.stream.flush()
        self._width = len(text)

    def clear(self) -> None:
        """Blank the line so the next message starts on a clean one."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


async def draw_until_cancelled(line: ProgressLine, render: Callable[[], str]) -> None:
    """Redraw ``render()`` every ``line.min_interval`` seconds; run it in a task group and
    cancel it when the work is done (time-driven, so a slow shard still shows req/s)."""
    if not line.enabled:
        return
    while True:
        line.show(render(), force=True)
        await anyio.sleep(line.min_interval)
