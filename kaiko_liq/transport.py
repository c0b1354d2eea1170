"""The one place aiohttp is called: session, shared limiter, timeouts and the retry loop.

Everything it decides is delegated to pure pieces: :func:`kaiko_liq.protocol.decipher`
says what an answer means, :mod:`kaiko_liq.retry` whether and how long to wait. This
module only sends, reads (at most ``max_response_bytes``), sleeps and counts.

Bodies are read raw (aiohttp's own decompression is off) and inflated by ``decipher``
in a worker thread: inflating releases the GIL, so it runs beside the event loop, and
the cap holds for the inflated size too, so a gzip bomb stops at the cap. At most
:data:`DECODE_THREADS` answers are inflated and decoded in threads at once, and one more
(a small body) on the loop, so memory stays under about
``(DECODE_THREADS + 1) * max_response_bytes`` whatever ``max_concurrency`` is.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import anyio
import anyio.to_thread
from aiolimiter import AsyncLimiter
from yarl import URL

from . import testing
from .errors import (
    ClientClosedError,
    ConnectError,
    InvalidArgumentError,
    KaikoLiqError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TransportError,
    redact,
    redact_url,
    register_secret,
)
from .models import decode_page
from .protocol import Page, Retry, decipher
from .retry import (
    AdaptiveRate,
    RetryPolicy,
    may_retry,
    retry_delay,
)

__all__ = [
    "DECODE_THREADS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "THREAD_BODY_BYTES",
    "ClientStats",
    "Timeouts",
    "Transport",
]

logger = logging.getLogger("kaiko_liq")

_USER_AGENT = "kaiko-liq/0.1 (+aiohttp)"
#: Cap on one answer's body, compressed and once inflated: a 1000-row page is about
#: 1.4 MB of JSON, so this leaves room for any honest page while a gzip bomb stops here.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Answers inflated and decoded at once (in worker threads). Two keep both cores of a
#: small machine busy; more would only hold more bodies in memory at the same time.
DECODE_THREADS = 2
#: Bodies (as received) from this size are inflated and decoded in a worker thread;
#: smaller ones on the loop, where the thread hop (about a millisecond) would dominate.
#: A gzipped 1000-row page is about 150 kB.
THREAD_BODY_BYTES = 64 * 1024


async def _sleep(seconds: float) -> None:
    """The retry wait; none under :func:`kaiko_liq.testing.set_testing` (a test that
    injects its own ``sleep`` sees the real delay either way)."""
    await anyio.sleep(0.0 if testing.sleeps_removed() else seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Per-attempt timeouts in seconds. Kaiko answers a 1000-row page well within these;
    a stalled socket is cut after ``read`` seconds of silence and retried."""

    connect: float = 10.0
    read: float = 30.0


@dataclass(slots=True)
class ClientStats:
    """Cumulative counters of one client (all calls together)."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    pages: int = 0
    rows: int = 0
    bytes_received: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    #: The last transient error that was retried (redacted), for progress lines.
    last_error: str | None = None


@dataclass(slots=True)
class _Budget:
    """When one request's deadline ends (clock time), set at its first send."""

    ends: float | None = None


@dataclass(slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


def _connect_error(exc: aiohttp.ClientConnectorError, url: str) -> ConnectError:
    """One short line naming the host, for a connection that could not be made."""
    host, cause = exc.host, exc.os_error
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        reason = cause.strerror or str(cause)
        message = f"cannot resolve the host name {host!r} ({reason}); check it and the network"
    else:
        # asyncio words it "Connect call failed ('127.0.0.1', 1)"; the errno says why.
        reason = os.strerror(cause.errno) if cause.errno else str(cause) or "no reason given"
        message = f"cannot connect to {host} port {exc.port} ({reason}); is the server up?"
    return ConnectError(message, url, host=host)


class Transport:
    """Sends GETs with the key to one origin, under one limiter and one concurrency cap."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        rate_limit: float,
        max_concurrency: int,
        timeouts: Timeouts,
        retry_policy: RetryPolicy,
        adaptive_rate: bool,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes < 1
        ):
            raise InvalidArgumentError(
                f"max_response_bytes must be a positive integer (bytes), got "
                f"{max_response_bytes!r}; the default is {DEFAULT_MAX_RESPONSE_BYTES:,}"
            )
        self.base_url = base_url
        self._api_key = api_key
        self._secrets = (api_key,) if api_key else ()
        register_secret(api_key)
        self.max_response_bytes = max_response_bytes
        self._decoders = anyio.CapacityLimiter(DECODE_THREADS)
        self._timeouts = timeouts
        self._policy = retry_policy
        self._max_concurrency = max_concurrency
        self._slots = anyio.Semaphore(max_concurrency)
        self.limiter = AsyncLimiter(rate_limit, 1.0)
        self.adaptive = (
            AdaptiveRate(self.limiter, ceiling=rate_limit, clock=clock) if adaptive_rate else None
        )
        self.stats = ClientStats()
        self._rng = rng
        self._sleep = _sleep if sleep is None else sleep
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        #: The server's clock at its latest answer that gave one, and our monotonic
        #: ``clock()`` when it came: the server's "now" is that plus the time since.
        self.server_clock: tuple[datetime, float] | None = None

    def __repr__(self) -> str:
        return f"Transport(base_url={redact_url(self.base_url)!r}, api_key=***)"

    @property
    def closed(self) -> bool:
        return self._closed

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError(ClientClosedError.CLIENT_CLOSED)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_concurrency),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self._timeouts.connect, sock_read=self._timeouts.read
                ),
                headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
                # Inflated by decipher under the size cap (in a worker thread when large).
                auto_decompress=False,
            )
        return self._session

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def server_now(self) -> datetime | None:
        """The server's clock now, as its latest answer gave it; ``None`` before one did."""
        if self.server_clock is None:
            return None
        told, at = self.server_clock
        return told + timedelta(seconds=max(0.0, self._clock() - at))

    def redact(self, text: str) -> str:
        """``text`` without this transport's key (see :func:`kaiko_liq.errors.redact`)."""
        return redact(text, self._secrets)

    async def _send(self, url: str, params: Mapping[str, str] | None, budget: _Budget) -> _Answer:
        self._ensure_session()  # a closed client fails here, before it queues
        headers = {"Accept-Encoding": "gzip"}
        if self._api_key is not None:
            headers["X-Api-Key"] = self._api_key
        # encoded=True: a next_url is used exactly as Kaiko gave it, never re-quoted.
        target = URL(url, encoded=params is None)
        async with self._slots:
            await self.limiter.acquire()
            # Taken now, not before the queue: the client may have closed meanwhile, and
            # aiohttp would then raise its own RuntimeError instead of ClientClosedError.
            session = self._ensure_session()
            # The deadline runs from the first send, not from the queue for the limiter:
            # a shard waiting its turn in a long backfill has not been failing.
            now = self._clock()
            if budget.ends is None:
                budget.ends = now + self._policy.deadline
            remaining = budget.ends - now
            if remaining <= 0:
                raise TimeoutError
            timeout = aiohttp.ClientTimeout(
                total=remaining, connect=self._timeouts.connect, sock_read=self._timeouts.read
            )
            self.stats.requests += 1
            # No redirects: aiohttp would carry X-Api-Key to wherever a 3xx points.
            async with session.get(
                target, params=params, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                body = await self._read(response, url)
                return _Answer(response.status, response.headers, body)

    async def _read(self, response: aiohttp.ClientResponse, url: str) -> bytes:
        """The raw body, refused as soon as it is larger than the cap."""
        cap = self.max_response_bytes
        declared = response.content_length
        if declared is not None and declared > cap:
            raise self._too_large(url)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            self.stats.bytes_received += len(chunk)
            if size > cap:
                chunks.clear()  # the error's traceback keeps this frame alive
                raise self._too_large(url)
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self, url: str) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"the answer is larger than max_response_bytes ({self.max_response_bytes:,} "
            "bytes); stopped reading, nothing of it was kept",
            url,
        )

    async def _decipher(
        self, answer: _Answer, url: str, decode: Callable[[bytes], Any]
    ) -> Page[Any] | Retry:
        if len(answer.body) < THREAD_BODY_BYTES:
            # Small answers (errors, short pages): the hop to a thread would cost more
            # than the work. One at a time on the loop, so memory stays bounded too.
            return decipher(
                answer.status,
                answer.headers,
                answer.body,
                url,
                decode=decode,
                max_bytes=self.max_response_bytes,
                secrets=self._secrets,
            )
        stop = threading.Event()
        work = functools.partial(
            decipher,
            answer.status,
            answer.headers,
            answer.body,
            url,
            decode=decode,
            max_bytes=self.max_response_bytes,
            secrets=self._secrets,
            stopped=stop.is_set,
        )
        try:
            # Abandoned on cancel (Ctrl-C), and told to stop: no one waits for the thread.
            return await anyio.to_thread.run_sync(
                work, limiter=self._decoders, abandon_on_cancel=True
            )
        finally:
            stop.set()

    async def get_page(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        decode: Callable[[bytes], Any] = decode_page,
    ) -> Page[Any]:
        """One page, decoded by ``decode`` (the route's), retried per the policy; raises
        the last error when retries run out."""
        budget = _Budget()
        attempt = 0
        while True:
            outcome: Page[Any] | Retry
            try:
                answer = await self._send(url, params, budget)
            except TimeoutError:
                outcome = Retry(
                    RequestTimeoutError(
                        f"no answer within {self._timeouts.connect:g}s (connect), "
                        f"{self._timeouts.read:g}s (read) or the {self._policy.deadline:g}s "
                        "deadline of the request",
                        url,
                    )
                )
            except aiohttp.ClientConnectorError as exc:
                outcome = Retry(_connect_error(exc, url))
            except (aiohttp.ClientError, ConnectionError) as exc:
                message = self.redact(f"connection failed: {type(exc).__name__}: {exc}")
                outcome = Retry(TransportError(message, url))
            else:
                self.stats.by_status[answer.status] += 1
                outcome = await self._decipher(answer, url, decode)
            if isinstance(outcome, Page):
                if self.adaptive is not None:
                    self.adaptive.on_success()
                self.stats.pages += 1
                self.stats.rows += len(outcome.rows)
                if outcome.server_time is not None:
                    self.server_clock = (outcome.server_time, self._clock())
                return outcome
            if outcome.rate_limited:
                self.stats.rate_limited += 1
                if self.adaptive is not None:
                    # The limit is per key: hold every request, not just this one.
                    self.adaptive.on_rate_limited(outcome.retry_after)
            error: KaikoLiqError = outcome.error
            attempt += 1
            delay = retry_delay(
                attempt - 1, self._policy, retry_after=outcome.retry_after, random=self._rng
            )
            elapsed = self._policy.deadline - ((budget.ends or self._clock()) - self._clock())
            if not may_retry(attempt, self._policy, elapsed=elapsed, delay=delay):
                raise error
            if isinstance(error, ConnectError) and elapsed + delay > self._policy.connect_deadline:
                raise error
            self.stats.retries += 1
            self.stats.last_error = str(error)
            logger.info(
                "retrying %s in %.2fs (attempt %d of %d): %s",
                redact_url(url, self._secrets),
                delay,
                attempt + 1,
                self._policy.max_attempts,
                error,
            )
            await self._sleep(delay)
