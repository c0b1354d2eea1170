"""Shared fixtures: a real emulator over loopback, a factory for configured ones, and a
one-handler server (``serve``) for answers no emulator gives.

``emulator`` is a well-behaved server (no latency, no rate limit, no faults, seed 0) that
accepts any non-empty API key. ``make_emulator(**config)`` starts one with the given
:class:`~kaiko_liq.emulator.EmulatorConfig` fields; every emulator it started is stopped
at teardown. Both run on the fixed clock :data:`FIXED_NOW` unless given ``now=``, so
every test sees the same data (everything up to 2026-11-01, all of it final).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from kaiko_liq.emulator import EmulatorConfig, RunningEmulator, running_emulator
from tests.mock_http import aioresponses

pytest_plugins = ["tests.s3"]  # moto S3 server fixtures: s3, faulty_s3, moto_auth_endpoint

EmulatorFactory = Callable[..., Awaitable[RunningEmulator]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Serve = Callable[[Handler], Awaitable[str]]

#: The emulators' clock in tests: the data ends here (exclusive) and is all settled.
FIXED_NOW = datetime(2026, 11, 1, tzinfo=UTC)
#: A pid no process has (above Linux's largest pid_max): a killed writer's, in the
#: temporary file names of tests.
DEAD_PID = 2**22 + 1


@pytest.fixture
def api_key() -> str:
    return "test-key"


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    config = EmulatorConfig(latency=0.0, rate_limit=None, fault_rate=0.0, seed=0, now=FIXED_NOW)
    async with running_emulator(config, host="127.0.0.1", port=0) as emu:
        yield emu


@pytest_asyncio.fixture
async def make_emulator() -> AsyncIterator[EmulatorFactory]:
    async with AsyncExitStack() as stack:

        async def make(**config: Any) -> RunningEmulator:
            """Start an emulator; keyword arguments are EmulatorConfig fields (``now``
            defaults to FIXED_NOW)."""
            config.setdefault("now", FIXED_NOW)
            return await stack.enter_async_context(
                running_emulator(EmulatorConfig(**config), host="127.0.0.1", port=0)
            )

        yield make


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    """aioresponses intercepting every aiohttp request of the test."""
    with aioresponses() as m:
        yield m


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a one-handler server on a free loopback port; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handler)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()
