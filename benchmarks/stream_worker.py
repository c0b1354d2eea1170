"""One streaming run in a fresh process, for the memory scenario.

``python -m benchmarks.stream_worker BASE_URL ASSET START END OUT`` streams the window
with ``client.stream`` and writes each row to ``OUT`` as a JSON line as soon as it
arrives, then prints one JSON object: rows, requests, wall time, RSS before streaming
and peak RSS of this process (``VmHWM``; ``ru_maxrss`` where there is no /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import BinaryIO

import msgspec
import psutil

from benchmarks.rss import peak_rss_bytes
from kaiko_liq import LiquidationClient


async def _stream(args: argparse.Namespace, out: BinaryIO) -> dict[str, int]:
    encoder = msgspec.json.Encoder()
    rows = 0
    async with LiquidationClient(
        "bench-memory", base_url=args.base_url, rate_limit=args.rate_limit
    ) as client:
        stream = client.stream(args.asset, args.start, args.end, window=args.window)
        async with stream:
            async for row in stream:
                # A buffered write per row, as a user's export loop would do it.
                out.write(encoder.encode(row))
                out.write(b"\n")
                rows += 1
        return {"rows": rows, "requests": int(client.stats.requests)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base_url")
    parser.add_argument("asset")
    parser.add_argument("start")
    parser.add_argument("end")
    parser.add_argument("out")
    parser.add_argument("--rate-limit", type=float, default=1000.0)
    parser.add_argument(
        "--window", type=int, default=None, help="client.stream's read-ahead (default: its own)"
    )
    args = parser.parse_args(argv)
    rss_before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    with open(args.out, "wb") as out:
        counts = asyncio.run(_stream(args, out))
    wall = time.perf_counter() - t0
    print(
        json.dumps(
            {
                **counts,
                "wall_s": wall,
                "rss_before_bytes": rss_before,
                "peak_rss_bytes": peak_rss_bytes(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
