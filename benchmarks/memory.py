"""Scenario 3, memory: peak RSS while streaming one month, one year and two years.

Each window runs in a fresh ``python -m benchmarks.stream_worker`` process that writes
every row to a JSON Lines file as it arrives, against a zero-latency emulator with no
rate limit (the worst case for a client that reads ahead without bound). A streaming
client's peak RSS should not grow with the window: the target is < 20% growth from one
month to two years.
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

from .config import MemoryWindow, Settings
from .emulator_proc import Emulator
from .report import Outcome, Table, Target, fmt_bytes, fmt_int, fmt_seconds

__all__ = ["StreamResult", "run", "stream_in_subprocess"]

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


def run(settings: Settings) -> Outcome:
    results: list[StreamResult] = []
    with Emulator(seed=settings.seed) as emu, tempfile.TemporaryDirectory() as tmp:
        for window in settings.memory_windows:
            out = Path(tmp) / "rows.jsonl"
            results.append(stream_in_subprocess(emu.base_url, settings, window, out))
            out.unlink()

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
            "asset": settings.memory_asset,
            "runs": [dataclasses.asdict(r) for r in results],
            "growth": round(growth, 4),
        },
        tables=[table],
        targets=[
            Target(
                "memory",
                f"peak RSS growth {results[0].window} → {results[-1].window} < 20%",
                f"{growth:+.1%}",
                growth < 0.20,
            )
        ],
    )
