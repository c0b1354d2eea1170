"""How an emulator behaves: one frozen, keyword-only configuration with visible defaults.

The defaults describe a well-behaved server (no latency, no limit, no faults, pages sized
by rows, the system clock), so a test opts in to exactly the misbehaviour it is about.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .grid import DATA_START, EmulatorConfigError

__all__ = ["PAGING_MODES", "EmulatorConfig", "EmulatorConfigError", "parse_rate"]

#: ``rows``: a page holds up to ``page_size`` rows (the doc: "number of records");
#: ``time``: a page covers ``page_size`` buckets of time, so it may hold fewer, or none.
PAGING_MODES = ("rows", "time")
_RATE_RE = re.compile(
    r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:/\s*(s|sec|second|min|minute))?\s*"
)
_PER = {None: 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0}

Now = datetime | Callable[[], datetime] | None


def parse_rate(value: str | float | None) -> float | None:
    """Requests per second from ``"6000/min"``, ``"100/s"``, ``"100"`` or a number
    (a bare number is per second); ``None`` stays ``None`` (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise EmulatorConfigError(f"rate_limit must be like '6000/min' or '100/s', got {value!r}")
    if isinstance(value, int | float):
        per_second = float(value)
    else:
        match = _RATE_RE.fullmatch(value)
        if match is None:
            raise EmulatorConfigError(
                f"rate_limit {value!r} is not a rate; use e.g. '6000/min' (Kaiko's limit), "
                "'100/s' or a number of requests per second"
            )
        per_second = float(match.group(1)) / _PER[match.group(2)]
    if not (math.isfinite(per_second) and per_second > 0):
        raise EmulatorConfigError(
            f"rate_limit must be a positive number of requests per second (or e.g. "
            f"'6000/min'), or None for no limit; got {value!r}"
        )
    return per_second


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorConfig:
    """Knobs of the emulator; the command line has one flag per field.

    Attributes:
        latency: seconds added to every request on the data route (a round trip).
        jitter: up to this many extra seconds, uniform, drawn from ``seed``.
        rate_limit: per API key, as Kaiko states it: ``"6000/min"``, ``"100/s"``, or a
            number (per second); ``None`` for no limit. Over it: 429 ``Rate limit
            reached``. See :mod:`.ratelimit` for how a minute's budget is spread.
        retry_after: send a ``Retry-After`` header (whole seconds, at least 1) on 429.
            Off by default: Kaiko documents none.
        fault_rate: probability that a request (past the rate limit) fails: a 500, 502
            or 503, a dropped connection, or a body cut short. Drawn from ``seed``.
        page_cap: serve at most this many rows (``paging="rows"``) or buckets of time
            (``paging="time"``) per page whatever ``page_size`` asks, as a real server
            may; ``None`` for no cap.
        paging: ``"rows"`` (a page holds ``page_size`` rows) or ``"time"`` (a page
            covers ``page_size`` buckets, so quiet buckets make it short or empty, and
            it still carries a ``next_url`` when more time follows).
        seed: seeds the synthetic data, the faults, the jitter and the token key.
        api_key: the only key accepted; ``None`` accepts any non-empty key.
        empty_last_page: give every full page a ``next_url``, even when nothing
            follows, so the last ``next_url`` leads to an empty page (Kaiko's own
            scripts suggest real servers do this).
        now: the emulator's clock for its data: an aware datetime, a function returning
            one, or ``None`` for the system clock. Data exists for every hour from
            2025-01-08 up to now.
        settle_seconds: a bucket's figures are final once it closed this long ago;
            until then they grow (see :mod:`.data`).
        gzip: gzip pages for a client whose ``Accept-Encoding`` takes it (Kaiko's
            servers do). Off, pages go as they are: what the in-process emulator of
            ``emulator=True`` and ``--emulator`` uses, where compressing for a socket
            inside one process only costs CPU (~4 ms a 1000-row page, ~3 ms to inflate).
    """

    latency: float = 0.0
    jitter: float = 0.0
    rate_limit: str | float | None = None
    retry_after: bool = False
    fault_rate: float = 0.0
    page_cap: int | None = None
    paging: str = "rows"
    seed: int = 0
    api_key: str | None = None
    empty_last_page: bool = False
    now: Now = None
    settle_seconds: int = 3600
    gzip: bool = True

    def __post_init__(self) -> None:
        for name in ("latency", "jitter"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise EmulatorConfigError(f"{name} must be a number of seconds >= 0, got {value}")
        parse_rate(self.rate_limit)
        if not 0.0 <= self.fault_rate <= 1.0:
            raise EmulatorConfigError(
                f"fault_rate must be a probability from 0 to 1, got {self.fault_rate}"
            )
        if self.page_cap is not None and self.page_cap < 1:
            raise EmulatorConfigError(f"page_cap must be at least 1 or None, got {self.page_cap}")
        if self.paging not in PAGING_MODES:
            raise EmulatorConfigError(f"paging must be 'rows' or 'time', got {self.paging!r}")
        if self.api_key is not None and not self.api_key:
            raise EmulatorConfigError("api_key must be non-empty, or None to accept any key")
        if isinstance(self.now, datetime) and self.now.utcoffset() is None:
            raise EmulatorConfigError(
                f"now must be a timezone-aware datetime, got the naive {self.now!r}"
            )
        if isinstance(self.now, datetime) and self.now <= DATA_START:
            raise EmulatorConfigError(
                f"now {self.now.isoformat()} is not after the data starts "
                f"({DATA_START.date()}): every answer would be empty"
            )
        if self.now is not None and not isinstance(self.now, datetime) and not callable(self.now):
            raise EmulatorConfigError(
                f"now must be a datetime, a function returning one, or None; got {self.now!r}"
            )
        if isinstance(self.settle_seconds, bool) or not (
            isinstance(self.settle_seconds, int) and self.settle_seconds >= 0
        ):
            raise EmulatorConfigError(
                "settle_seconds must be a whole number of seconds >= 0, "
                f"got {self.settle_seconds!r}"
            )

    @property
    def requests_per_second(self) -> float | None:
        """``rate_limit`` in requests per second (``None``: no limit)."""
        return parse_rate(self.rate_limit)

    def clock(self) -> datetime:
        """The emulator's current time, aware, in UTC."""
        now = self.now
        if now is None:
            return datetime.now(UTC)
        value = now if isinstance(now, datetime) else now()
        if value.utcoffset() is None:
            raise EmulatorConfigError(f"now() returned the naive datetime {value!r}")
        return value.astimezone(UTC)

    def __repr__(self) -> str:
        # Never show a key in a repr (STYLE.md): it ends up in logs and test output.
        key = None if self.api_key is None else "***"
        return (
            f"EmulatorConfig(latency={self.latency}, jitter={self.jitter}, "
            f"rate_limit={self.rate_limit!r}, retry_after={self.retry_after}, "
            f"fault_rate={self.fault_rate}, page_cap={self.page_cap}, "
            f"paging={self.paging!r}, seed={self.seed}, api_key={key}, "
            f"empty_last_page={self.empty_last_page}, now={self.now!r}, "
            f"settle_seconds={self.settle_seconds})"
        )
