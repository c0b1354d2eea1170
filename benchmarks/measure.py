"""Timing one client run against an emulator process, and what each run reports."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .emulator_proc import Emulator
from .rows import RowSet

__all__ = ["ClientRun", "Timed", "median_run", "timed_run"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timed(Generic[T]):
    value: T
    wall: float
    emulator_cpu: float
    client_cpu: float
    #: CPU of the thread that ran the event loop (this one), while it ran.
    loop_cpu: float = 0.0

    @property
    def emulator_cpu_share(self) -> float:
        """The emulator's CPU time over the run's wall time (1.0 = one core busy)."""
        return self.emulator_cpu / self.wall if self.wall > 0 else 0.0

    @property
    def client_cpu_share(self) -> float:
        """This (the client's) process's CPU time over the run's wall time."""
        return self.client_cpu / self.wall if self.wall > 0 else 0.0


def timed_run(
    emulator: Emulator,
    make: Callable[[str], Coroutine[Any, Any, T]],
    *,
    timeout: float,
) -> Timed[T]:
    """Run ``make(base_url)`` in a fresh event loop on this thread; wall time, this
    process's CPU (every thread), the loop thread's CPU (``time.thread_time``) and the
    emulator's CPU over it."""

    async def bounded() -> T:
        return await asyncio.wait_for(make(emulator.base_url), timeout)

    cpu0 = emulator.cpu_seconds()
    own0 = time.process_time()
    loop0 = time.thread_time()
    t0 = time.perf_counter()
    value = asyncio.run(bounded())
    wall = time.perf_counter() - t0
    loop = time.thread_time() - loop0
    own = time.process_time() - own0
    cpu = emulator.cpu_seconds() - cpu0
    emulator.check_alive()
    return Timed(value, wall, cpu, own, loop)


@dataclass(frozen=True, slots=True)
class ClientRun:
    """One client's backfill: time, traffic, and the data it returned."""

    client: str
    assets: tuple[str, ...]
    wall: float
    requests: int
    rate_limited: int
    retries: int | None
    rowset: RowSet
    emulator_cpu_share: float
    client_cpu_share: float
    walls: tuple[float, ...] = ()
    #: CPU seconds of the client's process and of its event loop's thread (None: not
    #: measured), and its peak RSS where it ran in a process of its own.
    client_cpu: float | None = None
    loop_cpu: float | None = None
    peak_rss_bytes: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "client": self.client,
            "assets": list(self.assets),
            "wall_s": round(self.wall, 4),
            "walls_s": [round(w, 4) for w in self.walls or (self.wall,)],
            "requests": self.requests,
            "rate_limited_429": self.rate_limited,
            "retries": self.retries,
            "rows": self.rowset.to_json(),
            "emulator_cpu_share": round(self.emulator_cpu_share, 3),
            "client_cpu_share": round(self.client_cpu_share, 3),
            "client_cpu_s": None if self.client_cpu is None else round(self.client_cpu, 4),
            "loop_cpu_s": None if self.loop_cpu is None else round(self.loop_cpu, 4),
            "peak_rss_bytes": self.peak_rss_bytes,
        }


def median_run(runs: list[ClientRun]) -> ClientRun:
    """The run with the (lower) median wall time, carrying every run's wall time."""
    ordered = sorted(runs, key=lambda r: r.wall)
    mid = ordered[(len(ordered) - 1) // 2]
    return dataclasses.replace(mid, walls=tuple(r.wall for r in runs))
