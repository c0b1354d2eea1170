"""A Kaiko emulator: a real aiohttp server for ``/v2/data/liquidation.v1/token/{asset}``.

It serves deterministic synthetic data (see :mod:`.data`) in the exact envelope of the
endpoint doc's example, pages with signed continuation tokens, and misbehaves on request:
latency, per-key rate limits, 5xx, dropped connections, truncated bodies, capped pages.

>>> async with running_emulator(EmulatorConfig(latency=0.05)) as emu:  # doctest: +SKIP
...     print(emu.base_url, emu.stats.by_status)

Run it standalone with ``python -m kaiko_liq.emulator --port 8080``.
"""

from .app import create_app
from .config import EmulatorConfig
from .data import ASSETS, DATA_END, EXCHANGES, rows_for
from .server import RunningEmulator, running_emulator
from .stats import DROPPED, EmulatorStats

__all__ = [
    "ASSETS",
    "DATA_END",
    "DROPPED",
    "EXCHANGES",
    "EmulatorConfig",
    "EmulatorStats",
    "RunningEmulator",
    "create_app",
    "rows_for",
    "running_emulator",
]
