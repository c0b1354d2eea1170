"""One ``kaiko-liq`` command in a fresh process, measured from the inside.

``python -m benchmarks.cli_worker RESULT.json backfill btc eth ... --out DIR`` runs
``kaiko_liq.cli.main(argv)``, the function the ``kaiko-liq`` console script calls, and
writes one JSON object to ``RESULT.json``: the exit status, wall time from the first
import to the end, the process's CPU (user + system, every thread), the CPU of the
thread that ran the event loop while it ran, the requests sent, and the peak RSS.

How the event loop's CPU is measured: ``asyncio.Runner.run`` (which ``asyncio.run`` and
``anyio.run`` both use) is wrapped to read ``time.thread_time()``, the CPU clock of the
calling thread, before and after. The loop runs its callbacks on that thread and nothing
else does while it runs, so the difference is exactly what the loop's thread spent:
decoding, checks and whatever else was not handed to a worker thread. Work moved to
threads (``anyio.to_thread``, an executor) shows in the process's CPU, not in it.

Requests are counted by wrapping ``aiohttp.ClientSession._request``, the one coroutine
every aiohttp request goes through (a retry counts again, as it is sent again).

Peak RSS is ``VmHWM`` from ``/proc/self/status``: the high-water mark of this process's
own address space, which ``execve`` resets (``ru_maxrss`` would include the pages of the
big benchmark process this one was forked from).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.rss import peak_rss_bytes

_T0 = time.perf_counter()

__all__ = ["main"]


def _instrument() -> dict[str, float]:
    """Wrap the loop runner and aiohttp's request coroutine; counters filled as they run."""
    import asyncio

    import aiohttp

    counters = {"loop_cpu_s": 0.0, "loop_wall_s": 0.0, "requests": 0.0}
    runner_run: Callable[..., Any] = asyncio.Runner.run

    def run(self: asyncio.Runner, coro: Any, **kwargs: Any) -> Any:
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        try:
            return runner_run(self, coro, **kwargs)
        finally:
            counters["loop_cpu_s"] += time.thread_time() - cpu0
            counters["loop_wall_s"] += time.perf_counter() - wall0

    request: Callable[..., Any] = aiohttp.ClientSession._request

    async def counted(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> Any:
        counters["requests"] += 1
        return await request(self, *args, **kwargs)

    asyncio.Runner.run = run  # type: ignore[method-assign]
    aiohttp.ClientSession._request = counted  # type: ignore[method-assign]
    return counters


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(
            "usage: python -m benchmarks.cli_worker RESULT.json KAIKO-LIQ-ARGS...", file=sys.stderr
        )
        return 2
    result_path, cli_args = args[0], args[1:]
    counters = _instrument()
    from kaiko_liq.cli import main as cli_main

    try:
        status = cli_main(cli_args)
    except SystemExit as exc:  # argparse exits on a bad flag
        status = exc.code if isinstance(exc.code, int) else 1
    times = os.times()
    result = {
        "status": status,
        "wall_s": time.perf_counter() - _T0,
        "process_cpu_s": times.user + times.system,
        "loop_cpu_s": counters["loop_cpu_s"],
        "loop_wall_s": counters["loop_wall_s"],
        "requests": int(counters["requests"]),
        "peak_rss_bytes": peak_rss_bytes(),
    }
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return int(status or 0)


if __name__ == "__main__":
    raise SystemExit(main())
