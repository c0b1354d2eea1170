"""The emulator's command line: ``python -m kaiko_liq.emulator`` and ``kaiko-liq emulator``.

Both front ends share :func:`add_arguments` and :func:`run`. The base URL is the first
line on stdout, flushed as soon as the server listens, so a script can start the
emulator on a free port (``--port 0``) and read where it is. SIGINT and SIGTERM stop it
cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from ..errors import InvalidArgumentError
from .config import EmulatorConfig
from .data import DATA_END, DATA_START
from .server import running_emulator

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options (one per :class:`EmulatorConfig` field) to ``parser``."""
    defaults = EmulatorConfig()
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=0, help="port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--latency", type=float, default=defaults.latency, help="seconds added to each request"
    )
    parser.add_argument(
        "--jitter", type=float, default=defaults.jitter, help="up to this many extra seconds"
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=defaults.rate_limit,
        metavar="R",
        help="requests per second per API key, burst of one second (default: no limit)",
    )
    parser.add_argument(
        "--no-retry-after",
        dest="retry_after",
        action="store_false",
        help="send no Retry-After header with 429 answers",
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=defaults.fault_rate,
        metavar="P",
        help="probability of a 500/502/503, dropped connection or truncated body",
    )
    parser.add_argument(
        "--page-cap",
        type=int,
        default=defaults.page_cap,
        metavar="N",
        help="serve at most N rows per page whatever page_size asks",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of the data and the faults"
    )
    parser.add_argument(
        "--api-key",
        default=defaults.api_key,
        metavar="K",
        help="accept only this X-Api-Key (default: any non-empty key)",
    )
    parser.add_argument(
        "--empty-last-page",
        action="store_true",
        help="give every full page a next_url, so the stream can end on an empty page",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; the exit status (0, or 2 for a bad option)."""
    try:
        config = EmulatorConfig(
            latency=args.latency,
            jitter=args.jitter,
            rate_limit=args.rate_limit,
            retry_after=args.retry_after,
            fault_rate=args.fault_rate,
            page_cap=args.page_cap,
            seed=args.seed,
            api_key=args.api_key,
            empty_last_page=args.empty_last_page,
        )
    except InvalidArgumentError as exc:
        print(f"kaiko-liq emulator: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(config, args.host, args.port))
    except OSError as exc:  # the port is taken, the host is not ours...
        print(
            f"kaiko-liq emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    return 0


async def _serve(config: EmulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Installed before listening, so a signal sent as soon as the URL is read still
    # stops the server cleanly instead of killing it with a traceback.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_emulator(config, host=host, port=port) as emu:
            print(emu.base_url, flush=True)
            key = "any non-empty X-Api-Key" if config.api_key is None else "the X-Api-Key set"
            print(
                "kaiko-liq emulator: serving SYNTHETIC data (not Kaiko's) from "
                f"{DATA_START:%Y-%m-%d} to {DATA_END:%Y-%m-%d}, seed {config.seed}; "
                f"GET {emu.base_url}/v2/data/liquidation.v1/token/{{asset}} with {key}",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
