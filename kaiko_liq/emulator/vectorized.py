"""The exchanges' figures of many asset-days at once, with numpy when it is installed.

numpy is not a dependency of kaiko-liq (it comes with pyarrow, pandas or polars): without
it :func:`kaiko_liq.emulator.data._figures_python` computes the same figures one at a
time. The two agree to the bit by construction, and a test checks it: both read the same
16-bit words at the same places and the same quantile tables, and do the same float
operations in the same order, using only those IEEE 754 rounds exactly (``+ - * /``,
``sqrt``, comparisons, truncation to an integer). The few figures that need ``exp`` (a
whale, or more than 64 liquidations on one side) are handed back to the one scalar
function both use. Row totals are summed by the shared row builder, not here.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .data import _Day, _Figures

__all__ = ["available", "figures"]

#: Set to 0 to compute with the scalar generator even when numpy is installed.
ENV_SWITCH = "KAIKO_LIQ_EMULATOR_NUMPY"
#: Blocks made without numpy before importing it: a small query never pays numpy's
#: import (~0.15 s) for the few milliseconds it would save. Both ways give the same
#: figures, so switching midway changes nothing.
IMPORT_AFTER_BLOCKS = 3
_scalar_blocks = [0]


@cache
def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def available() -> bool:
    """Use numpy for the next block: installed, not switched off, and either imported
    already or worth importing (more than :data:`IMPORT_AFTER_BLOCKS` blocks asked for)."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return False
    if "numpy" not in sys.modules and _scalar_blocks[0] < IMPORT_AFTER_BLOCKS:
        _scalar_blocks[0] += 1
        return False
    return _numpy() is not None


@cache
def _arrays() -> tuple[Any, Any, Any, Any, Any, Any]:
    from .data import _tables

    np = _numpy()
    t = _tables()
    return (
        np.array(t.z),
        np.array(t.noise),
        np.array(t.poisson, dtype=np.int64),
        np.array(t.whale),
        np.array(t.shock),
        np.array(t.surge),
    )


@cache
def _amounts(size: float) -> Any:
    """``_amount_table(size)`` then ``_amount_table(1.5 * size)``, computed the same way."""
    from .data import _MAX_AMOUNT, _QUANTUM, _tables

    np = _numpy()
    mean_size = np.array(_tables().mean_size)
    n = np.arange(len(mean_size)) >> 8
    return np.concatenate(
        [
            np.rint(np.clip(n * s * mean_size, 1.0, _MAX_AMOUNT) * _QUANTUM) / _QUANTUM
            for s in (size, size * 1.5)
        ]
    )


def figures(asset: str, days: list[_Day]) -> _Figures:
    """The figures of ``days``, as :func:`~kaiko_liq.emulator.data._figures_python` gives them."""
    from .data import (
        _CURVE,
        _HOUR_WORDS,
        _MAX_SURGE,
        _POISSON_STEP,
        _POISSON_TABLE_MAX,
        _PROFILES,
        _SQUEEZE,
        _SUM_TABLE_MAX,
        _VENUE_WORDS,
        _WORDS,
        _Figures,
        _side_amount,
        _tables,
        _weights,
    )

    np = _numpy()
    t = _tables()
    z, noise, poisson, whale, shock, surge_size = _arrays()
    prof = _PROFILES[asset]
    k = len(prof.exchanges)
    n_days = len(days)
    words = np.frombuffer(b"".join(d.raw for d in days), dtype="<u2").reshape(n_days, _WORDS)
    words = words.astype(np.int32)

    # The hours, as _hours_python: (D, 24).
    hour = words[:, _HOUR_WORDS:_VENUE_WORDS].reshape(n_days, 24, 4)
    squeeze = hour[..., 0] < _SQUEEZE
    cascade = np.array([d.cascade for d in days])
    cascade = np.where(
        squeeze, cascade * np.minimum(30.0, 2.0 + surge_size[hour[..., 1] >> 8]), cascade
    )
    long_share = np.array([d.long_share for d in days])
    long_share = np.where(squeeze, np.where(hour[..., 2] < 32768, 0.85, 0.15), long_share)
    base = np.array([d.base for d in days])[:, None]
    activity = base * np.array(_CURVE) * np.minimum(cascade, _MAX_SURGE) * shock[hour[..., 3] >> 4]
    surging = activity > 8.0 * prof.trades_per_hour
    activity, long_share, surging = activity[..., None], long_share[..., None], surging[..., None]

    # The exchanges: (D, 24, k).
    # Draw j of every (day, hour, exchange) as one contiguous array: (8, D, 24, k).
    venue = words[:, _VENUE_WORDS:].reshape(n_days, 24, 8, 8)[:, :, :k, :]
    w = np.ascontiguousarray(venue.transpose(3, 0, 1, 2))
    take = np.take
    lam = activity * np.array(_weights(asset)) * take(noise, w[0] >> 4)
    small = lam < _POISSON_TABLE_MAX
    index = np.where(small, lam * _POISSON_STEP + 0.5, 0.0).astype(np.int64)
    from_table = take(poisson, index << 8 | w[1] >> 8)
    tiny = (w[1] < lam * 65536.0).astype(np.int64)
    trades = np.where(index > 0, from_table, tiny)
    big = np.nonzero(~small)
    if len(big[0]):
        lam_big = lam[big]
        normal = lam_big + np.sqrt(lam_big) * take(z, w[1][big] >> 4) + 0.5
        trades[big] = np.maximum(0, normal.astype(np.int64))

    # From here on, only the (day, hour, exchange) slots with liquidations, flat, in order.
    (slot,) = np.nonzero(trades.ravel())
    trades = trades.ravel()[slot]
    hour_of = slot // k  # 24 * day + hour
    draws = w.reshape(8, -1)[:, slot]
    long_share = np.broadcast_to(long_share, (n_days, 24, k)).ravel()[slot]
    surging = surging.ravel()[hour_of]

    share = np.clip(long_share + 0.05 * take(z, draws[2] >> 4), 0.01, 0.99)
    mean = trades * share
    many = (mean + np.sqrt(mean * (1.0 - share)) * take(z, draws[3] >> 4) + 0.5).astype(np.int64)
    many = np.minimum(np.maximum(many, 0), trades)
    one = (draws[3] < share * 65536.0).astype(np.int64)
    longs = np.where(trades == 1, one, many)
    shorts = trades - longs

    table = _amounts(prof.median_size)
    offset = surging * (len(table) // 2)

    def side(n: Any, wa: Any, ww: Any) -> Any:
        capped = np.minimum(n, _SUM_TABLE_MAX)
        common = (n > 0) & (n <= _SUM_TABLE_MAX) & (ww >= take(whale, capped))
        out = np.where(common, take(table, offset + (capped << 8 | wa >> 8)), 0.0)
        (rare,) = np.nonzero((n > 0) & ~common)
        if len(rare):
            sizes = np.where(surging[rare], prof.median_size * 1.5, prof.median_size)
            out[rare] = [
                _side_amount(t, n_, size, wa_, ww_)
                for n_, size, wa_, ww_ in zip(
                    n[rare].tolist(),
                    sizes.tolist(),
                    wa[rare].tolist(),
                    ww[rare].tolist(),
                    strict=True,
                )
            ]
        return out

    la = side(longs, draws[4], draws[5])
    sa = side(shorts, draws[6], draws[7])

    # Hour totals: the sums of integers, and of amounts whose every sum is exact.
    hours, first, venues = np.unique(hour_of, return_index=True, return_counts=True)
    codes = np.array(prof.exchanges, dtype=object)

    def hourly(a: Any) -> list[Any]:
        result: list[Any] = np.add.reduceat(a, first).tolist() if len(first) else []
        return result

    return _Figures(
        hours=hours.tolist(),
        venues=venues.tolist(),
        hour_trades=hourly(trades),
        hour_longs=hourly(longs),
        hour_long_usd=hourly(la),
        hour_short_usd=hourly(sa),
        codes=codes[slot % k].tolist(),
        trades=trades.tolist(),
        total_usd=(la + sa).tolist(),
        longs=longs.tolist(),
        long_usd=la.tolist(),
        shorts=shorts.tolist(),
        short_usd=sa.tolist(),
    )
