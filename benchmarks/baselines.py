"""The two clients kaiko-liq is measured against, written the obvious way.

* :func:`sequential_next_url` is the loop Kaiko's docs show: one request with the
  query, then follow ``next_url`` until it is absent, one request at a time, with the
  server's default page size (no ``page_size`` parameter, so 100 rows a page).
* :func:`per_day_gather` is the obvious "split by day" client: one query per UTC day
  and asset, all gathered at once behind a semaphore, ``page_size=1000``, following
  ``next_url`` if a day ever needs a second page.

Neither has a rate limiter. Both retry a 429 naively, after a fixed one-second sleep
(without it the per-day client could not finish); every 429 is counted. Any other error
status fails the run: a baseline that quietly returns less data would flatter itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from kaiko_liq.query import format_time

__all__ = ["BaselineResult", "per_day_gather", "sequential_next_url"]

_PATH = "/v2/data/liquidation.v1/token/{asset}"
#: The naive retry: sleep this long after a 429, then send the same request again.
RETRY_SLEEP = 1.0
#: A runaway guard: no window in these benchmarks needs more pages than this per query.
_MAX_PAGES = 100_000


@dataclass(slots=True)
class BaselineResult:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: int = 0
    rate_limited: int = 0


class _Session:
    """An aiohttp session plus counters; one GET that retries 429s after a fixed sleep."""

    def __init__(self, session: aiohttp.ClientSession, result: BaselineResult) -> None:
        self.session = session
        self.result = result

    async def get_json(self, url: str, params: dict[str, str] | None) -> dict[str, Any]:
        while True:
            self.result.requests += 1
            async with self.session.get(url, params=params) as resp:
                if resp.status == 429:
                    self.result.rate_limited += 1
                    await resp.read()
                else:
                    if resp.status != 200:
                        text = await resp.text()
                        raise RuntimeError(f"HTTP {resp.status} from {url}: {text[:200]}")
                    body: dict[str, Any] = await resp.json(content_type=None)
                    return body
            await asyncio.sleep(RETRY_SLEEP)

    async def follow(self, url: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """The first page with ``params``, then each ``next_url`` exactly as given."""
        rows: list[dict[str, Any]] = []
        next_url: str | None = url
        next_params: dict[str, str] | None = params
        for _ in range(_MAX_PAGES):
            if not next_url:
                return rows
            body = await self.get_json(next_url, next_params)
            rows.extend(body.get("data") or [])
            next_url, next_params = body.get("next_url"), None
        raise RuntimeError(f"more than {_MAX_PAGES} pages from {url}")


def _session(api_key: str, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"X-Api-Key": api_key, "Accept": "application/json"},
        timeout=aiohttp.ClientTimeout(total=120),
        connector=aiohttp.TCPConnector(limit=connections),
    )


async def sequential_next_url(
    base_url: str,
    api_key: str,
    assets: list[str],
    start: datetime,
    end: datetime,
    *,
    interval: str = "1h",
) -> BaselineResult:
    """Kaiko's documented loop, asset after asset, page after page."""
    result = BaselineResult()
    async with _session(api_key, connections=1) as session:
        client = _Session(session, result)
        for asset in assets:
            params = {
                "interval": interval,
                "start_time": format_time(start),
                "end_time": format_time(end),
            }
            result.rows[asset] = await client.follow(base_url + _PATH.format(asset=asset), params)
    return result


def days_between(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut at every UTC midnight."""
    out: list[tuple[datetime, datetime]] = []
    lo = start
    while lo < end:
        midnight = lo.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        hi = min(midnight, end)
        out.append((lo, hi))
        lo = hi
    return out


async def per_day_gather(
    base_url: str,
    api_key: str,
    assets: list[str],
    start: datetime,
    end: datetime,
    *,
    interval: str = "1h",
    concurrency: int = 32,
    page_size: int = 1000,
) -> BaselineResult:
    """One query per day and asset, ``asyncio.gather`` over all of them, a semaphore."""
    result = BaselineResult(rows={asset: [] for asset in assets})
    semaphore = asyncio.Semaphore(concurrency)
    async with _session(api_key, connections=concurrency) as session:
        client = _Session(session, result)

        async def one_day(asset: str, lo: datetime, hi: datetime) -> list[dict[str, Any]]:
            params = {
                "interval": interval,
                "start_time": format_time(lo),
                "end_time": format_time(hi),
                "page_size": str(page_size),
            }
            async with semaphore:
                return await client.follow(base_url + _PATH.format(asset=asset), params)

        days = days_between(start, end)
        jobs = [(asset, lo, hi) for asset in assets for lo, hi in days]
        pages = await asyncio.gather(*(one_day(*job) for job in jobs))
        for (asset, _, _), rows in zip(jobs, pages, strict=True):
            result.rows[asset].extend(rows)
    return result
