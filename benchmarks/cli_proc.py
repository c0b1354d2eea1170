"""The ``kaiko-liq`` command as a subprocess: timed from outside, or measured from inside.

Two ways to run it, both a fresh interpreter with start-up, imports and files included:

* :func:`run_command`: the installed console script (``kaiko-liq`` beside this
  interpreter), timed from here: wall time from spawn to exit, and its CPU (user +
  system, all threads) from ``getrusage(RUSAGE_CHILDREN)`` around the wait.
* :func:`run_instrumented`: the same ``main()`` through :mod:`benchmarks.cli_worker`,
  which reports the event loop thread's CPU, the requests sent and the peak RSS.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CliRun", "command_prefix", "run_command", "run_instrumented"]

_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class CliRun:
    """One ``kaiko-liq`` run; the inside figures are ``None`` when timed from outside."""

    status: int
    wall: float
    process_cpu: float
    loop_cpu: float | None = None
    requests: int | None = None
    peak_rss_bytes: int | None = None
    stderr: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "wall_s": round(self.wall, 4),
            "process_cpu_s": round(self.process_cpu, 4),
            "loop_cpu_s": None if self.loop_cpu is None else round(self.loop_cpu, 4),
            "requests": self.requests,
            "peak_rss_bytes": self.peak_rss_bytes,
        }


def command_prefix() -> list[str]:
    """The ``kaiko-liq`` console script beside this interpreter; where there is none,
    the same ``main`` through ``python -c``."""
    script = Path(sys.executable).with_name("kaiko-liq")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from kaiko_liq.cli import _entry; _entry()"]


def _env(api_key: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ, KAIKO_API_KEY=api_key)
    env.update(extra or {})
    return env


def _check(done: subprocess.CompletedProcess[str], args: Sequence[str]) -> None:
    if done.returncode != 0:
        raise RuntimeError(
            f"kaiko-liq {' '.join(args[:2])} ... exited {done.returncode}: {done.stderr[-2000:]}"
        )


def run_command(
    args: Sequence[str],
    *,
    api_key: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> CliRun:
    """``kaiko-liq ARGS`` (the console script) timed from outside; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [*command_prefix(), *args],
        env=_env(api_key, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=_REPO,
        check=False,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _check(done, args)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return CliRun(done.returncode, wall, cpu, stderr=done.stderr)


def run_instrumented(
    args: Sequence[str],
    *,
    api_key: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> CliRun:
    """``kaiko-liq ARGS`` through :mod:`benchmarks.cli_worker`; raises if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.cli_worker", str(result), *args],
            env=_env(api_key, env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=_REPO,
            check=False,
        )
        wall = time.perf_counter() - t0
        _check(done, args)
        r = json.loads(result.read_text(encoding="utf-8"))
    return CliRun(
        status=int(r["status"]),
        wall=wall,
        process_cpu=float(r["process_cpu_s"]),
        loop_cpu=float(r["loop_cpu_s"]),
        requests=int(r["requests"]),
        peak_rss_bytes=int(r["peak_rss_bytes"]),
        stderr=done.stderr,
    )
