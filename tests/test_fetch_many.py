"""fetch_many: several assets in one call, equal to one fetch per asset, failures by asset."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kaiko_liq import (
    FetchManyIncompleteError,
    IncompleteFetchError,
    InvalidArgumentError,
    LiquidationClient,
    NotFoundError,
)
from kaiko_liq.emulator import RunningEmulator
from kaiko_liq.export import MissingDependencyError
from kaiko_liq.plan import SubRange
from kaiko_liq.retry import RetryPolicy
from kaiko_liq.testing import no_sleeps
from tests.conftest import EmulatorFactory
from tests.mock_http import aioresponses

START, END = "2025-02-01", "2025-05-01"  # 89 days: 3 shards per asset at 1h


@pytest.mark.parametrize("sort", ["asc", "desc"])
async def test_fetch_many_equals_one_fetch_per_asset(emulator: RunningEmulator, sort: str) -> None:
    assets = ["sol", "btc", "eth"]
    async with LiquidationClient(base_url=emulator.base_url) as client:
        many = await client.fetch_many(assets, START, END, sort=sort)
        single = {a: await client.fetch(a, START, END, sort=sort) for a in assets}
    assert list(many) == assets  # keys in the order given, not the order they finished
    assert many == single
    assert all(len(rows) > 1000 for rows in many.values())


async def test_all_assets_shards_run_at_once_under_one_client(
    make_emulator: EmulatorFactory,
) -> None:
    emu = await make_emulator(latency=0.05)
    assets = ["btc", "eth", "sol", "xrp"]
    async with LiquidationClient(base_url=emu.base_url, max_concurrency=32) as client:
        shards = sum(len(client.plan(a, START, END)) for a in assets)
        await client.fetch_many(assets, START, END)
    assert emu.stats.peak_concurrency == shards == 12


async def test_on_shard_reports_each_planned_shard_of_each_asset(
    emulator: RunningEmulator,
) -> None:
    seen: list[tuple[str, SubRange]] = []
    async with LiquidationClient(base_url=emulator.base_url) as client:
        await client.fetch_many(
            ["eth", "btc"], START, END, on_shard=lambda a, s: seen.append((a, s))
        )
        planned = {(a, s) for a in ("eth", "btc") for s in client.plan(a, START, END)}
    assert sorted(seen, key=lambda x: (x[0], x[1].index)) == sorted(
        planned, key=lambda x: (x[0], x[1].index)
    )
    assert len(seen) == len(planned) == 6


async def test_an_unknown_asset_stops_the_call_and_is_named(emulator: RunningEmulator) -> None:
    async with LiquidationClient(base_url=emulator.base_url) as client:
        with pytest.raises(NotFoundError, match="zzz"):
            await client.fetch_many(["btc", "zzz", "eth"], START, END)


async def test_one_code_is_one_asset(emulator: RunningEmulator) -> None:
    async with LiquidationClient(base_url=emulator.base_url) as client:
        many = await client.fetch_many("eth", START, "2025-02-02")
        assert many == {"eth": await client.fetch("eth", START, "2025-02-02")}


@pytest.mark.parametrize(
    ("assets", "message"),
    [
        ([], "assets is empty"),
        (["btc", "BTC"], "'btc' is given twice"),
        (["btc", "e th"], "characters other than"),
        (42, "asset code or a list"),
    ],
)
async def test_bad_asset_lists_are_refused_before_anything_is_sent(
    emulator: RunningEmulator, assets: Any, message: str
) -> None:
    async with LiquidationClient(base_url=emulator.base_url) as client:
        with pytest.raises(InvalidArgumentError, match=message):
            await client.fetch_many(assets, START, END)
    assert emulator.stats.total_requests == 0


# --- shards failing after their retries, by asset (aioresponses) -----------------------

BASE = "https://us.market-api.kaiko.io"


def _url(asset: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(BASE)}/v2/data/liquidation\.v1/token/{asset}\?.*$")


def _row(hour: int) -> dict[str, Any]:
    return {
        "interval_time": f"2025-02-01T{hour:02d}:00:00Z",
        "interval_timestamp": (1738368000 + 3600 * hour) * 1_000_000_000,
        "total_trades": 1,
        "total_amount": 2.5,
        "long_trades": 1,
        "long_amount": 2.5,
        "short_trades": 0,
        "short_amount": 0.0,
        "exchanges": [
            {
                "exchange": "bbit",
                "total_trades": 1,
                "total_amount": 2.5,
                "long_trades": 1,
                "long_amount": 2.5,
                "short_trades": 0,
                "short_amount": 0.0,
            }
        ],
    }


def _client() -> LiquidationClient:
    return LiquidationClient("test-key", retry=RetryPolicy(max_attempts=2))


async def test_one_asset_with_failed_shards_is_its_own_incomplete_error(
    mocked: aioresponses,
) -> None:
    mocked.get(_url("eth"), payload={"result": "success", "data": [_row(0)]}, repeat=True)
    mocked.get(_url("btc"), status=503, payload={"message": "maintenance"}, repeat=True)
    with no_sleeps(), pytest.raises(IncompleteFetchError) as caught:
        async with _client() as client:
            await client.fetch_many(["eth", "btc"], "2025-02-01", "2025-02-02")
    assert type(caught.value) is IncompleteFetchError
    assert caught.value.asset == "btc"
    assert "ServerError" in str(caught.value)


async def test_several_assets_with_failed_shards_are_named_in_one_error(
    mocked: aioresponses,
) -> None:
    mocked.get(_url("eth"), payload={"result": "success", "data": [_row(0)]}, repeat=True)
    for asset in ("btc", "sol"):
        mocked.get(_url(asset), status=502, payload={"message": "bad gateway"}, repeat=True)
    with no_sleeps(), pytest.raises(FetchManyIncompleteError) as caught:
        async with _client() as client:
            await client.fetch_many(["sol", "eth", "btc"], "2025-02-01", "2025-02-02")
    error = caught.value
    assert list(error.errors) == ["sol", "btc"]
    assert all(isinstance(e, IncompleteFetchError) for e in error.errors.values())
    assert str(error).startswith("2 assets incomplete: sol: 1 of 1 sub-ranges failed")
    assert "btc: 1 of 1" in str(error)
    assert len(error.failed) == 2 and error.completed == []


async def test_an_on_shard_callback_that_raises_is_raised_as_itself(
    emulator: RunningEmulator,
) -> None:
    def boom(*_: object) -> None:
        raise ValueError("the caller's callback failed")

    async with LiquidationClient(base_url=emulator.base_url) as client:
        with pytest.raises(ValueError, match="callback failed"):
            await client.fetch("btc", "2025-02-01", "2025-05-01", on_shard=boom)
        with pytest.raises(ValueError, match="callback failed"):
            await client.fetch_many(["btc", "eth"], "2025-02-01", "2025-05-01", on_shard=boom)


def test_a_cache_without_pyarrow_is_refused_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    with pytest.raises(MissingDependencyError, match=r"kaiko-liq\[parquet\]"):
        LiquidationClient(base_url="http://127.0.0.1:1", cache_dir="/tmp/never-made")
