"""The synthetic data: deterministic, consistent to the last bit, and plausible."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kaiko_liq.emulator import ASSETS, DATA_START, EXCHANGES, SPARSE_ASSET, data, vectorized
from kaiko_liq.emulator import rows_for as rows_at
from kaiko_liq.emulator.data import iter_rows as iter_rows_at
from kaiko_liq.models import ExchangeVolume, LiquidationRow
from tests.conftest import FIXED_NOW

DATA_END = FIXED_NOW


def rows_for(*args: Any, **kwargs: Any) -> list[LiquidationRow]:
    """The data as the test emulators see it: on the fixed clock, unless told otherwise."""
    kwargs.setdefault("now", FIXED_NOW)
    return rows_at(*args, **kwargs)


def iter_rows(*args: Any, **kwargs: Any) -> Iterator[LiquidationRow]:
    kwargs.setdefault("now", FIXED_NOW)
    return iter_rows_at(*args, **kwargs)


MONTH = ("2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z")


def test_public_constants() -> None:
    assert datetime(2025, 1, 8, tzinfo=UTC) == DATA_START
    assert {"btc", "eth", "sol", "xrp", "doge", SPARSE_ASSET} <= set(ASSETS)
    assert SPARSE_ASSET == "pepe"
    assert 6 <= len(EXCHANGES) <= 10
    assert {"bbit", "okex", "binc", "drbt"} <= set(EXCHANGES)


def test_rows_are_a_function_of_seed_asset_and_hour_only() -> None:
    month = rows_for("eth", *MONTH)
    # A sub-window, asked for on its own, gives exactly the same rows.
    day = rows_for("eth", "2025-03-10T05:00:00Z", "2025-03-11T07:00:00Z")
    assert day == [r for r in month if r.interval_time in {d.interval_time for d in day}]
    assert day and rows_for("eth", *MONTH) == month
    assert rows_for("eth", *MONTH, seed=1) != month
    assert rows_for("btc", *MONTH) != month


def test_rows_are_ascending_one_per_bucket_with_nanosecond_timestamps() -> None:
    rows = rows_for("ltc", *MONTH)
    times = [r.interval_time for r in rows]
    assert times == sorted(set(times))
    for r in rows:
        assert r.interval_time.tzinfo is not None and r.interval_time.minute == 0
        assert r.interval_timestamp == int(r.interval_time.timestamp()) * 10**9
        assert len(str(r.interval_timestamp)) == 19


def test_the_window_snaps_outward_to_the_grid() -> None:
    rows = rows_for("btc", "2025-03-01T09:00:01Z", "2025-03-01T11:59:59Z")
    assert [r.interval_time.hour for r in rows] == [9, 10, 11]
    four = rows_for("btc", "2025-03-01T05:00:00Z", "2025-03-01T09:00:00Z", "4h")
    assert [r.interval_time.hour for r in four] == [4, 8]
    # 5h does not divide a day: buckets sit on the UTC epoch grid.
    five = rows_for("btc", "2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z", "5h")
    assert all(int(r.interval_time.timestamp()) % (5 * 3600) == 0 for r in five)


def _exact_totals(row: LiquidationRow | ExchangeVolume) -> None:
    assert row.total_trades == row.long_trades + row.short_trades
    assert row.total_amount == row.long_amount + row.short_amount
    assert (row.long_trades == 0) == (row.long_amount == 0)
    assert (row.short_trades == 0) == (row.short_amount == 0)
    assert row.total_trades > 0


@pytest.mark.parametrize("interval", ["1h", "4h", "1d", "7h"])
def test_totals_add_up_across_sides_and_exchanges(interval: str) -> None:
    for asset in ("btc", "doge"):
        for row in rows_for(asset, *MONTH, interval):
            _exact_totals(row)
            codes = [e.exchange for e in row.exchanges]
            assert codes == sorted(set(codes)) and set(codes) <= set(EXCHANGES)
            for ex in row.exchanges:
                _exact_totals(ex)
            for field in ("trades", "amount"):
                for side in ("total", "long", "short"):
                    name = f"{side}_{field}"
                    assert getattr(row, name) == sum(getattr(e, name) for e in row.exchanges)


def _sum_hours(hours: list[LiquidationRow], start: datetime) -> LiquidationRow:
    """A coarse bucket computed independently: hours in ascending order, exchanges merged."""
    merged: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0, 0.0, 0, 0.0])
    for hour in sorted(hours, key=lambda r: r.interval_time):
        for e in hour.exchanges:
            acc = merged[e.exchange]
            figures = (e.total_trades, e.total_amount, e.long_trades, e.long_amount)
            for i, value in enumerate((*figures, e.short_trades, e.short_amount)):
                acc[i] += value
    venues = [
        ExchangeVolume(code, int(a[0]), a[1], int(a[2]), a[3], int(a[4]), a[5])
        for code, a in sorted(merged.items())
    ]
    return LiquidationRow(
        interval_time=start,
        interval_timestamp=int(start.timestamp()) * 10**9,
        total_trades=sum(v.total_trades for v in venues),
        total_amount=sum(v.total_amount for v in venues),
        long_trades=sum(v.long_trades for v in venues),
        long_amount=sum(v.long_amount for v in venues),
        short_trades=sum(v.short_trades for v in venues),
        short_amount=sum(v.short_amount for v in venues),
        exchanges=venues,
    )


@pytest.mark.parametrize(("interval", "hours"), [("4h", 4), ("1d", 24), ("24h", 24), ("5h", 5)])
@pytest.mark.parametrize("asset", ["btc", "ltc"])
def test_coarse_buckets_are_exactly_the_sum_of_their_hours(
    asset: str, interval: str, hours: int
) -> None:
    coarse = rows_for(asset, *MONTH, interval)
    hourly = rows_for(asset, coarse[0].interval_time, coarse[-1].interval_time + timedelta(days=1))
    assert coarse
    for row in coarse:
        end = row.interval_time + timedelta(hours=hours)
        inside = [h for h in hourly if row.interval_time <= h.interval_time < end]
        assert row == _sum_hours(inside, row.interval_time)  # equality, not approx


def test_no_rows_outside_the_data_range() -> None:
    assert rows_for("btc", "2024-01-01T00:00:00Z", DATA_START) == []
    assert rows_for("btc", DATA_END, "2030-01-01T00:00:00Z") == []
    assert rows_for("btc", DATA_END, "2030-01-01T00:00:00Z", "1d") == []
    head = rows_for("btc", "2025-01-07T20:00:00Z", "2025-01-08T02:00:00Z")
    assert head and head[0].interval_time >= DATA_START
    tail = rows_for("btc", "2026-10-31T20:00:00Z", "2026-11-02T00:00:00Z")
    assert tail and tail[-1].interval_time < DATA_END


def test_descending_iteration_is_the_reverse() -> None:
    up = list(iter_rows("sol", *MONTH, "3h"))
    down = list(iter_rows("sol", *MONTH, "3h", descending=True))
    assert down == up[::-1]


def test_unknown_asset_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="nosuchcoin"):
        rows_for("nosuchcoin", *MONTH)


# --- plausibility: what a researcher would look at first ---------------------------------

YEAR = ("2025-02-01T00:00:00Z", "2026-02-01T00:00:00Z")
HOURS_IN_YEAR = 365 * 24


def _median_hour(asset: str) -> float:
    return statistics.median(r.total_amount for r in rows_for(asset, *YEAR))


def test_scales_differ_and_btc_is_biggest() -> None:
    medians = {asset: _median_hour(asset) for asset in ("btc", "eth", "sol", "xrp", "doge")}
    assert max(medians, key=lambda a: medians[a]) == "btc"
    assert medians["btc"] > 10 * medians["doge"]


def test_quiet_hours_are_absent_and_commoner_for_small_assets() -> None:
    quiet = {a: 1 - len(rows_for(a, *YEAR)) / HOURS_IN_YEAR for a in ("btc", "doge", "ltc")}
    assert 0 < quiet["btc"] < quiet["doge"] < quiet["ltc"] < 0.6


def test_amounts_are_heavy_tailed() -> None:
    amounts = sorted(r.total_amount for r in rows_for("eth", *YEAR))
    median, p999 = amounts[len(amounts) // 2], amounts[int(len(amounts) * 0.999)]
    assert p999 > 30 * median


def test_cascades_hit_every_exchange_and_the_other_assets_in_the_same_hour() -> None:
    rows = rows_for("btc", *YEAR)
    median = statistics.median(r.total_trades for r in rows)
    cascades = [r for r in rows if r.total_trades > 15 * median]
    assert 5 <= len(cascades) <= 200  # occasional: a few a month at most
    assert all(len(r.exchanges) == len(EXCHANGES) for r in cascades)
    # Most are market-wide: ether liquidates far above its norm in the same hour.
    eth = {r.interval_time: r.total_trades for r in rows_for("eth", *YEAR)}
    eth_median = statistics.median(eth.values())
    hit = sum(eth.get(r.interval_time, 0) > 3 * eth_median for r in cascades)
    assert hit >= len(cascades) / 2


# --- the sparse asset ---------------------------------------------------------------------


def test_the_sparse_asset_comes_in_bursts_with_quiet_stretches_of_days() -> None:
    rows = rows_for(SPARSE_ASSET, DATA_START, DATA_END)
    assert len(rows) > 200  # it does trade
    times = [r.interval_time for r in rows]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    long_gaps = [g for g in gaps if g >= timedelta(days=3)]
    assert len(long_gaps) >= 10
    # Some quiet stretch outlasts a 1000-hour page (41.7 days) paged by time.
    assert max(gaps) > timedelta(hours=1000)
    # Bursts last days, not months: the busy days are few.
    busy_days = {t.date() for t in times}
    assert len(busy_days) < 0.3 * (DATA_END - DATA_START).days


def test_the_other_assets_trade_every_day() -> None:
    for asset in ("btc", "doge", "ltc"):
        days = {r.interval_time.date() for r in rows_for(asset, *YEAR)}
        assert len(days) == 365, asset


# --- data up to now: settled, filling, not yet begun ---------------------------------------

OPEN = datetime(2026, 3, 10, 14, tzinfo=UTC)  # a busy hour of a weekday, for btc


def test_rows_exist_up_to_now_and_not_after() -> None:
    now = OPEN + timedelta(minutes=30)
    rows = rows_for("btc", OPEN - timedelta(days=1), OPEN + timedelta(days=1), now=now)
    assert rows[-1].interval_time == OPEN  # the open bucket, and nothing after it
    assert rows_for("btc", OPEN + timedelta(hours=1), "2030-01-01", now=now) == []
    # Later clocks reveal more; the system clock is the default.
    assert rows_for("btc", OPEN, OPEN + timedelta(hours=3), now=OPEN + timedelta(hours=9))
    assert len(rows_for("btc", "2026-11-01", "2026-11-08", now=None)) > 0


def test_an_open_bucket_fills_as_the_hour_passes_and_settles_to_its_final_figures() -> None:
    final = rows_for("btc", OPEN, OPEN + timedelta(hours=1))[0]
    seen: list[LiquidationRow] = []
    for minutes in range(0, 121, 5):
        now = OPEN + timedelta(minutes=minutes, seconds=1)
        rows = rows_for("btc", OPEN, OPEN + timedelta(hours=1), now=now)
        if rows:
            seen.append(rows[0])
    assert len(seen) >= 20
    for earlier, later in itertools.pairwise(seen):
        _exact_totals(later)
        assert earlier.total_trades <= later.total_trades <= final.total_trades
        assert earlier.total_amount <= later.total_amount <= final.total_amount
        for e in later.exchanges:
            f = next(x for x in final.exchanges if x.exchange == e.exchange)
            assert e.long_trades <= f.long_trades and e.long_amount <= f.long_amount
            assert e.short_trades <= f.short_trades and e.short_amount <= f.short_amount
    half = rows_for("btc", OPEN, OPEN + timedelta(hours=1), now=OPEN + timedelta(minutes=60))
    assert 0 < half[0].total_trades < final.total_trades  # closed, not yet settled
    assert seen[-1] == final  # two hours on (an hour to close, an hour to settle): final
    # Deterministic in now; settle_seconds=0 makes it final as it closes.
    again = OPEN + timedelta(minutes=35)
    assert rows_for("btc", OPEN, OPEN + timedelta(hours=1), now=again) == rows_for(
        "btc", OPEN, OPEN + timedelta(hours=1), now=again
    )
    closed = OPEN + timedelta(hours=1)
    assert rows_for("btc", OPEN, closed, now=closed, settle_seconds=0) == [final]


@pytest.mark.parametrize("interval", ["4h", "1d"])
def test_a_coarse_bucket_is_the_sum_of_its_hours_as_they_are_now(interval: str) -> None:
    now = OPEN + timedelta(minutes=40)
    day = OPEN.replace(hour=0)
    coarse = rows_for("btc", day, day + timedelta(days=1), interval, now=now)[-1]
    hours = rows_for("btc", coarse.interval_time, now, now=now)
    assert hours[-1].interval_time == OPEN
    assert coarse == _sum_hours(hours, coarse.interval_time)


# --- numpy and the scalar generator agree to the bit ------------------------------------------


@pytest.mark.skipif(vectorized._numpy() is None, reason="numpy is not installed")
@pytest.mark.parametrize("asset", ["btc", "ltc", SPARSE_ASSET])
def test_the_numpy_and_the_scalar_generators_give_the_same_figures(asset: str) -> None:
    # Two years of a few blocks, among them cascades, whales and sides of 64+ trades.
    for seed in (0, 5):
        days = [d for block in range(630, 635) for d in data._days(seed, asset, block) if d]
        assert days
        assert data._figures_python(asset, days) == vectorized.figures(asset, days)
