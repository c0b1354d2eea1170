"""Synthetic liquidation volumes a researcher would find plausible, and deterministic.

Every final figure is a pure function of ``(seed, asset, hour)``: each block of 32
asset-days is drawn from a ``random.Random`` seeded from a hash of ``(seed, asset,
block)`` (plus a market-wide ``(seed, day)`` stream shared by all assets), and cached.
Nothing depends on the order of requests, so the same query always gives the same rows.

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

Speed: the random numbers of a block come from one ``getrandbits`` call, cut into
16-bit words at fixed places, and every distribution is read from a table of quantiles
built once (the standard normal, a Poisson per rate, the mean of n lognormal sizes...).
Days are made 32 at a time, with numpy when it is installed (:mod:`.vectorized`, the same
figures to the bit) and one figure at a time otherwise. A day of an asset costs about a
tenth of what data version 1 (calls into :mod:`random` per figure) did with numpy, and
about a third without it.

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

import gc
import hashlib
import math
import random
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from itertools import accumulate
from operator import add, sub
from statistics import NormalDist
from typing import NamedTuple

from ..models import ExchangeVolume, LiquidationRow
from . import vectorized as _vectorized
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
    q, top = float(_QUANTUM), _MAX_AMOUNT
    return [round(min(max((i >> 8) * size * m, 1.0), top) * q) / q for i, m in enumerate(mean_size)]


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
#
# A day's 16-bit words sit at fixed places, so that any way of computing with them (one
# figure at a time, or numpy over many days at once) reads the same ones:
#   [0]                          the asset's own day
#   [1 + 4h .. 4 + 4h]           hour h: cascade test, its size, its side, the shock
#   [97 + 8(8h + e) + j]         hour h, exchange slot e, draw j: rate noise, count,
#                                long share, longs, long size, long whale, short size,
#                                short whale
_HOUR_WORDS = 1
_VENUE_WORDS = 1 + 24 * 4
_WORDS = _VENUE_WORDS + 24 * 8 * 8
_BLOCK = 32  # days generated together (numpy's fixed cost is paid once per block)
_HOURS = tuple(timedelta(hours=h) for h in range(24))
_HOUR_NS = HOUR * _NS
#: An hour whose word 1 is below this has an asset-only cascade (0.0015 of the hours).
_SQUEEZE = 98


def _words(raw: bytes) -> list[int]:
    """Little-endian 16-bit words as a list of ints."""
    words = array("H", raw)
    if sys.byteorder == "big":  # array reads native order; the bytes are little-endian
        words.byteswap()
    return words.tolist()


@dataclass(frozen=True, slots=True)
class _Day:
    """One asset-day with liquidations, before its hours and exchanges are drawn."""

    day: int
    raw: bytes  # the day's uniform 16-bit words, little-endian
    base: float  # the day's calm rate: the asset's, its weekday, its own day, any burst
    cascade: tuple[float, ...]  # 24 market cascades, raised to the asset's beta
    long_share: tuple[float, ...]  # 24 market long shares


def _days(seed: int, asset: str, block: int) -> list[_Day | None]:
    """The draws of a block's asset-days (``None`` for a day without liquidations).

    One generator a block, seeded by ``(seed, asset, block)``, gives every day its words
    (a quiet day's go unused), so a day's figures never depend on which were asked for.
    """
    first = block * _BLOCK
    rng = _rng(seed, asset, "block", block)
    size = 2 * _WORDS
    raw = rng.getrandbits(8 * size * _BLOCK).to_bytes(size * _BLOCK, "little")
    prof = _PROFILES[asset]
    noise = _tables().noise
    days: list[_Day | None] = []
    for day in range(first, first + _BLOCK):
        level = _sparse_day(seed, day) if asset == SPARSE_ASSET else 1.0
        if day * DAY < DATA_START_S or level == 0.0:
            days.append(None)
            continue
        at = (day - first) * size
        words = raw[at : at + size]
        weekend = 0.75 if (day + 3) % 7 >= 5 else 1.0  # 1970-01-01 was a Thursday
        base = prof.trades_per_hour * weekend * noise[(words[0] | words[1] << 8) >> 4] * level
        market = _market_day(seed, day)
        cascade = tuple(m.cascade**prof.beta for m in market)
        days.append(_Day(day, words, base, cascade, tuple(m.long_share for m in market)))
    return days


def _hours_python(asset: str, d: _Day, words: list[int]) -> list[tuple[float, float, bool]]:
    """Each hour's rate of liquidations, long share, and whether it is surging."""
    t = _tables()
    calm_rate = _PROFILES[asset].trades_per_hour
    hours = []
    for h in range(24):
        squeeze, surge, side, shock = words[_HOUR_WORDS + 4 * h : _HOUR_WORDS + 4 * h + 4]
        cascade, long_share = d.cascade[h], d.long_share[h]
        if squeeze < _SQUEEZE:  # an asset-only cascade (a listing, a squeeze...)
            cascade = cascade * min(30.0, 2.0 + t.surge[surge >> 8])
            long_share = 0.85 if side < 32768 else 0.15
        rate = d.base * _CURVE[h] * min(cascade, _MAX_SURGE) * t.shock[shock >> 4]
        hours.append((rate, long_share, rate > 8.0 * calm_rate))
    return hours


class _Figures(NamedTuple):
    """The figures of a block's days: per hour with liquidations (``hour*``, in order;
    ``hours`` numbers them ``24 * day + hour`` over the days given) and per exchange with
    liquidations (the rest, in day, hour and row order)."""

    hours: list[int]
    venues: list[int]  # exchanges with liquidations in the hour
    hour_trades: list[int]
    hour_longs: list[int]
    hour_long_usd: list[float]
    hour_short_usd: list[float]
    codes: list[str]
    trades: list[int]
    total_usd: list[float]
    longs: list[int]
    long_usd: list[float]
    shorts: list[int]
    short_usd: list[float]


def _figures_python(asset: str, days: list[_Day]) -> _Figures:
    """The figures of ``days``, one at a time (no numpy needed)."""
    prof = _PROFILES[asset]
    t = _tables()
    z, noise, poisson, whale = t.z, t.noise, t.poisson, t.whale
    calm, surge = _amount_table(prof.median_size), _amount_table(prof.median_size * 1.5)
    weights = tuple(zip(prof.exchanges, _weights(asset), strict=True))
    sqrt = math.sqrt
    out = _Figures([], [], [], [], [], [], [], [], [], [], [], [], [])
    for n_day, d in enumerate(days):
        words = _words(d.raw)
        for h, (activity, long_share, surging) in enumerate(_hours_python(asset, d, words)):
            sized = surge if surging else calm
            size = prof.median_size * (1.5 if surging else 1.0)
            active = tt = lt = 0
            hla = hsa = 0.0
            for e, (code, weight) in enumerate(weights):
                at = _VENUE_WORDS + 8 * (8 * h + e)
                w_noise, w_count, w_share, w_longs, wa_l, ww_l, wa_s, ww_s = words[at : at + 8]
                lam = activity * weight * noise[w_noise >> 4]
                if lam < _POISSON_TABLE_MAX:
                    index = int(lam * _POISSON_STEP + 0.5)
                    # below 1/32: P(one or more) is about lam
                    trades = (
                        poisson[index << 8 | w_count >> 8]
                        if index
                        else int(w_count < lam * 65536.0)
                    )
                else:
                    trades = max(0, int(lam + sqrt(lam) * z[w_count >> 4] + 0.5))
                if trades == 0:
                    continue
                share = long_share + 0.05 * z[w_share >> 4]
                share = 0.01 if share < 0.01 else 0.99 if share > 0.99 else share
                if trades == 1:
                    longs = int(w_longs < share * 65536.0)
                else:
                    mean = trades * share
                    longs = int(mean + sqrt(mean * (1.0 - share)) * z[w_longs >> 4] + 0.5)
                    longs = 0 if longs < 0 else trades if longs > trades else longs
                shorts = trades - longs
                if longs == 0:
                    la = 0.0
                elif longs <= _SUM_TABLE_MAX and ww_l >= whale[longs]:  # common: a table read
                    la = sized[longs << 8 | wa_l >> 8]
                else:
                    la = _side_amount(t, longs, size, wa_l, ww_l)
                if shorts == 0:
                    sa = 0.0
                elif shorts <= _SUM_TABLE_MAX and ww_s >= whale[shorts]:
                    sa = sized[shorts << 8 | wa_s >> 8]
                else:
                    sa = _side_amount(t, shorts, size, wa_s, ww_s)
                out.codes.append(code)
                out.trades.append(trades)
                out.total_usd.append(la + sa)
                out.longs.append(longs)
                out.long_usd.append(la)
                out.shorts.append(shorts)
                out.short_usd.append(sa)
                active += 1
                tt += trades
                lt += longs
                hla += la
                hsa += sa
            if not active:
                continue
            out.hours.append(24 * n_day + h)
            out.venues.append(active)
            out.hour_trades.append(tt)
            out.hour_longs.append(lt)
            out.hour_long_usd.append(hla)
            out.hour_short_usd.append(hsa)
    return out


@lru_cache(maxsize=64)
def _weights(asset: str) -> tuple[float, ...]:
    """Each listing exchange's share of the asset's liquidations, in row order."""
    venues = _PROFILES[asset].exchanges
    total = sum(_EXCHANGE_SHARE[e] for e in venues)
    return tuple(_EXCHANGE_SHARE[e] / total for e in venues)


def _rows(days: list[_Day], f: _Figures) -> list[tuple[LiquidationRow | None, ...]]:
    """The days' rows from their figures.

    Every sum of amounts is exact (see the module docstring), so the hour totals, however
    they were added up, are the sums of the row's exchanges to the last bit.
    """
    # Structs are built by map() over whole columns: a loop in C, not in Python.
    exchanges = list(
        map(
            ExchangeVolume,
            f.codes,
            f.trades,
            f.total_usd,
            f.longs,
            f.long_usd,
            f.shorts,
            f.short_usd,
        )
    )
    ends = accumulate(f.venues)
    slices = [exchanges[j - n : j] for n, j in zip(f.venues, ends, strict=True)]
    midnights = [datetime.fromtimestamp(d.day * DAY, UTC) for d in days]
    firsts = [d.day * DAY * _NS for d in days]
    made = map(
        LiquidationRow,
        [midnights[i // 24] + _HOURS[i % 24] for i in f.hours],
        [firsts[i // 24] + i % 24 * _HOUR_NS for i in f.hours],
        f.hour_trades,
        list(map(add, f.hour_long_usd, f.hour_short_usd)),
        f.hour_longs,
        f.hour_long_usd,
        list(map(sub, f.hour_trades, f.hour_longs)),
        f.hour_short_usd,
        slices,
    )
    flat: list[LiquidationRow | None] = [None] * (24 * len(days))
    for i, row in zip(f.hours, made, strict=True):
        flat[i] = row
    return [tuple(flat[24 * n : 24 * n + 24]) for n in range(len(days))]


@lru_cache(maxsize=1024)
def _asset_block(
    seed: int, asset: str, block: int
) -> tuple[tuple[LiquidationRow | None, ...], ...]:
    """The final hourly rows of ``_BLOCK`` consecutive asset-days; cached."""
    days = _days(seed, asset, block)
    live = [d for d in days if d is not None]
    if not live:
        return ((None,) * 24,) * _BLOCK
    # The cyclic garbage collector would walk every list made here, again and again as
    # the cache grows, and nothing made here forms a cycle: keep it out (measured: a
    # third of the time of a two-year sweep).
    collecting = gc.isenabled()
    gc.disable()
    try:
        if _vectorized.available():
            figures = _vectorized.figures(asset, live)
        else:
            figures = _figures_python(asset, live)
        rows = iter(_rows(live, figures))
    finally:
        if collecting:
            gc.enable()
    return tuple((None,) * 24 if d is None else next(rows) for d in days)


def _asset_day(seed: int, asset: str, day: int) -> tuple[LiquidationRow | None, ...]:
    """The 24 final hourly rows of one asset-day (``None`` for quiet hours)."""
    return _asset_block(seed, asset, day // _BLOCK)[day % _BLOCK]


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


def _final_hours(
    seed: int, asset: str, lo: int, hi: int, *, descending: bool
) -> Iterator[LiquidationRow]:
    """The rows of the final hours in ``[lo, hi)``, quiet hours skipped."""
    if lo >= hi:
        return
    first, last = lo // DAY, (hi - 1) // DAY
    days = range(last, first - 1, -1) if descending else range(first, last + 1)
    for day in days:
        rows = _asset_day(seed, asset, day)
        a = (lo - day * DAY) // HOUR if day == first else 0
        b = (hi - day * DAY - 1) // HOUR + 1 if day == last else 24
        part = rows[a:b]
        for row in reversed(part) if descending else part:
            if row is not None:
                yield row


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
        # Final hours a day at a time (one cache look-up a day, not one an hour).
        final_hi = max(lo, min(hi, (math.floor(final_before) // HOUR) * HOUR))
        if descending:
            for start in range(hi - HOUR, final_hi - 1, -HOUR):
                row = _hour_at(seed, asset, start, now, settle)
                if row is not None:
                    yield row
            yield from _final_hours(seed, asset, lo, final_hi, descending=True)
        else:
            yield from _final_hours(seed, asset, lo, final_hi, descending=False)
            for start in range(final_hi, hi, HOUR):
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
