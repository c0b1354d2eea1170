"""Scenario 3, memory: peak RSS of a backfill, and of a stream, as the job grows.

* **Backfill**: the ``kaiko-liq backfill`` command (through :mod:`benchmarks.cli_worker`,
  a fresh process each) for 1 asset and for 8, over one month and over all 22 months of
  data. A backfill writes each shard as it lands and keeps nothing else, so its peak RSS
  should stay flat and small: the target is at most 200 MiB, and < 20% from the
  smallest run to the largest.
* **Streaming**: each window in a fresh ``python -m benchmarks.stream_worker`` process
  that writes every row to a JSON Lines file as it arrives. Target: < 20% growth from
  one month to 22 months.

Both run against a zero-latency emulator with no rate limit, the worst case for a client
that reads ahead without bound.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kaiko_liq.query import format_time

from .backfill import backfill_args
from .cli_proc import CliRun, run_instrumented
from .config import BackfillMemoryRun, MemoryWindow, Settings
from .emulator_proc import Emulator
from .report import Outcome, Table, Target, fmt_bytes, fmt_int, fmt_seconds

__all__ = ["BackfillMemory", "StreamResult", "backfill_memory", "run", "stream_in_subprocess"]

_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class StreamResult:
    window: str
    rows: int
    requests: int
    wall_s: float
    rss_before_bytes: int
    peak_rss_bytes: int
    file_bytes: int


def stream_in_subprocess(
    base_url: str, settings: Settings, window: MemoryWindow, out: Path
) -> StreamResult:
    """Stream ``window`` of the memory asset in a fresh interpreter; what it reported."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.stream_worker",
        base_url,
        settings.memory_asset,
        format_time(window.start),
        format_time(window.end),
        str(out),
        "--rate-limit",
        str(settings.memory_rate_limit),
    ]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=settings.run_timeout,
        cwd=_REPO,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"stream worker failed ({done.returncode}): {done.stderr[-2000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return StreamResult(
        window=window.label,
        rows=int(r["rows"]),
        requests=int(r["requests"]),
        wall_s=float(r["wall_s"]),
        rss_before_bytes=int(r["rss_before_bytes"]),
        peak_rss_bytes=int(r["peak_rss_bytes"]),
        file_bytes=out.stat().st_size,
    )


@dataclass(frozen=True, slots=True)
class BackfillMemory:
    spec: BackfillMemoryRun
    rows: int
    files: int
    run: CliRun


def _rows_written(directory: Path) -> tuple[int, int]:
    """Rows and files of a backfill directory, from the Parquet footers."""
    import pyarrow.parquet as pq

    files = sorted(directory.glob("asset=*/*.parquet"))
    return sum(pq.read_metadata(f).num_rows for f in files), len(files)


def backfill_memory(base_url: str, settings: Settings, spec: BackfillMemoryRun) -> BackfillMemory:
    """One backfill of ``spec`` in a fresh, instrumented process; its peak RSS."""
    with tempfile.TemporaryDirectory(prefix="kaiko-liq-bench-mem-") as tmp:
        out = Path(tmp) / "data"
        args = backfill_args(
            settings,
            out,
            base_url,
            assets=spec.assets,
            start=spec.start,
            end=spec.end,
            rate_limit=settings.memory_rate_limit,
        )
        done = run_instrumented(args, api_key="bench-memory", timeout=settings.run_timeout)
        rows, files = _rows_written(out)
    return BackfillMemory(spec, rows, files, done)


def _backfill_table(results: list[BackfillMemory], settings: Settings) -> tuple[Table, Target]:
    table = Table(
        "Memory (backfill, peak RSS)",
        ("backfill", "rows", "files", "requests", "wall", "CPU", "peak RSS", "vs smallest"),
    )
    peaks = [r.run.peak_rss_bytes or 0 for r in results]
    low = min(peaks)
    for r, peak in zip(results, peaks, strict=True):
        table.add(
            r.spec.label,
            fmt_int(r.rows),
            fmt_int(r.files),
            fmt_int(r.run.requests),
            fmt_seconds(r.run.wall),
            fmt_seconds(r.run.process_cpu),
            fmt_bytes(peak),
            f"{(peak - low) / low:+.1%}",
        )
    table.notes.append(
        "the kaiko-liq backfill command, each in a fresh process (benchmarks.cli_worker, the "
        "console script's main), against a zero-latency emulator with no rate limit, "
        f"--rate-limit {settings.memory_rate_limit:g}; peak RSS is the process's VmHWM "
        "(interpreter, aiohttp, pyarrow and all)."
    )
    high = max(peaks)
    growth = (high - low) / low
    target_mb = settings.memory_backfill_target_mb
    ok = high <= target_mb * 2**20 and growth < 0.20
    target = Target(
        "memory",
        f"backfill peak RSS ≤ {target_mb:g} MiB, < 20% smallest → largest",
        f"{high / 2**20:.0f} MiB max, {growth:+.1%}",
        ok,
    )
    return table, target


def run(settings: Settings) -> Outcome:
    results: list[StreamResult] = []
    backfills: list[BackfillMemory] = []
    with Emulator(seed=settings.seed) as emu, tempfile.TemporaryDirectory() as tmp:
        for spec in settings.memory_backfills:
            backfills.append(backfill_memory(emu.base_url, settings, spec))
        for window in settings.memory_windows:
            out = Path(tmp) / "rows.jsonl"
            results.append(stream_in_subprocess(emu.base_url, settings, window, out))
            out.unlink()
    backfill_table, backfill_target = _backfill_table(backfills, settings)

    table = Table(
        "Memory (streaming to JSON Lines)",
        ("window", "rows", "requests", "wall", "RSS before", "peak RSS", "vs 1st window"),
    )
    first = results[0].peak_rss_bytes
    for r in results:
        table.add(
            r.window,
            fmt_int(r.rows),
            fmt_int(r.requests),
            fmt_seconds(r.wall_s),
            fmt_bytes(r.rss_before_bytes),
            fmt_bytes(r.peak_rss_bytes),
            f"{(r.peak_rss_bytes - first) / first:+.1%}",
        )
    growth = (results[-1].peak_rss_bytes - first) / first
    table.notes.append(
        f"asset {settings.memory_asset}; each window in a fresh process; zero-latency emulator "
        f"with no rate limit; client rate_limit={settings.memory_rate_limit:g}. Peak RSS is "
        f"the worker's VmHWM (the whole process: interpreter and imports included); RSS before is "
        f"after imports, before the client opens."
    )
    return Outcome(
        data={
            "backfill": [
                {**r.spec.to_json(), "rows": r.rows, "files": r.files, **r.run.to_json()}
                for r in backfills
            ],
            "asset": settings.memory_asset,
            "runs": [dataclasses.asdict(r) for r in results],
            "growth": round(growth, 4),
        },
        tables=[backfill_table, table],
        targets=[
            backfill_target,
            Target(
                "memory",
                f"peak RSS growth {results[0].window} → {results[-1].window} < 20%",
                f"{growth:+.1%}",
                growth < 0.20,
            ),
        ],
    )
