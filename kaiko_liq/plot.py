"""Charts of liquidations: one panel per asset, shorts above zero, longs below.

:func:`plot_liquidations` takes what the rest of the library hands out (a list of rows
with ``asset=``, ``client.fetch_many``'s ``{asset: rows}``, or a pandas, polars or Arrow
frame in any shape of :mod:`kaiko_liq.export`) and returns a matplotlib
:class:`~matplotlib.figure.Figure`: a notebook shows it, and a user can restyle it before
:func:`save_chart` writes it.

The chart:

* small multiples: one panel per asset, all on one UTC time axis; each panel has its own
  USD scale (btc's hours dwarf ada's), symmetric about zero so the two sides compare,
  and its asset and window sums left of the axis, where no label can hide a bar;
* shorts in blues above zero, longs in oranges below (blue/orange reads for the common
  kinds of colour blindness), stacked by exchange: the ``top_exchanges`` largest by
  amount over the whole chart, darkest nearest zero, the rest together as "other";
* amounts as K/M/B USD, a legend, a title naming the assets, the window and the
  interval, and the source: "Kaiko", or a red "SYNTHETIC (built-in emulator)" badge and
  watermark when ``synthetic=True``;
* when the window holds more buckets than the width can draw (about one per 2 px of the
  plotting area) they are summed into the first coarser bucket that fits (2h, 3h, 4h, 6h,
  8h, 12h, 1d, 2d, 3d, 1w, 2w, 4w, ...), and the subtitle says so.

matplotlib is an optional extra (``pip install 'kaiko-liq[plot]'``), imported only here,
inside the functions, and only its object-oriented API: a ``Figure`` with an Agg canvas,
never pyplot, so no global state changes and it works headless.

Example::

    async with LiquidationClient() as client:
        rows = await client.fetch_many(["btc", "eth"], "2025-10-01", "2025-10-22")
    fig = plot_liquidations(rows, interval="1h", start="2025-10-01", end="2025-10-22")
    save_chart(fig, "liquidations.png")
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from .errors import InvalidArgumentError
from .export import atomic_write, import_optional
from .models import LiquidationRow
from .query import EPOCH, TimeLike, parse_interval, parse_time, validate_window

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "CHART_FORMATS",
    "ChartFormat",
    "check_chart_path",
    "format_usd",
    "plot_liquidations",
    "save_chart",
]

ChartFormat = Literal["png", "svg"]
CHART_FORMATS: tuple[ChartFormat, ...] = get_args(ChartFormat)

_HOUR = 3600
_DAY = 86_400
_WEEK = 7 * _DAY
#: Weeks start on Monday; the epoch was a Thursday.
_MONDAY = 4 * _DAY
#: Coarser buckets, finest first; each is used only when it holds whole data buckets.
_LADDER = (
    *(h * _HOUR for h in (1, 2, 3, 4, 6, 8, 12)),
    *(d * _DAY for d in (1, 2, 3)),
    *(w * _WEEK for w in (1, 2, 4)),
)
#: Narrowest bucket drawn, in pixels of the plotting area (about 85% of the width).
_MIN_BAR_PX = 2
_PLOT_AREA = 0.85
#: Buckets at least this wide (px) get a gap of this fraction of their width.
_GAP_FROM_PX = 5
_BAR_GAP = 0.18
#: Room above the tallest stack, as a factor of its height.
_HEADROOM = 1.1
_DPI = 100
_SIZE_RANGE = ((320, 20_000), (240, 20_000))
_TOP_RANGE = (1, 10)
#: Amounts no exchange accounts for (a totals frame; a row whose breakdown falls short).
_UNATTRIBUTED = ""
_OTHER = "other"
_ALL_EXCHANGES = "all exchanges"
#: A row's breakdown may miss its total by float rounding; more than this is shown.
_RESIDUAL_TOLERANCE = 1e-6

_SHORT_COLOURS = "Blues"
_LONG_COLOURS = "Oranges"
_SHORT_OTHER = "#aebfcf"
_LONG_OTHER = "#dcc3ad"
_SYNTHETIC_RED = "#c0001a"
_PLOT_EXTRA = "plot"


# --- paths and saving -----------------------------------------------------------------------


def check_chart_path(path: str | os.PathLike[str]) -> ChartFormat:
    """The chart format ``path``'s extension names (``.png`` or ``.svg``, any case).

    Also imports matplotlib, so that a caller (the CLI) learns of a missing extra before
    it fetches anything. Raises :class:`InvalidArgumentError` for another extension and
    :class:`~kaiko_liq.export.MissingDependencyError` without matplotlib.
    """
    suffix = Path(path).suffix.lower()
    fmt = suffix.removeprefix(".")
    for known in CHART_FORMATS:
        if fmt == known:
            _matplotlib("writing a chart")
            return known
    raise InvalidArgumentError(
        f"cannot write a chart to {os.fspath(path)!r}: its extension is "
        f"{suffix or '(none)'}; use .png or .svg"
    )


def save_chart(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``path`` as PNG or SVG (from the extension), atomically: the file
    appears only once complete, and a failure leaves no file (and any old one in place).

    SVG text stays text (``svg.fonttype: none``): smaller, searchable and selectable.
    PNG keeps the figure's pixel size (no tight bounding box). Returns the path.
    """
    fmt = check_chart_path(path)
    mpl = _matplotlib("save_chart")
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    # A fixed hash salt: matplotlib otherwise names SVG paths at random, run to run.
    rc = {"svg.fonttype": "none", "svg.hashsalt": "kaiko-liq"}
    with mpl.rc_context(rc), atomic_write(path) as stream:
        fig.savefig(stream, format=fmt, dpi=fig.dpi, metadata=metadata)
    return Path(path)


def _matplotlib(purpose: str) -> Any:
    return import_optional("matplotlib", purpose, extra=_PLOT_EXTRA)


# --- amounts --------------------------------------------------------------------------------

_TIERS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"), (1.0, ""))


def format_usd(amount: float) -> str:
    """``1234567.0`` → ``"$1.23M"``: three significant digits, K/M/B/T suffixes."""
    if not math.isfinite(amount):
        return f"${amount}"
    sign = "-" if amount < 0 else ""
    size = abs(amount)
    for factor, suffix in _TIERS:
        # 999,999 is "$1M", not "$1000K": move up a tier when rounding would reach it.
        if size / factor >= 0.9995 or factor == 1.0:
            value = size / factor
            digits = 2 if value < 9.995 else 1 if value < 99.95 else 0
            text = f"{value:.{digits}f}"
            if "." in text:
                text = text.rstrip("0").rstrip(".")
            return f"{sign}${text}{suffix}"
    raise AssertionError("unreachable: the last tier takes every amount")


# --- input → amounts per asset, bucket and exchange -----------------------------------------

#: asset → bucket start (epoch seconds) → exchange → [long USD, short USD]
_Amounts = dict[str, dict[int, dict[str, list[float]]]]


def _seconds(value: Any, where: str) -> int:
    """Epoch seconds of a bucket start from a row or a frame cell (datetime, pandas
    ``Timestamp``); naive times are refused, as everywhere in kaiko-liq."""
    if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        value = value.to_pydatetime(warn=False)
    if not isinstance(value, datetime):
        raise InvalidArgumentError(
            f"{where}: interval_time {value!r} is not a datetime ({type(value).__name__})"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgumentError(
            f"{where}: interval_time {value!r} is naive; frames from kaiko_liq.export "
            "carry UTC times (timestamp[ns, tz=UTC])"
        )
    delta = value - EPOCH
    return delta.days * _DAY + delta.seconds


def _amount(value: Any, column: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{where}: {column} {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise InvalidArgumentError(f"{where}: {column} {value!r} is not an amount in USD")
    return number


def _add_bucket(
    buckets: dict[int, dict[str, list[float]]],
    when: int,
    where: str,
    long_total: float | None,
    short_total: float | None,
    exchanges: Iterable[tuple[str, float, float]],
) -> None:
    """One bucket of one asset: the breakdown, plus whatever part of the totals the
    breakdown does not account for (all of it when there is no breakdown)."""
    if when in buckets:
        raise InvalidArgumentError(
            f"{where}: two rows for the same bucket; each (asset, interval_time) must appear once"
        )
    by_exchange: dict[str, list[float]] = {}
    for name, long, short in exchanges:
        if name in by_exchange:
            raise InvalidArgumentError(f"{where}: exchange {name!r} appears twice in one bucket")
        by_exchange[name] = [long, short]
    sums = [sum(v[0] for v in by_exchange.values()), sum(v[1] for v in by_exchange.values())]
    residual = [0.0, 0.0]
    for side, total in enumerate((long_total, short_total)):
        if total is not None and total - sums[side] > _RESIDUAL_TOLERANCE * max(total, 1.0):
            residual[side] = total - sums[side]
    if residual != [0.0, 0.0]:
        by_exchange[_UNATTRIBUTED] = residual
    buckets[when] = by_exchange


def _from_rows(amounts: _Amounts, asset: str, rows: Iterable[Any]) -> None:
    buckets = amounts.setdefault(asset, {})
    for row in rows:
        if not isinstance(row, LiquidationRow):
            raise InvalidArgumentError(
                f"rows of {asset!r} must be LiquidationRow, got {type(row).__name__}"
            )
        _add_bucket(
            buckets,
            _seconds(row.interval_time, asset),
            f"{asset} at {row.interval_time.isoformat()}",
            row.long_amount,
            row.short_amount,
            ((ex.exchange, ex.long_amount, ex.short_amount) for ex in row.exchanges),
        )


def _frame_columns(frame: Any) -> dict[str, list[Any]] | None:
    """A pandas, polars or pyarrow frame as plain column lists; ``None`` if not a frame.

    Detected by module so none of the three is imported to find out.
    """
    module = type(frame).__module__.partition(".")[0]
    if module == "pyarrow" and hasattr(frame, "to_pydict"):
        columns: dict[str, list[Any]] = frame.to_pydict()
    elif module == "polars" and hasattr(frame, "to_dict"):
        columns = frame.to_dict(as_series=False)
    elif module == "pandas" and hasattr(frame, "to_dict"):
        columns = {str(k): list(v) for k, v in frame.to_dict("list").items()}
    else:
        return None
    return columns


def _from_frame(amounts: _Amounts, columns: dict[str, list[Any]], asset: str | None) -> None:
    """Any shape of :mod:`kaiko_liq.export`: ``nested`` (totals and an ``exchanges``
    list column), ``exchanges`` (one row per exchange) or ``totals`` (no breakdown)."""
    need = {"interval_time", "long_amount", "short_amount"}
    missing = sorted(need - columns.keys())
    if missing:
        raise InvalidArgumentError(
            f"the frame has no {', '.join(missing)} column; pass a frame of "
            "kaiko_liq.export's 'nested', 'exchanges' or 'totals' shape"
        )
    if "asset" in columns:
        if asset is not None:
            raise InvalidArgumentError(
                "pass asset= only for rows or a frame without an 'asset' column"
            )
        assets = [str(a) for a in columns["asset"]]
    elif asset is None:
        raise InvalidArgumentError("the frame has no 'asset' column; pass asset='eth' (say)")
    else:
        assets = [asset] * len(columns["interval_time"])
    times, longs, shorts = columns["interval_time"], columns["long_amount"], columns["short_amount"]
    if "exchange" in columns:
        grouped: dict[tuple[str, int], list[tuple[str, float, float]]] = {}
        for i, name in enumerate(columns["exchange"]):
            where = f"{assets[i]} at {times[i]}"
            key = (assets[i], _seconds(times[i], where))
            grouped.setdefault(key, []).append(
                (
                    str(name),
                    _amount(longs[i], "long_amount", where),
                    _amount(shorts[i], "short_amount", where),
                )
            )
        for (name, when), entries in grouped.items():
            where = f"{name} at {datetime.fromtimestamp(when, UTC).isoformat()}"
            _add_bucket(amounts.setdefault(name, {}), when, where, None, None, entries)
        return
    nested = columns.get("exchanges")
    for i, when_value in enumerate(times):
        where = f"{assets[i]} at {when_value}"
        breakdown = (
            (
                str(ex["exchange"]),
                _amount(ex["long_amount"], "exchanges.long_amount", where),
                _amount(ex["short_amount"], "exchanges.short_amount", where),
            )
            for ex in (nested[i] if nested is not None and nested[i] is not None else ())
        )
        _add_bucket(
            amounts.setdefault(assets[i], {}),
            _seconds(when_value, where),
            where,
            _amount(longs[i], "long_amount", where),
            _amount(shorts[i], "short_amount", where),
            breakdown,
        )


_Data = Iterable[LiquidationRow] | Mapping[str, Iterable[LiquidationRow]] | Any  # Any: a frame


def _collect(data: _Data, asset: str | None) -> _Amounts:
    amounts: _Amounts = {}
    if isinstance(data, Mapping):
        if asset is not None:
            raise InvalidArgumentError(
                "pass asset= only with a plain list of rows; a mapping's keys are the assets"
            )
        for key, rows in data.items():
            _from_rows(amounts, str(key), rows)
    elif (columns := _frame_columns(data)) is not None:
        _from_frame(amounts, columns, asset)
    elif isinstance(data, Iterable) and not isinstance(data, str | bytes):
        if asset is None:
            raise InvalidArgumentError(
                "pass asset='eth' (say) with a list of rows, or a mapping {asset: rows}"
            )
        _from_rows(amounts, asset, data)
    else:
        raise InvalidArgumentError(
            "data must be a list of LiquidationRow (with asset=), a mapping "
            f"{{asset: rows}} or a pandas/polars/pyarrow frame, got {type(data).__name__}"
        )
    if not amounts:
        raise InvalidArgumentError("nothing to plot: no assets given")
    return amounts


# --- buckets --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Bucket:
    """A chart bucket width on a grid: ``seconds`` long, starting at ``anchor`` + k·seconds."""

    seconds: int
    anchor: int = 0

    def floor(self, t: int) -> int:
        return t - (t - self.anchor) % self.seconds

    def ceil(self, t: int) -> int:
        floor = self.floor(t)
        return floor if floor == t else floor + self.seconds

    def count(self, lo: int, hi: int) -> int:
        return (self.ceil(hi) - self.floor(lo)) // self.seconds

    def __str__(self) -> str:
        if self.anchor == _MONDAY and self.seconds % _WEEK == 0:
            return f"{self.seconds // _WEEK}w"
        if self.seconds % _DAY == 0:
            return f"{self.seconds // _DAY}d"
        return f"{self.seconds // _HOUR}h"


def choose_bucket(interval_seconds: int, lo: int, hi: int, max_buckets: int) -> _Bucket:
    """The finest bucket, from the data's own interval up the ladder, that draws
    ``[lo, hi)`` in at most ``max_buckets``. A coarser bucket must hold whole data
    buckets, so it is a multiple of the interval on a grid the interval divides."""
    candidates = [_Bucket(interval_seconds)]
    for width in _LADDER:
        anchor = _MONDAY if width % _WEEK == 0 else 0
        whole = width % interval_seconds == 0 and anchor % interval_seconds == 0
        if width > interval_seconds and whole:
            candidates.append(_Bucket(width, anchor))
    for bucket in candidates:
        if bucket.count(lo, hi) <= max_buckets:
            return bucket
    bucket = candidates[-1]
    while bucket.count(lo, hi) > max_buckets:
        bucket = _Bucket(bucket.seconds * 2, bucket.anchor)
    return bucket


@dataclass(frozen=True, slots=True)
class _Panel:
    asset: str
    #: [series, bucket] USD; series in the chart's order (top exchanges, then other)
    shorts: Any
    longs: Any
    rows: int


@dataclass(frozen=True, slots=True)
class _Chart:
    panels: list[_Panel]
    series: list[str]
    #: bucket edges, epoch seconds, one more than buckets
    edges: list[int]
    bucket: _Bucket
    interval: str
    lo: int
    hi: int


def _bin(
    amounts: _Amounts,
    interval_seconds: int,
    interval_text: str,
    lo: int,
    hi: int,
    top: int,
    max_buckets: int,
) -> _Chart:
    np = import_optional("numpy", "plot_liquidations", extra=_PLOT_EXTRA)
    bucket = choose_bucket(interval_seconds, lo, hi, max_buckets)
    first = bucket.floor(lo)
    count = bucket.count(lo, hi)
    # Rank exchanges over the whole chart, so an exchange has one colour in every panel.
    totals: dict[str, float] = {}
    for buckets in amounts.values():
        for when, by_exchange in buckets.items():
            if lo <= when < hi:
                for name, (long, short) in by_exchange.items():
                    totals[name] = totals.get(name, 0.0) + long + short
    named = sorted((n for n in totals if n != _UNATTRIBUTED), key=lambda n: (-totals[n], n))
    series = named[:top]
    if len(named) > top or _UNATTRIBUTED in totals:
        series.append(_OTHER if named else _ALL_EXCHANGES)
    index = {name: i for i, name in enumerate(series)}
    rest = len(series) - 1
    panels = []
    for asset, buckets in amounts.items():
        shorts = np.zeros((len(series), count))
        longs = np.zeros((len(series), count))
        rows = 0
        for when, by_exchange in buckets.items():
            if not lo <= when < hi:
                continue
            rows += 1
            column = (when - first) // bucket.seconds
            for name, (long, short) in by_exchange.items():
                row = index.get(name, rest)
                longs[row, column] += long
                shorts[row, column] += short
        panels.append(_Panel(asset, shorts, longs, rows))
    edges = [first + i * bucket.seconds for i in range(count + 1)]
    return _Chart(panels, series, edges, bucket, interval_text, lo, hi)


# --- the figure -----------------------------------------------------------------------------


def plot_liquidations(
    data: _Data,
    *,
    asset: str | None = None,
    interval: str = "1h",
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    synthetic: bool = False,
    top_exchanges: int = 5,
    width_px: int = 1600,
    height_px: int = 900,
) -> Figure:
    """A chart of liquidations per bucket, one panel per asset (see the module docstring).

    ``data``: a list of :class:`~kaiko_liq.models.LiquidationRow` with ``asset=``, a
    mapping ``{asset: rows}`` (``fetch_many``'s result; panels in its order), or a
    pandas, polars or pyarrow frame of :mod:`kaiko_liq.export`'s ``nested``,
    ``exchanges`` or ``totals`` shape (with an ``asset`` column, or ``asset=``; a totals
    frame has no breakdown, so its bars are "all exchanges").

    ``interval`` is the one the rows were fetched with. ``start``/``end`` give the
    window (snapped outward to the interval grid, as Kaiko does; rows outside it are
    left out); without them it is the rows' own span. ``synthetic=True`` labels the chart
    as emulator data. ``top_exchanges`` (1-10) exchanges get their own colour, the rest
    are "other". The figure is ``width_px`` x ``height_px`` pixels at 100 dpi.

    Raises :class:`InvalidArgumentError` for a bad argument, a row off the interval's grid
    or a bucket given twice; :class:`~kaiko_liq.export.MissingDependencyError` without
    matplotlib.
    """
    grid = parse_interval(interval)
    _check_int("width_px", width_px, _SIZE_RANGE[0])
    _check_int("height_px", height_px, _SIZE_RANGE[1])
    _check_int("top_exchanges", top_exchanges, _TOP_RANGE)
    lo_time = None if start is None else parse_time(start, "start")
    hi_time = None if end is None else parse_time(end, "end")
    if lo_time is not None and hi_time is not None:
        validate_window(lo_time, hi_time)
    amounts = _collect(data, asset)
    _matplotlib("plot_liquidations")  # before any work that needs it
    for name, buckets in amounts.items():
        for when in buckets:
            if when % grid.seconds:
                shown = datetime.fromtimestamp(when, UTC).isoformat()
                raise InvalidArgumentError(
                    f"{name} has a row at {shown}, which is not on the {grid} grid; pass "
                    "the interval the rows were fetched with"
                )
    times = [when for buckets in amounts.values() for when in buckets]
    if (lo_time is None or hi_time is None) and not times:
        raise InvalidArgumentError(
            "no rows to plot and no start/end to draw an empty window; pass start= and end="
        )
    lo = grid.floor(lo_time) if lo_time is not None else None
    hi = grid.ceil(hi_time) if hi_time is not None else None
    lo_s = _to_seconds(lo) if lo is not None else min(times)
    hi_s = _to_seconds(hi) if hi is not None else max(times) + grid.seconds
    if lo_s >= hi_s:
        raise InvalidArgumentError(
            "the rows all lie after end= (or before start=); nothing would be drawn"
        )
    max_buckets = max(1, int(width_px * _PLOT_AREA) // _MIN_BAR_PX)
    chart = _bin(amounts, grid.seconds, str(grid), lo_s, hi_s, top_exchanges, max_buckets)
    return _draw(chart, synthetic=synthetic, width_px=width_px, height_px=height_px)


def _to_seconds(t: datetime) -> int:
    delta = t - EPOCH
    return delta.days * _DAY + delta.seconds


def _check_int(name: str, value: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgumentError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def _when(t: int) -> datetime:
    return EPOCH + timedelta(seconds=t)


def _window_text(lo: int, hi: int) -> str:
    start, end = _when(lo), _when(hi)
    if start.hour == end.hour == 0:
        return f"{start:%Y-%m-%d} → {end:%Y-%m-%d} UTC"
    return f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC"


def _title(chart: _Chart) -> str:
    names = [p.asset.upper() for p in chart.panels]
    shown = (
        ", ".join(names) if len(names) <= 6 else f"{', '.join(names[:5])} and {len(names) - 5} more"
    )
    window = _window_text(chart.lo, chart.hi)
    return f"Liquidations (USD) of {shown} · {window} · {chart.interval} interval"


def _subtitle(chart: _Chart) -> str:
    sides = "▲ shorts above zero, ▼ longs below · left: sums over the window"
    width = str(chart.bucket)
    if chart.bucket.seconds != parse_interval(chart.interval).seconds:
        return f"aggregated to {width} buckets from {chart.interval} · {sides}"
    return f"per {width} bucket · {sides}"


def _shades(mpl: Any, name: str, count: int) -> list[Any]:
    cmap = mpl.colormaps[name]
    if count == 1:
        return [cmap(0.8)]
    # Darkest (largest exchange) nearest zero; the lightest still clear of white.
    return [cmap(0.92 - 0.57 * i / (count - 1)) for i in range(count)]


def _draw(chart: _Chart, *, synthetic: bool, width_px: int, height_px: int) -> Figure:
    mpl = _matplotlib("plot_liquidations")
    figure_mod = import_optional("matplotlib.figure", "plot_liquidations", extra=_PLOT_EXTRA)
    agg = import_optional("matplotlib.backends.backend_agg", "plot_liquidations", extra=_PLOT_EXTRA)
    mdates = import_optional("matplotlib.dates", "plot_liquidations", extra=_PLOT_EXTRA)
    ticker = import_optional("matplotlib.ticker", "plot_liquidations", extra=_PLOT_EXTRA)
    patches = import_optional("matplotlib.patches", "plot_liquidations", extra=_PLOT_EXTRA)
    np = import_optional("numpy", "plot_liquidations", extra=_PLOT_EXTRA)

    fig: Figure = figure_mod.Figure(
        figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI, layout="constrained"
    )
    agg.FigureCanvasAgg(fig)
    grid = fig.subplots(len(chart.panels), 1, sharex=True, squeeze=False)
    axes: list[Axes] = list(grid[:, 0])

    named = [s for s in chart.series if s not in (_OTHER, _ALL_EXCHANGES)]
    short_colours = _shades(mpl, _SHORT_COLOURS, len(named))
    long_colours = _shades(mpl, _LONG_COLOURS, len(named))
    if len(named) < len(chart.series):
        short_colours.append(_SHORT_OTHER if named else mpl.colormaps[_SHORT_COLOURS](0.75))
        long_colours.append(_LONG_OTHER if named else mpl.colormaps[_LONG_COLOURS](0.65))

    edges = mdates.date2num([_when(t) for t in chart.edges])
    # Wide buckets read as bars with a gap between them; narrow ones would be all gap.
    bucket_px = width_px * _PLOT_AREA / (len(chart.edges) - 1)
    gap = _BAR_GAP if bucket_px >= _GAP_FROM_PX else 0.0
    # About one y tick per 40 px of panel, so short panels do not stack their labels.
    ticks = max(2, min(6, int(height_px * 0.8 / len(chart.panels)) // 40))
    for ax, panel in zip(axes, chart.panels, strict=True):
        _draw_panel(
            ax,
            panel,
            edges,
            short_colours,
            long_colours,
            np,
            ticker,
            patches,
            synthetic,
            gap,
            ticks,
        )
    last = axes[-1]
    locator = mdates.AutoDateLocator(tz=UTC, minticks=5, maxticks=12)
    last.xaxis.set_major_locator(locator)
    last.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    last.set_xlim(edges[0], edges[-1])
    last.set_xlabel("time (UTC)", fontsize=12)
    last.tick_params(axis="x", labelsize=11)

    fig.suptitle(_title(chart), fontsize=17, fontweight="bold", x=0.01, ha="left")
    top = axes[0]
    top.set_title(_subtitle(chart), loc="left", fontsize=12)
    if synthetic:
        top.set_title(
            "SYNTHETIC (built-in emulator) — not market data",
            loc="right",
            fontsize=13,
            fontweight="bold",
            color="white",
            bbox={"boxstyle": "round,pad=0.3", "facecolor": _SYNTHETIC_RED, "edgecolor": "none"},
        )
    else:
        top.set_title("Source: Kaiko", loc="right", fontsize=12, color="#333333")

    # Two legend rows, shorts then longs; matplotlib fills columns first, so interleave.
    blank = patches.Rectangle((0, 0), 1, 1, visible=False)
    handles: list[Any] = [blank, blank]
    labels = ["▲ shorts:", "▼ longs:"]
    for name, short, long in zip(chart.series, short_colours, long_colours, strict=True):
        handles += [patches.Patch(color=short), patches.Patch(color=long)]
        labels += [name, name]
    legend = fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=len(chart.series) + 1,
        fontsize=11,
        frameon=False,
        handlelength=1.6,
        columnspacing=1.4,
    )
    for text in legend.get_texts()[:2]:
        text.set_fontweight("bold")
    return fig


def _draw_panel(
    ax: Axes,
    panel: _Panel,
    edges: Any,
    short_colours: list[Any],
    long_colours: list[Any],
    np: Any,
    ticker: Any,
    patches: Any,
    synthetic: bool,
    gap: float,
    ticks: int,
) -> None:
    if gap:
        # Bars with gaps, still one path a layer: each bucket's edges are its left and
        # the gap's start, and a NaN value over each gap leaves it unfilled.
        lefts, rights = edges[:-1], edges[:-1] + (edges[1:] - edges[:-1]) * (1 - gap)
        edges = np.column_stack([lefts, rights]).ravel()

    def spread(values: Any) -> Any:
        if not gap:
            return values
        out = np.full(2 * len(values) - 1, np.nan)
        out[::2] = values
        return out

    def layer(top: Any, bottom: Any, colour: Any) -> None:
        # A StepPatch is what ax.stairs draws; added as a plain artist because add_patch
        # walks every vertex to update the data limits (~40 ms a layer), and the limits
        # are set below anyway.
        ax.add_artist(
            patches.StepPatch(
                spread(top), edges, baseline=spread(bottom), fill=True, color=colour, lw=0
            )
        )

    below = np.zeros(panel.shorts.shape[1])
    for values, colour in zip(panel.shorts, short_colours, strict=True):
        if values.any():
            layer(below + values, below, colour)
            below = below + values
    above = np.zeros(panel.longs.shape[1])
    for values, colour in zip(panel.longs, long_colours, strict=True):
        if values.any():
            layer(-(above + values), -above, colour)
            above = above + values
    peak = float(max(below.max(initial=0.0), above.max(initial=0.0)))
    limit = peak * _HEADROOM if peak > 0 else 1.0
    ax.set_ylim(-limit, limit)
    ax.axhline(0.0, color="#222222", linewidth=0.8)
    ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=ticks, symmetric=True))
    # Longs are drawn below zero but are amounts too: label both sides unsigned.
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: format_usd(abs(v))))
    ax.tick_params(axis="y", labelsize=11)
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    # The asset and its two sums sit left of the axis, outside the data: a label inside
    # the panel would hide whatever bars ran under it.
    ax.set_ylabel(
        f"{panel.asset.upper()}\n▲ {format_usd(float(panel.shorts.sum()))}"
        f"\n▼ {format_usd(float(panel.longs.sum()))}",
        rotation=0,
        ha="right",
        va="center",
        fontsize=12,
        fontweight="bold",
        linespacing=1.5,
        parse_math=False,  # two "$" would read as mathtext
    )
    if panel.rows == 0:
        ax.text(
            0.5,
            0.5,
            "no liquidations in this window",
            transform=ax.transAxes,
            fontsize=13,
            color="#555555",
            ha="center",
            va="center",
        )
    if synthetic:
        ax.text(
            0.5,
            0.5,
            "SYNTHETIC",
            transform=ax.transAxes,
            fontsize=64,
            fontweight="bold",
            color=_SYNTHETIC_RED,
            alpha=0.07,
            ha="center",
            va="center",
            zorder=0,
        )
