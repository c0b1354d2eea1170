"""The CLI's progress display and the sentences its summaries share.

On a terminal the line is redrawn in place with ``\\r``, at most every ``min_interval``
seconds, and cut to the terminal's width (a wrapped line cannot be overwritten). When
stderr is a pipe or a file (a cron job's log), it gets a whole status line at most every
``log_interval`` seconds (30) and none in a run shorter than that, so a long run shows
life without flooding the log. What the line *says* is built by pure functions
(:func:`backfill_line`, :func:`fetch_line`, :func:`empty_reason`) that tests call
directly.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import datetime
from typing import Literal, TextIO

import anyio

from .query import DATA_START, format_time

__all__ = [
    "LOG_INTERVAL",
    "ProgressLine",
    "backfill_line",
    "draw_until_cancelled",
    "empty_reason",
    "fetch_line",
    "format_duration",
    "plural",
]

#: Seconds between status lines when stderr is not a terminal.
LOG_INTERVAL = 30.0
#: Characters of the last transient error kept on the line (it is redacted upstream).
_ERROR_CHARS = 80

Mode = Literal["terminal", "log", "off"]


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


def _retries(retries: int, last_error: str | None) -> str:
    """`` · 3 retries, last: HTTP 503 ...``; nothing while there were none."""
    if retries <= 0:
        return ""
    text = f" · {plural(retries, 'retry', 'retries')}"
    if last_error:
        error = " ".join(last_error.split())
        if len(error) > _ERROR_CHARS:
            error = error[: _ERROR_CHARS - 1] + "…"
        text += f", last: {error}"
    return text


def _shards_line(
    *,
    done: int,
    total: int,
    fetched: int,
    rows: int,
    requests: int,
    elapsed: float,
    retries: int,
    last_error: str | None,
) -> str:
    """The line both commands draw; time left extrapolated from ``fetched`` shards."""
    if fetched > 0 and elapsed > 0:
        left = format_duration((total - done) * elapsed / fetched) + " left"
    else:
        left = "estimating time left"
    return (
        f"shards {done}/{total} · {rows:,} rows · {requests:,} requests "
        f"({_per_second(requests, elapsed)}) · {left}{_retries(retries, last_error)}"
    )


def backfill_line(
    *,
    done: int,
    total: int,
    skipped: int,
    rows: int,
    requests: int,
    elapsed: float,
    retries: int = 0,
    last_error: str | None = None,
) -> str:
    """``shards 12/40 · 11,520 rows · 41 requests (14.2/s) · 1m12s left``, then
    `` · 2 retries, last: ...`` once a request was retried.

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
        retries=retries,
        last_error=last_error,
    )


def fetch_line(
    *,
    rows: int,
    requests: int,
    elapsed: float,
    done: int | None = None,
    total: int | None = None,
    retries: int = 0,
    last_error: str | None = None,
) -> str:
    """``shards 3/10 · 8,760 rows · 9 requests (6.1/s) · 5s left``, as a backfill's.

    Without ``done`` and ``total`` (nothing to count to): ``8,760 rows · 9 requests
    (6.1/s) · 1s``, the time so far instead of the time left.
    """
    if done is not None and total is not None:
        return _shards_line(
            done=done,
            total=total,
            fetched=done,
            rows=rows,
            requests=requests,
            elapsed=elapsed,
            retries=retries,
            last_error=last_error,
        )
    return (
        f"{rows:,} rows · {requests:,} requests ({_per_second(requests, elapsed)}) · "
        f"{format_duration(elapsed)}{_retries(retries, last_error)}"
    )


def empty_reason(start: datetime, end: datetime, now: datetime) -> str:
    """Why a window held no rows, in words: before the data, in the future, or quiet."""
    if end <= DATA_START:
        return (
            f"the window ends before the data starts ({format_time(DATA_START)}); "
            "move --start/--end later"
        )
    if start >= now:
        return f"the window lies in the future (it starts after now, {format_time(now)})"
    return "no liquidations were recorded in the window"


class ProgressLine:
    """A status display: redrawn in place on a terminal, a line now and then in a log.

    ``mode`` is ``"terminal"``, ``"log"`` (one line every ``log_interval`` seconds, the
    first only after that long) or ``"off"``, where every method is a no-op.

    Example::

        line = ProgressLine.for_stream(sys.stderr, quiet=args.quiet)
        line.show("shards 3/40")   # throttled
        line.clear()               # before printing anything else
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        mode: Mode = "terminal",
        min_interval: float = 0.2,
        log_interval: float = LOG_INTERVAL,
        prefix: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.mode: Mode = mode
        self.min_interval = min_interval
        self.log_interval = log_interval
        self.prefix = prefix  # log lines only: they sit among the program's other lines
        self._clock = clock
        self._last_draw: float | None = None
        self._width = 0  # characters on screen now, to blank out a longer previous line

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @classmethod
    def for_stream(cls, stream: TextIO, *, quiet: bool, prefix: str = "") -> ProgressLine:
        """Redrawn on a terminal, logged elsewhere, off when the user asked for quiet."""
        isatty = getattr(stream, "isatty", None)
        mode: Mode = "off" if quiet else "terminal" if isatty and isatty() else "log"
        return cls(stream, mode=mode, prefix=prefix)

    def show(self, text: str, *, force: bool = False) -> None:
        """Draw ``text`` unless the last draw was too recent (``force`` skips that on a
        terminal; a log is always throttled, it is what keeps it short)."""
        if self.mode == "off":
            return
        now = self._clock()
        last = self._last_draw
        if self.mode == "log":
            if last is None:
                self._last_draw = now  # the clock starts: nothing to say yet
            elif now - last >= self.log_interval:
                self._last_draw = now
                self.stream.write(f"{self.prefix}{text}\n")
                self.stream.flush()
            return
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
        if self.mode == "terminal" and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


async def draw_until_cancelled(line: ProgressLine, render: Callable[[], str]) -> None:
    """Redraw ``render()`` every ``line.min_interval`` seconds; run it in a task group and
    cancel it when the work is done (time-driven, so a slow shard still shows req/s and a
    log gets its line on time)."""
    if not line.enabled:
        return
    while True:
        line.show(render(), force=True)
        await anyio.sleep(line.min_interval)
