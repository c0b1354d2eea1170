"""The emulator's command line: ``python -m kaiko_liq.emulator`` and ``kaiko-liq emulator``.

Both front ends share :func:`add_arguments` and :func:`run`. The base URL is the first
line on stdout, flushed as soon as the server listens, so a script can start the
emulator on a free port (``--port 0``) and read where it is. SIGINT and SIGTERM stop it
cleanly with exit status 0.

Every value is checked while the arguments are parsed, so a bad one is the parser's
error, ``PROG: error: argument --FLAG: ...``, exit status 2, before anything starts:
the port by :func:`_port`, the rest by :class:`EmulatorConfig` itself
(:func:`_config_field`), so its rules live in one place. Later failures are one line in
the same form, with the front end's ``PROG`` (``kaiko-liq`` passes its own).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from .config import PAGING_MODES, EmulatorConfig, EmulatorConfigError
from .data import DATA_START
from .events import INSTRUMENTS
from .grid import ParamError, parse_iso_time
from .server import running_emulator

__all__ = ["add_arguments", "run"]

T = TypeVar("T")
_MAX_PORT = 65_535


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _instant(text: str) -> datetime:
    try:
        return parse_iso_time(text, "--now")
    except ParamError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    port = _integer(text)
    if not 0 <= port <= _MAX_PORT:
        # Checked here: the socket layer would raise OverflowError, not OSError.
        raise argparse.ArgumentTypeError(
            f"port {port} is out of range; allowed: 0 (a free one) to {_MAX_PORT}"
        )
    return port


def _config_field(name: str, parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type`` for the :class:`EmulatorConfig` field ``name``: ``parse``,
    then the config's own check of that field alone."""

    def check(text: str) -> T:
        value = parse(text)
        fields: dict[str, Any] = {name: value}
        try:
            EmulatorConfig(**fields)
        except EmulatorConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return check


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options (one per :class:`EmulatorConfig` field) to ``parser``,
    and the events route's instruments to its help."""
    defaults = EmulatorConfig()
    # Raw, so the list keeps one line per exchange and class, and no code is cut at a '-'.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _instrument_listing()
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    parser.add_argument(
        "--port", type=_port, default=0, help="port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--latency",
        type=_config_field("latency", _number),
        default=defaults.latency,
        help="seconds added to each request",
    )
    parser.add_argument(
        "--jitter",
        type=_config_field("jitter", _number),
        default=defaults.jitter,
        help="up to this many extra seconds",
    )
    parser.add_argument(
        "--rate-limit",
        type=_config_field("rate_limit", str),
        default=defaults.rate_limit,
        metavar="R",
        help="requests per API key, as Kaiko states it: 6000/min, 100/s, or a number per "
        "second (default: no limit)",
    )
    parser.add_argument(
        "--retry-after",
        action=argparse.BooleanOptionalAction,
        default=defaults.retry_after,
        help="send a Retry-After header with 429 answers (default: no; Kaiko documents none)",
    )
    parser.add_argument(
        "--fault-rate",
        type=_config_field("fault_rate", _number),
        default=defaults.fault_rate,
        metavar="P",
        help="probability of a 500/502/503, dropped connection or truncated body",
    )
    parser.add_argument(
        "--page-cap",
        type=_config_field("page_cap", _integer),
        default=defaults.page_cap,
        metavar="N",
        help="serve at most N rows (or N buckets of time, with --paging time) per page "
        "whatever page_size asks",
    )
    parser.add_argument(
        "--paging",
        choices=PAGING_MODES,
        default=defaults.paging,
        help="size pages by rows (page_size records) or by time (page_size buckets, so a "
        "page can be short or empty and still have a next_url) (default: %(default)s)",
    )
    parser.add_argument(
        "--now",
        type=_instant,
        default=None,
        metavar="ISO",
        help="the emulator's clock, fixed at this instant (default: the system clock)",
    )
    parser.add_argument(
        "--settle-seconds",
        type=_config_field("settle_seconds", _integer),
        default=defaults.settle_seconds,
        metavar="S",
        help="a bucket is final this long after it closes (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=_integer, default=defaults.seed, help="seed of the data and the faults"
    )
    parser.add_argument(
        "--api-key",
        type=_config_field("api_key", str),
        default=defaults.api_key,
        metavar="K",
        help="accept only this X-Api-Key (default: any non-empty key)",
    )
    parser.add_argument(
        "--gzip",
        action=argparse.BooleanOptionalAction,
        default=defaults.gzip,
        help="gzip pages for clients that accept it (default: yes)",
    )
    parser.add_argument(
        "--empty-last-page",
        action="store_true",
        help="give every full page a next_url, so the stream can end on an empty page",
    )


def _instrument_listing() -> str:
    """The events route's instruments, grouped by exchange and class."""
    groups: dict[str, list[str]] = {}
    for i in INSTRUMENTS:
        groups.setdefault(f"{i.exchange}:{i.instrument_class}:", []).append(i.code)
    lines = [
        "events: GET /v2/data/liquidation.v1/trades/EXCHANGE/CLASS/INSTRUMENT for these",
        "EXCHANGE:CLASS:INSTRUMENT (e.g. binc:perpetual-future:btc-usdt):",
    ]
    for group, codes in groups.items():
        lines += textwrap.wrap(
            " ".join(codes),
            width=88,
            initial_indent=f"  {group:<24}",
            subsequent_indent=" " * 26,
            break_on_hyphens=False,
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, *, prog: str = "python -m kaiko_liq.emulator") -> int:
    """Serve until SIGINT or SIGTERM; the exit status (0, 1 if it cannot listen, or 2 for
    a bad option). Errors are one line, ``{prog}: error: ...`` (``kaiko-liq`` passes its
    own name, so they read like every other error of that command)."""
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
            paging=args.paging,
            now=args.now,
            settle_seconds=args.settle_seconds,
            gzip=args.gzip,
        )
    except EmulatorConfigError as exc:  # argparse checked each flag; this is a backstop
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(config, args.host, args.port))
    except OSError as exc:  # the port is taken, the host is not ours...
        print(f"{prog}: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
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
            clock = "now" if config.now is None else f"{config.clock():%Y-%m-%dT%H:%M:%SZ}"
            print(
                "kaiko-liq emulator: serving SYNTHETIC data (not Kaiko's) from "
                f"{DATA_START:%Y-%m-%d} to {clock}, seed {config.seed}, paging by "
                f"{config.paging}; "
                f"GET {emu.base_url}/v2/data/liquidation.v1/token/{{asset}} with {key}; "
                f"events: GET {emu.base_url}/v2/data/liquidation.v1/trades/{{exchange}}/"
                f"{{instrument_class}}/{{instrument}} for {len(INSTRUMENTS)} instruments "
                f"(e.g. {INSTRUMENTS[0]}; an unknown one's 404 lists them all)",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
