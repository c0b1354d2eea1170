"""The synthetic data: deterministic, consistent to the last bit, and plausible."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from kaiko_liq.emulator import ASSETS, DATA_END, EXCHANGES, rows_for
from kaiko_liq.emulator.data import iter_rows
from kaiko_liq.models import ExchangeVolume, LiquidationRow
from kaiko_liq.query import DATA_START

MONTH = ("2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z")


def test_public_constants() -> None:
    assert datetime(2026, 11, 1, tzinfo=UTC) == DATA_END
    assert {"btc", "eth", "sol", "xrp", "doge"} <= set(ASSETS)
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
