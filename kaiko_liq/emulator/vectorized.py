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
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .data import _DayPlan, _Figures

__all__ = ["available", "figures"]

#: Set to 0 to compute with the scalar generator even when numpy is installed.
ENV_SWITCH = "KAIKO_LIQ_EMULATOR_NUMPY"


@cache
def _numpy() -> Any:
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def available() -> bool:
    """numpy is installed and not switched off."""
    return _numpy() is not None


@cache
def _arrays() -> tuple[Any, Any, Any, Any]:
    from .data import _tables

    np = _numpy()
    t = _tables()
    return (
        np.array(t.z),
        np.array(t.noise),
        np.array(t.poisson, dtype=np.int64),
        np.array(t.whale),
    )


@cache
def _amounts(size: float) -> Any:
    from .data import _amount_table

    np = _numpy()
    return np.concatenate([np.array(_amount_table(size)), np.array(_amount_table(size * 1.5))])


def figures(asset: str, plans: list[_DayPlan]) -> list[_Figures]:
    """Each plan's figures, as :func:`~kaiko_liq.emulator.data._figures_python` gives them."""
    from .data import (
        _POISSON_STEP,
        _POISSON_TABLE_MAX,
        _PROFILES,
        _SUM_TABLE_MAX,
        _VENUE_WORDS,
        _WORDS,
        _side_amount,
        _tables,
        _weights,
    )

    np = _numpy()
    z, noise, poisson, whale = _arrays()
    prof = _PROFILES[asset]
    k = len(prof.exchanges)
    days = len(plans)
    words = np.frombuffer(b"".join(p.raw for p in plans), dtype="<u2").reshape(days, _WORDS)
    venue = words[:, _VENUE_WORDS:].reshape(days, 24, 8, 8)[:, :, :k, :].astype(np.int64)
    w = [venue[..., j] for j in range(8)]
    activity = np.array([p.activity for p in plans])[:, :, None]
    long_share = np.array([p.long_share for p in plans])[:, :, None]
    surging = np.array([p.surging for p in plans])[:, :, None]
    weights = np.array(_weights(asset))

    lam = activity * weights * noise[w[0] >> 4]
    small = lam < _POISSON_TABLE_MAX
    index = np.where(small, lam * _POISSON_STEP + 0.5, 0.0).astype(np.int64)
    from_table = poisson[index << 8 | w[1] >> 8]
    tiny = (w[1] < lam * 65536.0).astype(np.int64)
    big = np.maximum(0, np.where(small, 0.0, lam + np.sqrt(lam) * z[w[1] >> 4] + 0.5).astype(np.int64))
    trades = np.where(small, np.where(index > 0, from_table, tiny), big)

    share = np.clip(long_share + 0.05 * z[w[2] >> 4], 0.01, 0.99)
    mean = trades * share
    many = (mean + np.sqrt(mean * (1.0 - share)) * z[w[3] >> 4] + 0.5).astype(np.int64)
    many = np.minimum(np.maximum(many, 0), trades)
    one = (w[3] < share * 65536.0).astype(np.int64)
    longs = np.where(trades == 1, one, many)
    longs = np.where(trades == 0, 0, longs)
    shorts = trades - longs

    table = _amounts(prof.median_size)
    offset = surging * (len(table) // 2)
    t = _tables()

    def side(n: Any, wa: Any, ww: Any) -> Any:
        common = (n > 0) & (n <= _SUM_TABLE_MAX) & (ww >= whale[np.minimum(n, 4095)])
        capped = np.minimum(n, _SUM_TABLE_MAX)
        out = np.where(common, table[offset + (capped << 8 | wa >> 8)], 0.0)
        for d, h, e in zip(*np.nonzero((n > 0) & ~common), strict=True):
            size = prof.median_size * (1.5 if surging[d, h, 0] else 1.0)
            out[d, h, e] = _side_amount(t, int(n[d, h, e]), size, int(wa[d, h, e]), int(ww[d, h, e]))
        return out

    la = side(longs, w[4], w[5])
    sa = side(shorts, w[6], w[7])
    # One flat tolist per figure (nested lists cost twice as much), cut into days.
    per_day = 24 * k
    flat = [a.ravel().tolist() for a in (trades, longs, la, sa)]
    return [
        (
            flat[0][d * per_day : (d + 1) * per_day],
            flat[1][d * per_day : (d + 1) * per_day],
            flat[2][d * per_day : (d + 1) * per_day],
            flat[3][d * per_day : (d + 1) * per_day],
        )
        for d in range(days)
    ]
