"""Running the emulator on a real socket: ``async with running_emulator(...) as emu``."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from .app import STATS_KEY, create_app
from .config import EmulatorConfig
from .stats import EmulatorStats

__all__ = ["RunningEmulator", "running_emulator"]

#: Seconds a stopping server waits for requests in flight before cancelling them.
_SHUTDOWN_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class RunningEmulator:
    """A listening emulator: where it is, how it is configured, what it has seen."""

    base_url: str  # e.g. "http://127.0.0.1:53817", no trailing slash
    config: EmulatorConfig
    stats: EmulatorStats
    app: web.Application


def _base_url(sockname: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host, port = sockname[0], sockname[1]
    if ipaddress.ip_address(host).version == 6:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningEmulator]:
    """Serve the emulator on ``host:port`` (``port=0``: a free port) until the block ends.

    >>> async with running_emulator(EmulatorConfig(rate_limit=50)) as emu:  # doctest: +SKIP
    ...     url = emu.base_url + "/v2/data/liquidation.v1/token/eth"
    """
    config = config or EmulatorConfig()
    app = create_app(config)
    # handler_cancellation: a client that gives up (a timeout) cancels its handler, so a
    # long latency never outlives the request; access_log off: tests and benchmarks
    # would drown in it.
    runner = web.AppRunner(
        app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield RunningEmulator(
            base_url=_base_url(runner.addresses[0]),
            config=config,
            stats=app[STATS_KEY],
            app=app,
        )
    finally:
        await runner.cleanup()
