"""A Kaiko emulator: a real aiohttp server for ``/v2/data/liquidation.v1/token/{asset}``.

It serves deterministic synthetic data (see :mod:`.data`) from 2025-01-08 up to now in
the exact envelope of the endpoint doc's example, pages by rows or by time with signed
continuation tokens, and misbehaves on request: latency, per-key rate limits, 5xx,
dropped connections, truncated bodies, capped pages. It is its own server: of the client
it imports only the wire models (:mod:`kaiko_liq.models`).

>>> async with running_emulator(EmulatorConfig(latency=0.05)) as emu:  # doctest: +SKIP
...     print(emu.base_url, emu.stats.by_status)

Run it standalone with ``python -m kaiko_liq.emulator --port 8080``.
"""

from .app import create_app
from .config import PAGING_MODES, EmulatorConfig, EmulatorConfigError
from .data import ASSETS, DATA_START, EXCHANGES, SPARSE_ASSET, rows_for
from .server import RunningEmulator, running_emulator
from .stats import DROPPED, EmulatorStats

__all__ = [
    "ASSETS",
    "DATA_START",
    "DROPPED",
    "EXCHANGES",
    "PAGING_MODES",
    "SPARSE_ASSET",
    "EmulatorConfig",
    "EmulatorConfigError",
    "EmulatorStats",
    "RunningEmulator",
    "create_app",
    "rows_for",
    "running_emulator",
]
