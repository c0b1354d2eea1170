"""The cache for any route, and on S3: cached answers equal uncached ones (hypothesis over
windows and sorts), for token volumes and liquidation events, with the cache in a local
directory and on a real S3 server (moto, tests/s3.py); a repeat costs no request."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiko_liq import LiquidationClient
from kaiko_liq.emulator import DENSE_INSTRUMENT, SPARSE_INSTRUMENT, RunningEmulator
from kaiko_liq.fs import StorageUnavailableError
from tests.conftest import FIXED_NOW
from tests.s3 import S3Spot

DAY = timedelta(days=1)
#: Events: two weeks of the emulator's data, well settled at FIXED_NOW.
E0 = datetime(2025, 5, 10, tzinfo=UTC)
INSTRUMENTS = [str(DENSE_INSTRUMENT).split(":"), str(SPARSE_INSTRUMENT).split(":")]
HYPO = settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)


@pytest.fixture(params=["local", "s3"])
def where(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh cache location per call: ``new() -> (cache_dir, storage_options)``."""
    if request.param == "local":
        with tempfile.TemporaryDirectory() as top:

            def local() -> tuple[str, dict[str, Any] | None]:
                return f"{top}/{uuid.uuid4().hex[:8]}", None

            yield local
        return
    spot: S3Spot = request.getfixturevalue("s3")

    def remote() -> tuple[str, dict[str, Any] | None]:
        return spot.url(f"cache-{uuid.uuid4().hex[:8]}"), spot.options

    yield remote


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def clients(emu: RunningEmulator, cache_dir: str, options: Any) -> tuple[Any, Any]:
    cached = LiquidationClient(
        base_url=emu.base_url,
        cache_dir=cache_dir,
        storage_options=options,
        now=lambda: FIXED_NOW,
        recheck="0",
        page_size=1000,
    )
    plain = LiquidationClient(base_url=emu.base_url, now=lambda: FIXED_NOW, page_size=1000)
    return cached, plain


def instants(lo: datetime, days: int) -> st.SearchStrategy[datetime]:
    # Whole days, odd milliseconds and minutes: windows that cut days and files.
    return st.builds(
        lambda d, ms: lo + d * DAY + timedelta(milliseconds=ms),
        st.integers(0, days),
        st.sampled_from([0, 1, 999, 60_000 * 37 + 5, 3_600_000 * 13]),
    )


@HYPO
@given(data=st.data())
async def test_events_cached_answers_equal_uncached_ones(
    emulator: RunningEmulator, where: Any, data: st.DataObject
) -> None:
    instrument = data.draw(st.sampled_from(INSTRUMENTS))
    windows = data.draw(
        st.lists(
            st.tuples(instants(E0, 10), instants(E0, 10), st.sampled_from(["asc", "desc"]))
            .map(lambda w: (min(w[0], w[1]), max(w[0], w[1]), w[2]))
            .filter(lambda w: w[0] < w[1]),
            min_size=2,
            max_size=3,
        )
    )
    cache_dir, options = where()
    cached, plain = clients(emulator, cache_dir, options)
    async with cached, plain:
        answers = []
        for lo, hi, sort in windows:
            want = await plain.fetch_events(*instrument, lo, hi, sort=sort)
            assert await cached.fetch_events(*instrument, lo, hi, sort=sort) == want
            answers.append(want)
        before = cached.stats.requests
        for (lo, hi, sort), want in zip(windows, answers, strict=True):
            assert await cached.fetch_events(*instrument, lo, hi, sort=sort) == want
        assert cached.stats.requests == before  # a repeat is served from the store


@HYPO
@given(data=st.data())
async def test_token_cached_answers_equal_uncached_ones(
    emulator: RunningEmulator, where: Any, data: st.DataObject
) -> None:
    asset = data.draw(st.sampled_from(["btc", "pepe"]))
    interval = data.draw(st.sampled_from(["1h", "1d"]))
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    windows = data.draw(
        st.lists(
            st.tuples(instants(t0, 40), instants(t0, 40), st.sampled_from(["asc", "desc"]))
            .map(lambda w: (min(w[0], w[1]), max(w[0], w[1]), w[2]))
            .filter(lambda w: w[0] < w[1]),
            min_size=2,
            max_size=3,
        )
    )
    cache_dir, options = where()
    cached, plain = clients(emulator, cache_dir, options)
    async with cached, plain:
        answers = []
        for lo, hi, sort in windows:
            want = await plain.fetch(asset, lo, hi, interval=interval, sort=sort)
            got = await cached.fetch(asset, lo, hi, interval=interval, sort=sort)
            assert got == want
            answers.append(want)
        before = cached.stats.requests
        for (lo, hi, sort), want in zip(windows, answers, strict=True):
            assert await cached.fetch(asset, lo, hi, interval=interval, sort=sort) == want
        assert cached.stats.requests == before


async def test_a_cache_on_a_missing_bucket_is_one_error_before_any_request(
    emulator: RunningEmulator, s3: S3Spot
) -> None:
    client = LiquidationClient(
        base_url=emulator.base_url,
        cache_dir="s3://no-such-bucket-here/cache",
        storage_options=s3.options,
        now=lambda: FIXED_NOW,
    )
    async with client:
        with pytest.raises(StorageUnavailableError, match="no bucket 'no-such-bucket-here'"):
            await client.fetch_events(*INSTRUMENTS[1], E0, E0 + DAY)
        assert client.stats.requests == 0


def test_storage_options_without_a_cache_are_refused() -> None:
    with pytest.raises(Exception, match="storage_options apply to cache_dir"):
        LiquidationClient(base_url="http://127.0.0.1:1", storage_options={"region": "x"})
