"""Seeded misbehaviour: which requests fail, how, and how long each one takes.

Pure decisions, drawn from ``random.Random`` streams seeded by the emulator's seed; the
handler in :mod:`.app` carries them out. The draws follow arrival order, so one client
making sequential requests sees the same faults on every run; with concurrent requests
the same *number* of faults is drawn, only which request gets which may vary.

The mix, given that a request faults (``fault_rate``):

====================  ======  ============================================================
kind                  weight  what the client sees
====================  ======  ============================================================
``HTTP_500``          0.20    500 ``{"result": "error", "message": "Try again later"}``
``HTTP_502``          0.15    502, as from a proxy in front of a restarting server
``HTTP_503``          0.15    503, as during maintenance (Kaiko documents it)
``DROP``              0.25    the connection closes without any response
``TRUNCATE``          0.25    200 headers with a Content-Length, then the body stops short
====================  ======  ============================================================
"""

from __future__ import annotations

import enum
import random

__all__ = ["FAULT_MIX", "Fault", "FaultInjector", "Latency"]


class Fault(enum.Enum):
    HTTP_500 = "500"
    HTTP_502 = "502"
    HTTP_503 = "503"
    DROP = "drop"
    TRUNCATE = "truncate"

    @property
    def status(self) -> int | None:
        """The HTTP status of an error-answer fault; ``None`` for transport faults."""
        return int(self.value) if self.value.isdigit() else None


FAULT_MIX: tuple[tuple[Fault, float], ...] = (
    (Fault.HTTP_500, 0.20),
    (Fault.HTTP_502, 0.15),
    (Fault.HTTP_503, 0.15),
    (Fault.DROP, 0.25),
    (Fault.TRUNCATE, 0.25),
)

FAULT_MESSAGES = {
    Fault.HTTP_500: "Try again later",
    Fault.HTTP_502: "Bad gateway",
    Fault.HTTP_503: "Service under maintenance",
}


class FaultInjector:
    """Decides, request by request, whether and how to fail."""

    def __init__(self, rate: float, seed: int) -> None:
        self._rate = rate
        self._rng = random.Random(f"kaiko-liq emulator faults:{seed}")
        self._kinds = [kind for kind, _ in FAULT_MIX]
        self._weights = [weight for _, weight in FAULT_MIX]

    def draw(self) -> Fault | None:
        if self._rate <= 0.0:
            return None  # consume nothing: a fault-free emulator draws no numbers
        if self._rng.random() >= self._rate:
            return None
        return self._rng.choices(self._kinds, self._weights)[0]


class Latency:
    """How long a request takes: ``latency`` plus up to ``jitter`` seconds, uniform."""

    def __init__(self, latency: float, jitter: float, seed: int) -> None:
        self._latency = latency
        self._jitter = jitter
        self._rng = random.Random(f"kaiko-liq emulator jitter:{seed}")

    def draw(self) -> float:
        if self._jitter <= 0.0:
            return self._latency
        return self._latency + self._rng.uniform(0.0, self._jitter)
