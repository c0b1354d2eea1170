"""The benchmark's settings: the full run, and a ``--quick`` one that finishes in ~1 min.

Everything a reader needs to reproduce a number is here and is copied into the JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

__all__ = ["BackfillJob", "BackfillMemoryRun", "MemoryWindow", "Settings", "settings_for"]


def _utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class MemoryWindow:
    label: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class BackfillMemoryRun:
    """One ``kaiko-liq backfill`` whose peak RSS the memory scenario measures."""

    label: str
    assets: tuple[str, ...]
    start: datetime
    end: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "assets": list(self.assets),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }


#: A job size of the backfill scenario (issue 20) is the same shape: assets x a window.
BackfillJob = BackfillMemoryRun


@dataclass(frozen=True, slots=True)
class Settings:
    quick: bool
    #: Backfill: assets and window (the emulator has data from 2025-01-08 to its clock's
    #: now; the window ends 2026-11-01, settled and in the past, so the rows and their
    #: checksum do not depend on the day the benchmark runs).
    assets: tuple[str, ...]
    start: datetime
    end: datetime
    interval: str
    #: The backfill scenario's job sizes, each the real command beside its bound.
    backfill_jobs: tuple[BackfillJob, ...]
    #: The emulator of the backfill and fault scenarios, and the key's limit.
    latency: float
    jitter: float
    rate_limit: float
    #: ``N_min`` counts pages of this size (the API's maximum).
    page_size: int
    #: How many assets the sequential loop is measured on (the rest is scaled).
    sequential_assets: int
    per_day_concurrency: int
    #: kaiko-liq runs are short: repeat them (a fresh key each) and take the median; the
    #: ``kaiko-liq backfill`` command as many times, plus one instrumented run.
    kaiko_repeats: int
    #: Decode: pages captured per asset, and timing passes per decoder.
    decode_pages_per_asset: int
    decode_repeat: int
    #: Per-page steps (inflate ... Parquet write): passes over all pages, best counts.
    decode_step_repeat: int
    #: Decode with rows kept alive: the pages repeated this many times, and passes.
    decode_keep_copies: int
    decode_keep_repeat: int
    #: Memory: windows streamed (each in a fresh process) and the client's rate limit.
    memory_asset: str
    memory_windows: tuple[MemoryWindow, ...]
    memory_rate_limit: float
    #: Memory: backfills (the CLI, each in a fresh process) whose peak RSS is compared.
    memory_backfills: tuple[BackfillMemoryRun, ...]
    #: Peak RSS (MiB) a backfill may reach (the target, reported, never asserted).
    memory_backfill_target_mb: float
    #: Faults.
    fault_rate: float
    seed: int
    #: Warm the emulator's data with one kaiko-liq pass before each measured client.
    warm_up: bool
    #: Upper bound on one measured client run before it is reported as failed.
    run_timeout: float

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
        out["memory_windows"] = [
            {"label": w.label, "start": w.start.isoformat(), "end": w.end.isoformat()}
            for w in self.memory_windows
        ]
        out["memory_backfills"] = [run.to_json() for run in self.memory_backfills]
        out["backfill_jobs"] = [job.to_json() for job in self.backfill_jobs]
        return out


_MEMORY_WINDOWS = (
    MemoryWindow("1 month", _utc(2025, 1, 8), _utc(2025, 2, 8)),
    MemoryWindow("1 year", _utc(2025, 1, 8), _utc(2026, 1, 8)),
    MemoryWindow("22 months", _utc(2025, 1, 8), _utc(2026, 11, 1)),
)
#: The emulator's eight liquid assets (the sparse ``pepe`` aside).
_EIGHT = ("btc", "eth", "sol", "xrp", "doge", "ada", "link", "ltc")
_MONTH = (_utc(2025, 1, 8), _utc(2025, 2, 8))
_ALL_DATA = (_utc(2025, 1, 8), _utc(2026, 11, 1))
_MEMORY_BACKFILLS = (
    BackfillMemoryRun("1 asset x 1 month", ("btc",), *_MONTH),
    BackfillMemoryRun("1 asset x 22 months", ("btc",), *_ALL_DATA),
    BackfillMemoryRun("8 assets x 1 month", _EIGHT, *_MONTH),
    BackfillMemoryRun("8 assets x 22 months", _EIGHT, *_ALL_DATA),
)
#: The emulator's nine assets and the eleven benchmarks.emulator_many adds.
_TWENTY = (
    *_EIGHT,
    "pepe",
    *("avax", "dot", "bnb", "trx", "atom", "near", "apt", "arb", "op", "sui", "uni"),
)
_FIVE = ("btc", "eth", "sol", "xrp", "doge")
_JOBS = (
    BackfillJob("1 asset x 1 month", ("btc",), *_MONTH),
    BackfillJob("5 assets x 22 months", _FIVE, *_ALL_DATA),
    BackfillJob("20 assets x 22 months", _TWENTY, *_ALL_DATA),
)
_QUICK_JOBS = (
    BackfillJob("1 asset x 1 month", ("btc",), *_MONTH),
    BackfillJob("2 assets x 6 months", ("btc", "eth"), _utc(2025, 1, 8), _utc(2025, 7, 8)),
)
_QUICK_MEMORY_BACKFILLS = (
    BackfillMemoryRun("1 asset x 1 month", ("btc",), *_MONTH),
    BackfillMemoryRun("2 assets x 6 months", ("btc", "eth"), _utc(2025, 1, 8), _utc(2025, 7, 8)),
)


def settings_for(
    *, quick: bool, sequential_assets: int | None = None, warm_up: bool = True
) -> Settings:
    """The full run, or the quick one; ``sequential_assets=0`` measures every asset."""
    assets = ("btc", "eth") if quick else _FIVE
    seq = len(assets) if quick else 1
    if sequential_assets is not None:
        seq = len(assets) if sequential_assets <= 0 else min(sequential_assets, len(assets))
    return Settings(
        quick=quick,
        assets=assets,
        start=_utc(2025, 1, 8),
        end=_utc(2025, 7, 8) if quick else _utc(2026, 11, 1),
        interval="1h",
        backfill_jobs=_QUICK_JOBS if quick else _JOBS,
        latency=0.1,
        jitter=0.0,
        rate_limit=100.0,
        page_size=1000,
        sequential_assets=seq,
        per_day_concurrency=32,
        kaiko_repeats=1 if quick else 3,
        decode_pages_per_asset=1 if quick else 2,
        decode_repeat=10 if quick else 40,
        decode_step_repeat=3 if quick else 10,
        decode_keep_copies=2 if quick else 8,
        decode_keep_repeat=2 if quick else 3,
        memory_asset="btc",
        memory_windows=_MEMORY_WINDOWS,
        memory_rate_limit=1000.0,
        memory_backfills=_QUICK_MEMORY_BACKFILLS if quick else _MEMORY_BACKFILLS,
        memory_backfill_target_mb=200.0,
        fault_rate=0.1,
        seed=7,
        warm_up=warm_up,
        run_timeout=300.0,
    )
