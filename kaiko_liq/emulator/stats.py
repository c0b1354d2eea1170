"""What an emulator saw, readable from Python while it runs (``emu.stats``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["DROPPED", "EmulatorStats"]

#: The pseudo-status under which dropped connections (no response at all) are counted.
DROPPED = 0


@dataclass(slots=True)
class EmulatorStats:
    """Request counters of one emulator.

    Attributes:
        by_status: requests by the HTTP status answered; dropped connections count
            under :data:`DROPPED` (0). Truncated bodies count under 200.
        faults: injected faults by kind (``"500"``, ``"502"``, ``"503"``, ``"drop"``,
            ``"truncate"``).
        total_requests: every request received, on any route.
        in_flight: requests being handled right now.
        peak_concurrency: the most requests in flight at once since the last reset.
    """

    by_status: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    total_requests: int = 0
    in_flight: int = 0
    peak_concurrency: int = 0

    def started(self) -> None:
        self.total_requests += 1
        self.in_flight += 1
        self.peak_concurrency = max(self.peak_concurrency, self.in_flight)

    def finished(self, status: int) -> None:
        self.in_flight -= 1
        self.by_status[status] += 1

    def reset(self) -> None:
        """Zero the counters. Requests still in flight stay counted as in flight."""
        self.by_status.clear()
        self.faults.clear()
        self.total_requests = 0
        self.peak_concurrency = self.in_flight
