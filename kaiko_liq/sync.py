"""Blocking faces of the client: ``kaiko_liq.fetch(...)``, ``kaiko_liq.fetch_frame(...)``
and ``kaiko_liq.fetch_events(...)``, each taking the client's arguments too.

Each call makes its own :class:`~kaiko_liq.client.LiquidationClient`, runs the async call
on an event loop of its own and closes everything before it returns, so calls are
independent (no loop or session outlives one). From a plain script that loop is
``asyncio.run``'s; where a loop is already running in this thread (a Jupyter cell, an
async application calling blocking code), it runs in a worker thread while this one
waits; unless that running loop is the one serving ``base_url`` (an emulator started
in the same thread), which could not answer while this thread waits: that call is
refused at once, pointing to the async form. Ctrl-C cancels the call either way: the
client's session is closed, and ``KeyboardInterrupt`` (or, inside a running loop's task,
``CancelledError``) comes out.

Example::

    import kaiko_liq

    frame = kaiko_liq.fetch_frame(["btc", "eth"], "2025-02-01", "2025-03-01", emulator=True)
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from .client import DEFAULT_MAX_CONCURRENCY, DEFAULT_RATE_LIMIT, LiquidationClient
from .errors import InvalidArgumentError, redact_url
from .models import LiquidationEvent, LiquidationRow
from .query import TimeLike
from .retry import RetryPolicy
from .settle import RECHECK, SETTLE
from .transport import DEFAULT_MAX_RESPONSE_BYTES, Timeouts

__all__ = [
    "BUILTIN_EMULATOR_NAMESPACE",
    "builtin_emulator_client",
    "fetch",
    "fetch_events",
    "fetch_frame",
]

logger = logging.getLogger("kaiko_liq")

T = TypeVar("T")

#: How often a caller waiting on the worker thread checks whether its own task was
#: cancelled (asyncio.run's Ctrl-C handler cancels the main task instead of raising).
_POLL_SECONDS = 0.05


def fetch(
    asset: str,
    start: TimeLike,
    end: TimeLike,
    *,
    interval: str = "1h",
    sort: str = "desc",
    page_size: int | None = None,
    api_key: str | None = None,
    region: str = "us",
    base_url: str | None = None,
    rate_limit: float | str = DEFAULT_RATE_LIMIT,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
    adaptive_rate: bool = True,
    allow_insecure_http: bool = False,
    allow_credentials: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    settle: timedelta | str = SETTLE,
    recheck: timedelta | str | int = RECHECK,
    storage_options: Mapping[str, Any] | None = None,
    emulator: bool = False,
) -> list[LiquidationRow]:
    """Blocking :meth:`LiquidationClient.fetch`: every row of ``[start, end)`` in ``sort``
    order. The keyword arguments after ``page_size`` are the client's; ``emulator=True``
    starts the built-in emulator (synthetic data) for the call instead of using Kaiko."""
    options = _client_options(locals())

    async def call(client: LiquidationClient) -> list[LiquidationRow]:
        return await client.fetch(
            asset, start, end, interval=interval, sort=sort, page_size=page_size
        )

    _refuse_self_served("fetch", options["base_url"])
    return _run(lambda: _with_client(options, emulator, call))


def fetch_frame(
    assets: str | Iterable[str],
    start: TimeLike,
    end: TimeLike,
    *,
    interval: str = "1h",
    sort: str = "asc",
    page_size: int | None = None,
    backend: str = "pandas",
    shape: str = "totals",
    api_key: str | None = None,
    region: str = "us",
    base_url: str | None = None,
    rate_limit: float | str = DEFAULT_RATE_LIMIT,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
    adaptive_rate: bool = True,
    allow_insecure_http: bool = False,
    allow_credentials: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    settle: timedelta | str = SETTLE,
    recheck: timedelta | str | int = RECHECK,
    storage_options: Mapping[str, Any] | None = None,
    emulator: bool = False,
) -> Any:
    """Blocking :meth:`LiquidationClient.fetch_frame`: one asset or several as a pandas
    or polars DataFrame or an Arrow table (``backend``), in a ``shape`` of
    :mod:`kaiko_liq.export`. Client arguments and ``emulator`` as for :func:`fetch`."""
    options = _client_options(locals())
    if not isinstance(assets, str):
        assets = list(assets)  # read once, here, not in another thread

    async def call(client: LiquidationClient) -> Any:
        return await client.fetch_frame(
            assets,
            start,
            end,
            interval=interval,
            sort=sort,
            page_size=page_size,
            backend=backend,
            shape=shape,
        )

    _refuse_self_served("fetch_frame", options["base_url"])
    return _run(lambda: _with_client(options, emulator, call))


def fetch_events(
    exchange: str,
    instrument_class: str,
    instrument: str,
    start: TimeLike,
    end: TimeLike,
    *,
    sort: str = "desc",
    page_size: int | None = None,
    api_key: str | None = None,
    region: str = "us",
    base_url: str | None = None,
    rate_limit: float | str = DEFAULT_RATE_LIMIT,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
    adaptive_rate: bool = True,
    allow_insecure_http: bool = False,
    allow_credentials: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    settle: timedelta | str = SETTLE,
    recheck: timedelta | str | int = RECHECK,
    storage_options: Mapping[str, Any] | None = None,
    emulator: bool = False,
) -> list[LiquidationEvent]:
    """Blocking :meth:`LiquidationClient.fetch_events`: every liquidation event of one
    instrument in ``[start, end)``, in ``sort`` order. Client arguments and ``emulator``
    as for :func:`fetch`."""
    options = _client_options(locals())

    async def call(client: LiquidationClient) -> list[LiquidationEvent]:
        return await client.fetch_events(
            exchange, instrument_class, instrument, start, end, sort=sort, page_size=page_size
        )

    _refuse_self_served("fetch_events", options["base_url"])
    return _run(lambda: _with_client(options, emulator, call))


_CLIENT_ARGUMENTS = (
    "api_key",
    "region",
    "base_url",
    "rate_limit",
    "max_concurrency",
    "timeouts",
    "retry",
    "adaptive_rate",
    "allow_insecure_http",
    "allow_credentials",
    "cache_dir",
    "max_response_bytes",
    "settle",
    "recheck",
    "storage_options",
)


def _client_options(arguments: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(arguments["emulator"], bool):
        raise InvalidArgumentError(f"emulator must be True or False, got {arguments['emulator']!r}")
    if arguments["emulator"] and arguments["base_url"] is not None:
        raise InvalidArgumentError(
            "pass either emulator=True (the built-in emulator) or base_url=..., not both"
        )
    return {name: arguments[name] for name in _CLIENT_ARGUMENTS}


#: The built-in emulator's folder under a ``cache_dir``: it listens on a new port each
#: time, but its settled data never changes, so its cache must outlive the port.
BUILTIN_EMULATOR_NAMESPACE = "builtin-emulator"


@asynccontextmanager
async def builtin_emulator_client(**options: Any) -> AsyncIterator[LiquidationClient]:
    """A client of a fresh in-process emulator (SYNTHETIC data) on a free loopback port;
    ``options`` are :class:`LiquidationClient`'s. What ``emulator=True`` and the CLI's
    ``--emulator`` run."""
    from .emulator import EmulatorConfig, running_emulator

    # Pages unzipped: in one process, gzip would only cost both sides CPU.
    async with running_emulator(EmulatorConfig(gzip=False), host="127.0.0.1", port=0) as emu:
        options = {"cache_namespace": BUILTIN_EMULATOR_NAMESPACE, **options}
        async with LiquidationClient(base_url=emu.base_url, **options) as client:
            yield client


async def _with_client(
    options: dict[str, Any],
    emulator: bool,
    call: Callable[[LiquidationClient], Awaitable[T]],
) -> T:
    if not emulator:
        async with LiquidationClient(**options) as client:
            return await call(client)
    options = {name: value for name, value in options.items() if name != "base_url"}
    async with builtin_emulator_client(**options) as client:
        # Said every time: synthetic figures must never pass for Kaiko's.
        logger.info(
            "emulator=True: SYNTHETIC data from the built-in emulator at %s", client.base_url
        )
        return await call(client)


def _refuse_self_served(name: str, base_url: object) -> None:
    """Refuse a blocking call whose server listens on this thread's running loop (an
    emulator started with ``async with running_emulator()``): that loop cannot answer
    while this thread waits, so the call would only time out, minutes later."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if not isinstance(base_url, str):
        return
    try:
        url = urlsplit(base_url)
        port = url.port
    except ValueError:
        return  # the client refuses it, with a better message
    if port is None or not _is_local(url.hostname or "") or port not in _served_ports(loop):
        return
    raise InvalidArgumentError(
        f"kaiko_liq.{name}() blocks this thread, but {redact_url(base_url)} is served by the "
        f"event loop running on it, which could not answer until the call gave up; "
        f"in async code use the async form: "
        f"async with LiquidationClient(base_url=...) as client: await client.{name}(...)"
    )


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _served_ports(loop: asyncio.AbstractEventLoop) -> set[int]:
    """Ports of the listening sockets a selector loop watches (empty for another kind of
    loop: the call then takes the worker-thread path, as before)."""
    selector = getattr(loop, "_selector", None)
    if selector is None:
        return set()
    ports: set[int] = set()
    for key in list(selector.get_map().values()):
        fd = key.fileobj if isinstance(key.fileobj, int) else key.fileobj.fileno()
        try:
            # A duplicate of the descriptor: closing it leaves the loop's own alone.
            with socket.socket(fileno=os.dup(fd)) as sock:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    ports.add(sock.getsockname()[1])
        except (OSError, IndexError, TypeError):
            continue  # not a socket (a pipe, the loop's self-pipe), or not an inet one
    return ports


def _run(make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()`` to completion on a loop of its own and return its result."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is None:
        # asyncio.run cancels the task on Ctrl-C (the client's `async with` then closes
        # its session) and raises KeyboardInterrupt once it has unwound.
        return asyncio.run(_awaited(make))
    return _Worker(make).run()


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


class _Worker(Generic[T]):
    """``make()`` on a fresh loop in a worker thread, while a running loop's thread waits.

    Ctrl-C in the waiting thread (a ``KeyboardInterrupt``, or the cancellation of its
    task by ``asyncio.run``'s handler) cancels the worker's task and waits for it to
    unwind, so nothing is left open, then comes out as itself.
    """

    def __init__(self, make: Callable[[], Awaitable[T]]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False
        self._result: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._target, name="kaiko-liq-sync", daemon=True)

    def run(self) -> T:
        caller = asyncio.current_task()
        self._thread.start()
        try:
            while self._thread.is_alive():
                self._thread.join(_POLL_SECONDS)
                if caller is not None and caller.cancelling():
                    self._cancel()
                    raise asyncio.CancelledError
        except KeyboardInterrupt:
            self._cancel()
            raise
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]  # set when no error

    def _cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)
        # Wait for it to unwind (sessions closed): quick; a second Ctrl-C stops waiting.
        self._thread.join()

    def _target(self) -> None:
        try:
            self._result = asyncio.run(self._main())
        except BaseException as exc:  # handed to the waiting thread, which raises it
            self._error = exc

    async def _main(self) -> T:
        with self._lock:
            if self._cancelled:
                raise asyncio.CancelledError
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
        return await self._make()
