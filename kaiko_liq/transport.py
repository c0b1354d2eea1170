"""The one place aiohttp is called: session, shared limiter, timeouts and the retry loop.

Everything it decides is delegated to pure pieces: :mod:`kaiko_liq.protocol` says what an
answer means, :mod:`kaiko_liq.retry` whether and how long to wait. This module only
sends, sleeps and counts.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
import anyio
from aiolimiter import AsyncLimiter
from yarl import URL

from .errors import (
    ClientClosedError,
    KaikoLiqError,
    MalformedBodyError,
    RequestTimeoutError,
    TransportError,
    UnexpectedResponseError,
    api_error_for_status,
    redact_url,
)
from .protocol import Page, error_message, parse_page
from .retry import (
    AdaptiveRate,
    RetryPolicy,
    may_retry,
    parse_retry_after,
    retry_delay,
    should_retry_status,
)

__all__ = ["ClientStats", "Timeouts", "Transport"]

logger = logging.getLogger("kaiko_liq")

_USER_AGENT = "kaiko-liq/0.1 (+aiohttp)"


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


@dataclass(slots=True)
class _Budget:
    """When one request's deadline ends (clock time), set at its first send."""

    ends: float | None = None


@dataclass(slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


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
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url
        self._api_key = api_key
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
        self._sleep = sleep
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r}, api_key=***)"

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
                auto_decompress=True,
            )
        return self._session

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _redact(self, message: str) -> str:
        """Kaiko's error message with the key cut out (a server or proxy that echoes
        request headers into its error page must not put the key in an exception)."""
        key = self._api_key
        return message.replace(key, "***") if key and key in message else message

    async def _send(self, url: str, params: Mapping[str, str] | None, budget: _Budget) -> _Answer:
        session = self._ensure_session()
        headers = {"Accept-Encoding": "gzip"}
        if self._api_key is not None:
            headers["X-Api-Key"] = self._api_key
        # encoded=True: a next_url is used exactly as Kaiko gave it, never re-quoted.
        target = URL(url, encoded=params is None)
        async with self._slots:
            await self.limiter.acquire()
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
                body = await response.read()
                return _Answer(response.status, response.headers, body)

    async def get_page(self, url: str, params: Mapping[str, str] | None = None) -> Page:
        """One page, retried per the policy; raises the last error when retries run out."""
        budget = _Budget()
        attempt = 0
        while True:
            retry_after: float | None = None
            error: KaikoLiqError
            try:
                answer = await self._send(url, params, budget)
            except TimeoutError:
                error = RequestTimeoutError(
                    f"no answer within {self._timeouts.connect:g}s (connect), "
                    f"{self._timeouts.read:g}s (read) or the {self._policy.deadline:g}s "
                    "deadline of the request",
                    url,
                )
            except (aiohttp.ClientError, ConnectionError) as exc:
                error = TransportError(f"connection failed: {type(exc).__name__}: {exc}", url)
            else:
                self.stats.by_status[answer.status] += 1
                self.stats.bytes_received += len(answer.body)
                if 300 <= answer.status < 400:
                    location = redact_url(answer.headers.get("Location", "(no Location)"))
                    raise UnexpectedResponseError(
                        f"HTTP {answer.status} redirect to {location}; not followed, so the "
                        "API key stays with the configured host",
                        url,
                    )
                if should_retry_status(answer.status):
                    message = self._redact(error_message(answer.body))
                    error = api_error_for_status(answer.status, message, url)
                    retry_after = parse_retry_after(answer.headers.get("Retry-After"))
                    if answer.status == 429:
                        self.stats.rate_limited += 1
                        if self.adaptive is not None:
                            # The limit is per key: hold every request, not just this one.
                            self.adaptive.on_rate_limited(retry_after)
                else:
                    try:
                        page = parse_page(answer.status, answer.body, url, redact=self._redact)
                    except MalformedBodyError as exc:
                        error = exc
                    else:
                        if self.adaptive is not None:
                            self.adaptive.on_success()
                        self.stats.pages += 1
                        self.stats.rows += len(page.rows)
                        return page
            attempt += 1
            delay = retry_delay(
                attempt - 1, self._policy, retry_after=retry_after, random=self._rng
            )
            elapsed = self._policy.deadline - ((budget.ends or self._clock()) - self._clock())
            if not may_retry(attempt, self._policy, elapsed=elapsed, delay=delay):
                raise error
            self.stats.retries += 1
            logger.info(
                "retrying %s in %.2fs (attempt %d of %d): %s",
                redact_url(url),
                delay,
                attempt + 1,
                self._policy.max_attempts,
                error,
            )
            await self._sleep(delay)
