"""How an emulator behaves: one frozen, keyword-only configuration with visible defaults.

The defaults describe a well-behaved server (no latency, no limit, no faults), so a test
opts in to exactly the misbehaviour it is about.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InvalidArgumentError

__all__ = ["EmulatorConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorConfig:
    """Knobs of the emulator; the command line has one flag per field.

    Attributes:
        latency: seconds added to every request on the data route (a round trip).
        jitter: up to this many extra seconds, uniform, drawn from ``seed``.
        rate_limit: requests per second per API key (token bucket, one second of burst);
            ``None`` for no limit. Over it: 429 ``Rate limit reached``.
        retry_after: send a ``Retry-After`` header (whole seconds, at least 1) on 429.
        fault_rate: probability that a request (past the rate limit) fails: a 500, 502
            or 503, a dropped connection, or a body cut short. Drawn from ``seed``.
        page_cap: serve at most this many rows per page whatever ``page_size`` asks,
            as a real server may; ``None`` for no cap.
        seed: seeds the synthetic data, the faults, the jitter and the token key.
        api_key: the only key accepted; ``None`` accepts any non-empty key.
        empty_last_page: give every full page a ``next_url``, even when nothing
            follows, so the last ``next_url`` leads to an empty page (Kaiko's own
            scripts suggest real servers do this).
    """

    latency: float = 0.0
    jitter: float = 0.0
    rate_limit: float | None = None
    retry_after: bool = True
    fault_rate: float = 0.0
    page_cap: int | None = None
    seed: int = 0
    api_key: str | None = None
    empty_last_page: bool = False

    def __post_init__(self) -> None:
        for name in ("latency", "jitter"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidArgumentError(f"{name} must be a number of seconds >= 0, got {value}")
        if self.rate_limit is not None and not (
            math.isfinite(self.rate_limit) and self.rate_limit > 0
        ):
            raise InvalidArgumentError(
                f"rate_limit must be a positive number of requests per second or None, "
                f"got {self.rate_limit}"
            )
        if not 0.0 <= self.fault_rate <= 1.0:
            raise InvalidArgumentError(
                f"fault_rate must be a probability from 0 to 1, got {self.fault_rate}"
            )
        if self.page_cap is not None and self.page_cap < 1:
            raise InvalidArgumentError(f"page_cap must be at least 1 or None, got {self.page_cap}")
        if self.api_key is not None and not self.api_key:
            raise InvalidArgumentError("api_key must be non-empty, or None to accept any key")

    def __repr__(self) -> str:
        # Never show a key in a repr (STYLE.md): it ends up in logs and test output.
        key = None if self.api_key is None else "***"
        return (
            f"EmulatorConfig(latency={self.latency}, jitter={self.jitter}, "
            f"rate_limit={self.rate_limit}, retry_after={self.retry_after}, "
            f"fault_rate={self.fault_rate}, page_cap={self.page_cap}, seed={self.seed}, "
            f"api_key={key}, empty_last_page={self.empty_last_page})"
        )
