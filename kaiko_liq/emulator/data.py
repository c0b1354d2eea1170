"""Synthetic liquidation volumes a researcher would find plausible, and deterministic.

Every final figure is a pure function of ``(seed, asset, hour)``: each asset-day is drawn
from a ``random.Random`` seeded from a hash of ``(seed, asset, day)`` (plus a market-wide
``(seed, day)`` stream shared by all assets), and cached. Nothing depends on the order of
requests, so the same query always gives the same rows.

The model, per asset and hour:

* Activity = the asset's calm rate x a time-of-day curve (busiest at the US open) x a
  weekend dip x a market regime (per week and per day, shared by all assets) x the
  asset's own day x a lognormal hourly shock shared by its exchanges.
* Cascades: a few hours a month the whole market liquidates at once (mostly longs, as in
  a crash), hitting every asset and every exchange in the same hour, with a smaller echo
  the hour after; rarer asset-only cascades happen too.
* Each exchange listing the asset gets a Poisson number of liquidations from its market
  share; a bucket where no exchange had any is a quiet hour and has no row at all. Small
  assets have many of those.
* Sizes are heavy-tailed: lognormal trade sizes plus the odd Pareto-sized whale.
* :data:`SPARSE_ASSET` (``pepe``) trades in bursts of one to four days; between them it
  is quiet for days, often for more than six weeks: no rows at all.

Speed: the random numbers of an asset-day come from one ``getrandbits`` call, cut into
16-bit words, and every distribution is read from a table of quantiles built once (the
standard normal, a Poisson per rate, the mean of n lognormal sizes...). A draw is then
an index, not a call into :mod:`random`: a day of data costs ~15x less than calling
``random.gauss`` and friends per figure (data version 2; version 1 did that).

Amounts are whole multiples of 1/4096 USD and stay far below 2**41, so every sum of them
is exact in a float64 whatever the order: ``total = long + short``, a row equals the sum
of its exchanges, and a coarse bucket equals the sum of its hours, to the last bit. Coarse
buckets (4h, 1d, 5h...) are computed by summing the hourly figures in ascending time order
all the same, so the equality does not rest on that argument alone.

Time: data exists for every hour from :data:`DATA_START` up to ``now`` (the emulator's
clock). A bucket's figures are final once it closed more than ``settle`` seconds ago.
Before that they grow: an hour ``elapsed`` seconds after it opened shows the fraction
``f = elapsed / (3600 + settle)`` of each exchange's final liquidations per side (rounded
down, amounts in proportion, rounded down to the quantum): deterministic in ``now``,
never more than the final figures, and equal to them from ``f = 1`` on. Hours that have
not begun have no row. A coarse bucket is the sum of its hours as they are at ``now``.
"""

from __future__ import annotations

import hashlib
import math
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from statistics import NormalDist

from ..models import ExchangeVolume, LiquidationRow
from .grid import (
    DATA_START,
    DATA_START_S,
    DAY,
    HOUR,
    ceil_seconds,
    epoch_seconds,
    parse_grid_interval,
)
from .grid import parse_iso_time as _parse_time

__all__ = [
    "ASSETS",
    "DATA_START",
    "EXCHANGES",
    "SETTLE_SECONDS",
    "SPARSE_ASSET",
    "AssetProfile",
    "bucket_rows",
    "iter_rows",
    "rows_for",
]

#: Seconds after a bucket closes until its figures are final (the default).
SETTLE_SECONDS = 3600
#: The small-cap asset whose liquidations come in bursts with quiet stretches of days.
SPARSE_ASSET = "pepe"

_NS = 1_000_000_000
#: Amounts are rounded to this many parts of a dollar (a power of two, see above).
_QUANTUM = 4096
#: Cap on one exchange-side-hour amount, so sums stay exact (2e9 * 24h * 8 < 2**41).
_MAX_AMOUNT = 2e9
#: Cap on an hour's activity over calm (the worst real cascades were ~100x a calm hour).
_MAX_SURGE = 150.0
#: Dispersion of one liquidation's USD size (lognormal sigma).
_SIZE_SIGMA = 1.3
_SIZE_CV2 = math.exp(_SIZE_SIGMA**2) - 1.0  # squared coefficient of variation of one size

#: Kaiko exchange codes and their share of derivatives liquidations.
_EXCHANGE_SHARE: dict[str, float] = {
    "binc": 0.30,  # Binance
    "bbit": 0.24,  # Bybit
    "okex": 0.17,  # OKX
    "gate": 0.08,  # Gate.io
    "hbdm": 0.07,  # Huobi / HTX derivatives
    "drbt": 0.06,  # Deribit
    "bfnx": 0.04,  # Bitfinex
    "krkn": 0.04,  # Kraken
}
EXCHANGES: tuple[str, ...] = tuple(sorted(_EXCHANGE_SHARE))


@dataclass(frozen=True, slots=True)
class AssetProfile:
    """The scale of one asset's liquidations."""

    #: Mean liquidation events per hour over all exchanges in a calm market.
    trades_per_hour: float
    #: Median USD size of one liquidation.
    median_size: float
    #: How hard market-wide cascades hit it (altcoins overshoot bitcoin).
    beta: float
    #: Exchanges listing its derivatives, in the order rows list them.
    exchanges: tuple[str, ...]


_ALL = " ".join(EXCHANGES)
_PROFILES: dict[str, AssetProfile] = {
    code: AssetProfile(rate, size, beta, tuple(sorted(venues.split())))
    for code, rate, size, beta, venues in (
        ("btc", 70.0, 6000.0, 1.0, _ALL),
        ("eth", 45.0, 4000.0, 1.15, _ALL),
        ("sol", 24.0, 2200.0, 1.3, "bbit binc drbt gate hbdm krkn okex"),
        ("xrp", 14.0, 1800.0, 1.3, _ALL),
        ("doge", 10.0, 1200.0, 1.4, "bbit binc gate hbdm krkn okex"),
        ("ada", 4.0, 700.0, 1.4, "bbit binc gate hbdm okex"),
        ("link", 3.0, 800.0, 1.4, "bbit binc gate krkn okex"),
        ("ltc", 2.0, 600.0, 1.3, "bbit bfnx binc gate hbdm krkn okex"),
        # Its rate is that of a burst day (see _sparse_day); between bursts it is zero.
        (SPARSE_ASSET, 6.0, 350.0, 1.6, "bbit binc gate okex"),
    )
}
#: Asset codes the emulator knows, biggest first; any other asset is a 404.
ASSETS: tuple[str, ...] = tuple(_PROFILES)


def profile(asset: str) -> AssetProfile:
    """The profile of a known asset (``KeyError`` otherwise)."""
    return _PROFILES[asset]


def _rng(*parts: object) -> random.Random:
    # hash() of a str is salted per process; a digest is the same everywhere, forever.
    text = ":".join(str(p) for p in ("kaiko-liq-emulator-v2", *parts))
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


# --- the quantile tables --------------------------------------------------------------------

#: Rates below this use a Poisson quantile table; above, the normal approximation.
_POISSON_TABLE_MAX = 16
_POISSON_STEP = 16  # the table's rates are multiples of 1/16
#: Counts up to this have a table of the mean of n lognormal sizes; above, a formula.
_SUM_TABLE_MAX = 64


@dataclass(frozen=True, slots=True)
class _Tables:
    z: list[float]  # 4096 standard normal quantiles, at (i + 0.5) / 4096
    noise: list[float]  # 4096 quantiles of lognormal(0, 0.3): exchange and day noise
    shock: list[float]  # 4096 quantiles of a mean-1 lognormal, variance 0.4 (hourly shock)
    poisson: list[int]  # rate index * 256 + level: 256 quantiles per rate k / 16
    mean_size: list[float]  # n * 256 + level: mean of n sizes over the median
    whale: list[float]  # n: 65536 * P(a whale among n liquidations), n < 4096
    pareto: list[float]  # 256 quantiles of Pareto(1.5) (whale sizes)
    surge: list[float]  # 256 quantiles of Pareto(1.3) (asset-only cascade sizes)


@cache
def _tables() -> _Tables:
    """Built on first use (~15 ms), so importing the emulator stays cheap."""
    nd = NormalDist()
    z = [nd.inv_cdf((i + 0.5) / 4096) for i in range(4096)]
    noise = [math.exp(0.3 * x) for x in z]
    s2 = math.log(1.4)
    s = math.sqrt(s2)
    shock = [math.exp(s * x - s2 / 2) for x in z]
    poisson: list[int] = []
    for index in range(_POISSON_TABLE_MAX * _POISSON_STEP + 1):
        lam = index / _POISSON_STEP
        p = cdf = math.exp(-lam)
        k = 0
        for level in range(256):
            target = (level + 0.5) / 256
            while cdf < target and k < 200:
                k += 1
                p *= lam / k
                cdf += p
            poisson.append(k)
    # The mean of n lognormal sizes (sigma 1.3), as one lognormal with the same mean and
    # variance (Fenton-Wilkinson): in units of the median size.
    z8 = [nd.inv_cdf((i + 0.5) / 256) for i in range(256)]
    cv2 = _SIZE_CV2
    mean_size = [0.0] * 256
    for n in range(1, _SUM_TABLE_MAX + 1):
        sn2 = math.log1p(cv2 / n)
        mu = _SIZE_SIGMA**2 / 2 - sn2 / 2
        sn = math.sqrt(sn2)
        mean_size += [math.exp(mu + sn * x) for x in z8]
    whale = [65536.0 * (1.0 - 0.998**n) for n in range(4096)]
    pareto = [(1.0 - (i + 0.5) / 256) ** (-1 / 1.5) for i in range(256)]
    surge = [(1.0 - (i + 0.5) / 256) ** (-1 / 1.3) for i in range(256)]
    return _Tables(z, noise, shock, poisson, mean_size, whale, pareto, surge)


# --- the market, shared by every asset ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _MarketHour:
    """What the whole market does in one hour: activity multiplier and long bias."""

    cascade: float  # activity multiplier: the day's regime x any cascade (about 1 when calm)
    long_share: float  # the share of liquidations that are longs


@lru_cache(maxsize=2048)
def _market_day(seed: int, day: int) -> tuple[_MarketHour, ...]:
    """The market-wide regime of one UTC day, shared by every asset."""
    week = _rng(seed, "market-week", (day + 3) // 7)
    week_vol = week.lognormvariate(0.0, 0.35)
    rng = _rng(seed, "market-day", day)
    day_vol = week_vol * rng.lognormvariate(0.0, 0.45)
    # Down days liquidate longs, up days shorts: one bias for the whole day.
    bias = 0.5 + 0.22 * math.tanh(rng.gauss(0.0, 1.0))
    hours: list[_MarketHour] = []
    echo = 1.0
    for _ in range(24):
        cascade, long_share = echo, min(0.97, max(0.03, bias + rng.gauss(0.0, 0.12)))
        echo = 1.0
        if rng.random() < 0.004:  # a few market-wide cascades a month
            size = min(80.0, 4.0 + 4.0 * rng.paretovariate(1.2))
            cascade = size
            long_share = 0.9 if rng.random() < 0.65 else 0.1
            echo = 1.0 + (size - 1.0) * 0.3
        hours.append(_MarketHour(cascade * day_vol, long_share))
    return tuple(hours)


#: Busiest around the US open (14-15h UTC), quietest in the Asian late night.
_CURVE = tuple(1.0 + 0.35 * math.cos(2.0 * math.pi * (h - 15) / 24.0) for h in range(24))
_BLOCK_DAYS = 16


@lru_cache(maxsize=512)
def _sparse_block(seed: int, block: int) -> tuple[int, int, float]:
    """The burst of one 16-day block of the sparse asset: first day, length, intensity.

    About a third of the blocks have one (one to four days); the rest are silent, so
    quiet stretches run from days to many weeks.
    """
    rng = _rng(seed, SPARSE_ASSET, "block", block)
    if rng.random() >= 0.35:
        return (0, 0, 0.0)
    return (rng.randrange(_BLOCK_DAYS), 1 + rng.randrange(4), rng.lognormvariate(0.0, 0.5))


def _sparse_day(seed: int, day: int) -> float:
    """The sparse asset's activity multiplier of one day: 0 outside its bursts."""
    first, length, intensity = _sparse_block(seed, day // _BLOCK_DAYS)
    offset = day % _BLOCK_DAYS - first
    return intensity if 0 <= offset < length else 0.0


def _quantize(value: float) -> float:
    value = 1.0 if value < 1.0 else _MAX_AMOUNT if value > _MAX_AMOUNT else value
    return round(value * _QUANTUM) / _QUANTUM


@lru_cache(maxsize=64)
def _amount_table(size: float) -> list[float]:
    """``n * 256 + level``: the amount of ``n`` liquidations of median ``size`` at a
    quantile level, already quantized (n up to the table's 64)."""
    mean_size = _tables().mean_size
    return [_quantize((i >> 8) * size * mean_size[i]) for i in range(len(mean_size))]


def _side_amount(t: _Tables, n: int, size: float, wa: int, ww: int) -> float:
    """USD value of ``n`` liquidations of median ``size``: the rare path (many of them,
    or a Pareto-sized whale among them)."""
    if n <= _SUM_TABLE_MAX:
        value = n * size * t.mean_size[n << 8 | wa >> 8]
    else:  # many sizes: their mean is nearly normal, a formula does
        sn2 = _SIZE_CV2 / n  # log1p(x) ~ x this small
        value = n * size * math.exp(_SIZE_SIGMA**2 / 2 - sn2 / 2 + math.sqrt(sn2) * t.z[wa >> 4])
    if ww < t.whale[n if n < 4096 else 4095]:
        value += size * 40.0 * t.pareto[wa & 255]
    return _quantize(value)


# --- one asset-day --------------------------------------------------------------------------

#: 16-bit words an hour can use: 4 for the hour, 8 per exchange (at most 8 exchanges).
_WORDS_PER_HOUR = 4 + 8 * 8


def _words(rng: random.Random, count: int) -> list[int]:
    """``count`` uniform 16-bit words from one ``getrandbits`` call."""
    raw = rng.getrandbits(16 * count).to_bytes(2 * count, "little")
    return array("H", raw).tolist()  # array's item order is native: same bytes, any host


# Sized to hold every asset-day of two years and more (9 assets x ~800 days): a backfill
# that sweeps all of it must not regenerate days while it pages.
@lru_cache(maxsize=16_384)
def _asset_day(seed: int, asset: str, day: int) -> tuple[LiquidationRow | None, ...]:
    """The 24 final hourly rows of one asset-day (``None`` for quiet hours); cached."""
    if (day + 1) * DAY <= DATA_START_S:
        return (None,) * 24
    prof = _PROFILES[asset]
    if asset == SPARSE_ASSET:
        level = _sparse_day(seed, day)
        if level == 0.0:
            return (None,) * 24
    else:
        level = 1.0
    t = _tables()
    z, noise, poisson, whale = t.z, t.noise, t.poisson, t.whale
    market = _market_day(seed, day)
    rng = _rng(seed, asset, day)
    nxt = iter(_words(rng, 1 + 24 * _WORDS_PER_HOUR)).__next__
    own_day = noise[nxt() >> 4] * level
    weekend = 0.75 if (day + 3) % 7 >= 5 else 1.0  # 1970-01-01 was a Thursday
    total_share = sum(_EXCHANGE_SHARE[e] for e in prof.exchanges)
    venues_of = [(code, _EXCHANGE_SHARE[code] / total_share) for code in prof.exchanges]
    base = prof.trades_per_hour * weekend * own_day
    calm_amounts = _amount_table(prof.median_size)
    surge_amounts = _amount_table(prof.median_size * 1.5)
    sqrt = math.sqrt
    rows: list[LiquidationRow | None] = []
    for h in range(24):
        start = day * DAY + h * HOUR
        m = market[h]
        cascade = m.cascade**prof.beta
        long_share = m.long_share
        if nxt() < 98:  # 0.0015 of the hours: an asset-only cascade (a listing, a squeeze)
            cascade *= min(30.0, 2.0 + t.surge[nxt() >> 8])
            long_share = 0.85 if nxt() < 32768 else 0.15
        activity = base * _CURVE[h] * min(cascade, _MAX_SURGE) * t.shock[nxt() >> 4]
        if start < DATA_START_S:
            rows.append(None)
            continue
        surging = activity > 8.0 * prof.trades_per_hour
        size = prof.median_size * (1.5 if surging else 1.0)
        sized = surge_amounts if surging else calm_amounts
        venues: list[ExchangeVolume] = []
        tt = lt = st = 0
        ta_sum = la_sum = sa_sum = 0.0
        for code, weight in venues_of:
            lam = activity * weight * noise[nxt() >> 4]
            w = nxt()
            if lam < _POISSON_TABLE_MAX:
                index = int(lam * _POISSON_STEP + 0.5)
                if index:
                    trades = poisson[index << 8 | w >> 8]
                else:  # below 1/32: P(one or more) is about lam
                    trades = 1 if w < lam * 65536.0 else 0
            else:
                trades = max(0, int(lam + sqrt(lam) * z[w >> 4] + 0.5))
            if trades == 0:
                continue
            share = long_share + 0.05 * z[nxt() >> 4]
            share = 0.01 if share < 0.01 else 0.99 if share > 0.99 else share
            w = nxt()
            if trades == 1:
                longs = 1 if w < share * 65536.0 else 0
            else:
                mean = trades * share
                longs = int(mean + sqrt(mean * (1.0 - share)) * z[w >> 4] + 0.5)
                longs = 0 if longs < 0 else trades if longs > trades else longs
            shorts = trades - longs
            wa, ww = nxt(), nxt()
            if longs == 0:
                la = 0.0
            elif longs <= 64 and ww >= whale[longs]:  # the common case: one table read
                la = sized[longs << 8 | wa >> 8]
            else:
                la = _side_amount(t, longs, size, wa, ww)
            wa, ww = nxt(), nxt()
            if shorts == 0:
                sa = 0.0
            elif shorts <= 64 and ww >= whale[shorts]:
                sa = sized[shorts << 8 | wa >> 8]
            else:
                sa = _side_amount(t, shorts, size, wa, ww)
            venues.append(ExchangeVolume(code, trades, la + sa, longs, la, shorts, sa))
            tt += trades
            lt += longs
            st += shorts
            ta_sum += la + sa
            la_sum += la
            sa_sum += sa
        if not venues:
            rows.append(None)  # a quiet hour: no liquidation anywhere, so no row
            continue
        rows.append(
            LiquidationRow(
                datetime.fromtimestamp(start, UTC),
                start * _NS,
                tt,
                ta_sum,
                lt,
                la_sum,
                st,
                sa_sum,
                venues,
            )
        )
    return tuple(rows)


# --- as of now: settled, filling, or not yet begun --------------------------------------------


def _merge(start: int, venues: list[ExchangeVolume]) -> LiquidationRow:
    """A row whose totals are the sums of its exchanges' figures, in list order."""
    return LiquidationRow(
        interval_time=datetime.fromtimestamp(start, UTC),
        interval_timestamp=start * _NS,
        total_trades=sum(v.total_trades for v in venues),
        total_amount=sum(v.total_amount for v in venues),
        long_trades=sum(v.long_trades for v in venues),
        long_amount=sum(v.long_amount for v in venues),
        short_trades=sum(v.short_trades for v in venues),
        short_amount=sum(v.short_amount for v in venues),
        exchanges=venues,
    )


def _part(trades: int, amount: float, fraction: float) -> tuple[int, float]:
    """The first ``fraction`` of one exchange-side's liquidations: count, amount."""
    n = int(trades * fraction)
    if n == 0:
        return 0, 0.0
    # In proportion, rounded down to the quantum but at least one: never above the final
    # amount (n <= trades) and never zero with trades, as in every final figure.
    value = math.floor(amount * n / trades * _QUANTUM) / _QUANTUM
    return n, max(value, 1.0 / _QUANTUM)


def _filling(row: LiquidationRow, fraction: float) -> LiquidationRow | None:
    """What the hour ``row`` shows when ``fraction`` (0 to 1) of its figures are in."""
    venues: list[ExchangeVolume] = []
    for v in row.exchanges:
        longs, la = _part(v.long_trades, v.long_amount, fraction)
        shorts, sa = _part(v.short_trades, v.short_amount, fraction)
        if longs or shorts:
            venues.append(
                ExchangeVolume(v.exchange, longs + shorts, la + sa, longs, la, shorts, sa)
            )
    return _merge(row.interval_timestamp // _NS, venues) if venues else None


def _hour_at(seed: int, asset: str, start: int, now: float, settle: int) -> LiquidationRow | None:
    """The hour starting at ``start`` as it is at epoch second ``now``."""
    if start >= now:
        return None
    final = _asset_day(seed, asset, start // DAY)[start % DAY // HOUR]
    if final is None or start + HOUR + settle <= now:
        return final
    return _filling(final, (now - start) / (HOUR + settle))


def _sum_hours(start: int, hours: Iterator[LiquidationRow | None]) -> LiquidationRow | None:
    """One coarse bucket: its hours summed in ascending time order, exchanges merged."""
    sums: dict[str, list[float]] = {}
    for row in hours:
        if row is None:
            continue
        for v in row.exchanges:
            acc = sums.setdefault(v.exchange, [0, 0.0, 0, 0.0, 0, 0.0])
            acc[0] += v.total_trades
            acc[1] += v.total_amount
            acc[2] += v.long_trades
            acc[3] += v.long_amount
            acc[4] += v.short_trades
            acc[5] += v.short_amount
    if not sums:
        return None
    venues = [
        ExchangeVolume(
            exchange=code,
            total_trades=int(acc[0]),
            total_amount=acc[1],
            long_trades=int(acc[2]),
            long_amount=acc[3],
            short_trades=int(acc[4]),
            short_amount=acc[5],
        )
        for code, acc in sorted(sums.items())
    ]
    return _merge(start, venues)


@lru_cache(maxsize=16_384)
def _coarse(seed: int, asset: str, seconds: int, start: int) -> LiquidationRow | None:
    """A coarse bucket whose hours are all final; cached."""
    days = {
        d: _asset_day(seed, asset, d) for d in range(start // DAY, (start + seconds - 1) // DAY + 1)
    }
    return _sum_hours(
        start, (days[h // DAY][h % DAY // HOUR] for h in range(start, start + seconds, HOUR))
    )


def _coarse_at(
    seed: int, asset: str, seconds: int, start: int, now: float, settle: int
) -> LiquidationRow | None:
    if start + seconds + settle <= now:
        return _coarse(seed, asset, seconds, start)
    hours = range(start, start + seconds, HOUR)
    return _sum_hours(start, (_hour_at(seed, asset, h, now, settle) for h in hours))


def bucket_rows(
    asset: str,
    seconds: int,
    lo: int,
    hi: int,
    *,
    now: float,
    settle: int = SETTLE_SECONDS,
    seed: int = 0,
    descending: bool = False,
) -> Iterator[LiquidationRow]:
    """Rows of the grid buckets in ``[lo, hi)`` (epoch seconds on the grid) as they are at
    epoch second ``now``, quiet buckets skipped.

    The one generator behind both :func:`rows_for` and the HTTP handler. It only visits
    buckets from the data start to ``now``, so a window reaching far beyond costs nothing.
    """
    lo = max(lo, DATA_START_S - DATA_START_S % seconds)
    hi = min(hi, -(-math.ceil(now) // seconds) * seconds)
    if lo >= hi:
        return
    starts = range(hi - seconds, lo - 1, -seconds) if descending else range(lo, hi, seconds)
    final_before = now - settle  # a bucket ending at or before this is final
    if seconds == HOUR:
        day_of = _asset_day
        for start in starts:
            if start + HOUR <= final_before:
                row = day_of(seed, asset, start // DAY)[start % DAY // HOUR]
            else:
                row = _hour_at(seed, asset, start, now, settle)
            if row is not None:
                yield row
    else:
        for start in starts:
            row = _coarse_at(seed, asset, seconds, start, now, settle)
            if row is not None:
                yield row


TimeLike = str | datetime | date


def iter_rows(
    asset: str,
    start: TimeLike,
    end: TimeLike,
    interval: str = "1h",
    *,
    seed: int = 0,
    descending: bool = False,
    now: datetime | None = None,
    settle_seconds: int = SETTLE_SECONDS,
) -> Iterator[LiquidationRow]:
    """Rows of the buckets of ``[start, end)`` snapped outward to the interval grid, as
    they are at ``now`` (``None``: the system clock)."""
    grid = parse_grid_interval(interval)
    asset = asset.lower()
    if asset not in _PROFILES:
        raise KeyError(f"unknown asset {asset!r}; the emulator knows {', '.join(ASSETS)}")
    lo = grid.floor(epoch_seconds(_parse_time(start, "start")))
    hi = grid.ceil(ceil_seconds(_parse_time(end, "end")))
    clock = datetime.now(UTC) if now is None else now
    return bucket_rows(
        asset,
        grid.seconds,
        lo,
        hi,
        now=clock.timestamp(),
        settle=settle_seconds,
        seed=seed,
        descending=descending,
    )


def rows_for(
    asset: str,
    start: TimeLike,
    end: TimeLike,
    interval: str = "1h",
    seed: int = 0,
    *,
    now: datetime | None = None,
    settle_seconds: int = SETTLE_SECONDS,
) -> list[LiquidationRow]:
    """All rows of ``[start, end)`` snapped outward, ascending, quiet buckets absent, as
    they are at ``now`` (``None``: the system clock).

    The same figures the emulator serves, without HTTP: for tests and benchmarks.
    """
    return list(
        iter_rows(asset, start, end, interval, seed=seed, now=now, settle_seconds=settle_seconds)
    )
