"""A Kaiko emulator: a real aiohttp server for ``/v2/data/liquidation.v1/token/{asset}``
and the events route ``/v2/data/liquidation.v1/trades/{exchange}/{instrument_class}/
{instrument}`` (single liquidations on :data:`INSTRUMENTS` that add up, per asset, exchange
and hour, to the token route's figures; see :mod:`.events`).

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
from .events import (
    DENSE_INSTRUMENT,
    INSTRUMENT_CLASSES,
    INSTRUMENTS,
    SPARSE_INSTRUMENT,
    SYNTHETIC_ID_EXCHANGES,
    Instrument,
    events_for,
)
from .events_route import EVENTS_ROUTE
from .server import RunningEmulator, running_emulator
from .stats import DROPPED, EmulatorStats

__all__ = [
    "ASSETS",
    "DATA_START",
    "DENSE_INSTRUMENT",
    "DROPPED",
    "EVENTS_ROUTE",
    "EXCHANGES",
    "INSTRUMENTS",
    "INSTRUMENT_CLASSES",
    "PAGING_MODES",
    "SPARSE_ASSET",
    "SPARSE_INSTRUMENT",
    "SYNTHETIC_ID_EXCHANGES",
    "EmulatorConfig",
    "EmulatorConfigError",
    "EmulatorStats",
    "Instrument",
    "RunningEmulator",
    "create_app",
    "events_for",
    "rows_for",
    "running_emulator",
]
