"""kaiko_liq.plot: the pure pieces (formats, bucket choice, binning), every input form,
the errors, the missing-matplotlib path, and charts of emulator data saved as PNG and SVG.

Size is the point only in the end-to-end tests; elsewhere figures are small and not
rendered, so the whole file stays around ten seconds.
"""

from __future__ import annotations

import io
import re
import struct
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import StepPatch

from kaiko_liq import LiquidationClient
from kaiko_liq.emulator import RunningEmulator
from kaiko_liq.emulator.data import rows_for
from kaiko_liq.errors import InvalidArgumentError
from kaiko_liq.export import MissingDependencyError, to_arrow, to_pandas, to_polars
from kaiko_liq.models import LiquidationRow
from kaiko_liq.plot import (
    check_chart_path,
    choose_bucket,
    format_usd,
    plot_liquidations,
    save_chart,
)

SMALL = {"width_px": 480, "height_px": 300}
START, END = "2025-10-01", "2025-10-08"
HOUR = 3600
DAY = 86_400


@pytest.fixture(scope="module")
def week() -> dict[str, list[LiquidationRow]]:
    """A week of hourly rows for two assets, straight from the emulator's generator."""
    return {asset: rows_for(asset, START, END) for asset in ("eth", "sol")}


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def _layers(ax: Any) -> list[StepPatch]:
    return [p for p in ax.patches if isinstance(p, StepPatch)]


def _stacks(ax: Any) -> tuple[np.ndarray, np.ndarray]:
    """The drawn (shorts, longs) heights per bucket of a panel. Layers are cumulative and
    drawn shorts first, outward from zero, so each side's last layer is its stack's top."""
    shorts = longs = np.zeros(0)
    for layer in _layers(ax):
        values = layer.get_data().values
        values = values[~np.isnan(values)]  # NaN: the gap between two wide bars
        if values.max() > 0:
            shorts = values
        elif values.min() < 0:
            longs = -values
    return shorts, longs


def _texts(fig: Figure) -> str:
    parts = [fig.get_suptitle()]
    for ax in fig.axes:
        parts += [ax.get_title(loc) for loc in ("left", "center", "right")]
        parts += [t.get_text() for t in ax.texts]
    parts += [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    return "\n".join(parts)


def _legend(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


# --- pure pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0.0, "$0"),
        (950.4, "$950"),
        (1234.0, "$1.23K"),
        (12_345.0, "$12.3K"),
        (999_400.0, "$999K"),
        (999_999.0, "$1M"),
        (1_500_000.0, "$1.5M"),
        (1_250_000.0, "$1.25M"),
        (2.5e9, "$2.5B"),
        (3e12, "$3T"),
        (-4_200_000.0, "-$4.2M"),
    ],
)
def test_format_usd(amount: float, text: str) -> None:
    assert format_usd(amount) == text


@pytest.mark.parametrize(
    ("name", "fmt"), [("a.png", "png"), ("dir/b.SVG", "svg"), (Path("c.Png"), "png")]
)
def test_check_chart_path_accepts(name: str | Path, fmt: str) -> None:
    assert check_chart_path(name) == fmt


@pytest.mark.parametrize(("name", "shown"), [("chart.jpg", ".jpg"), ("chart", "(none)")])
def test_check_chart_path_names_the_bad_extension_and_the_allowed_ones(
    name: str, shown: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        check_chart_path(name)
    message = str(caught.value)
    assert shown in message and ".png" in message and ".svg" in message


@pytest.mark.parametrize(
    ("interval", "days", "expected"),
    [
        (HOUR, 21, "1h"),  # 504 buckets fit 680
        (HOUR, 31, "2h"),  # 744 do not
        (HOUR, 662, "1d"),  # the emulator's whole span
        (HOUR, 5 * 365, "3d"),
        (4 * HOUR, 365 * 3, "2d"),
        (DAY, 365 * 20, "2w"),
        (5 * HOUR, 365, "20h"),  # no ladder step holds whole 5h buckets: doubling
    ],
)
def test_choose_bucket_is_the_finest_that_fits(interval: int, days: int, expected: str) -> None:
    lo = _epoch("2025-01-08")
    bucket = choose_bucket(interval, lo, lo + days * DAY, 680)
    assert str(bucket) == expected
    assert bucket.count(lo, lo + days * DAY) <= 680
    assert bucket.seconds % interval == 0


def test_weekly_buckets_start_on_monday() -> None:
    lo = _epoch("2025-01-08")  # a Wednesday
    bucket = choose_bucket(DAY, lo, lo + 365 * 10 * DAY, 680)
    assert str(bucket) == "1w"
    monday = datetime.fromtimestamp(bucket.floor(lo), UTC)
    assert monday.weekday() == 0 and monday.date() == datetime(2025, 1, 6).date()


# --- one chart, looked at closely ------------------------------------------------------------


def test_panels_titles_and_stacks_follow_the_rows(week: dict[str, list[LiquidationRow]]) -> None:
    fig = plot_liquidations(week, start=START, end=END, **SMALL)
    panels = [ax for ax in fig.axes if _layers(ax)]
    assert len(panels) == 2
    # One shared time axis, exactly the window.
    assert panels[0].get_shared_x_axes().joined(panels[0], panels[1])
    assert panels[1].get_xlim() == pytest.approx((_epoch(START) / DAY, _epoch(END) / DAY))
    title = fig.get_suptitle()
    assert "ETH, SOL" in title and "2025-10-01 → 2025-10-08 UTC" in title and "1h" in title
    assert "Source: Kaiko" in _texts(fig) and "SYNTHETIC" not in _texts(fig)
    assert "aggregated" not in _texts(fig)
    for ax, asset in zip(panels, week, strict=True):
        shorts, longs = _stacks(ax)
        rows = week[asset]
        assert len(shorts) == 7 * 24
        # Shorts above zero, longs below, each bucket the row's total.
        by_hour = {int(r.interval_time.timestamp()) // HOUR: r for r in rows}
        first = _epoch(START) // HOUR
        for i in range(len(shorts)):
            row = by_hour.get(first + i)
            assert shorts[i] == pytest.approx(row.short_amount if row else 0.0)
            assert longs[i] == pytest.approx(row.long_amount if row else 0.0)
        assert ax.get_ylim()[0] == -ax.get_ylim()[1]  # symmetric: the sides compare
        short_sum = format_usd(sum(r.short_amount for r in rows))
        long_sum = format_usd(sum(r.long_amount for r in rows))
        assert ax.get_ylabel() == f"{asset.upper()}\n▲ {short_sum}\n▼ {long_sum}"


def test_top_exchanges_by_amount_and_the_rest_as_other(
    week: dict[str, list[LiquidationRow]],
) -> None:
    totals: dict[str, float] = {}
    for rows in week.values():
        for row in rows:
            for ex in row.exchanges:
                totals[ex.exchange] = totals.get(ex.exchange, 0.0) + ex.total_amount
    ranked = sorted(totals, key=lambda n: -totals[n])
    fig = plot_liquidations(week, top_exchanges=2, **SMALL)
    labels = _legend(fig)
    # Two legend rows, interleaved column by column: shorts, longs.
    assert labels == [
        "▲ shorts:",
        "▼ longs:",
        *[n for n in ranked[:2] for _ in "sl"],
        "other",
        "other",
    ]
    # The colours of the two sides are two families: blues above, oranges below.
    handles = fig.legends[0].legend_handles
    for short, long in zip(handles[2::2], handles[3::2], strict=True):
        r, _, b, _ = short.get_facecolor()
        assert b > r
        r, _, b, _ = long.get_facecolor()
        assert r > b
    # Stacking changes how a bucket is split, never its height.
    alone = plot_liquidations(week, top_exchanges=10, **SMALL)
    for ax_top, ax_all in zip(fig.axes[:2], alone.axes[:2], strict=True):
        for a, b in zip(_stacks(ax_top), _stacks(ax_all), strict=True):
            np.testing.assert_allclose(a, b)
    assert "other" not in _legend(alone)


def test_a_long_window_is_summed_into_coarser_buckets_and_says_so() -> None:
    rows = rows_for("btc", "2025-01-08", "2025-07-08")
    fig = plot_liquidations(rows, asset="btc", width_px=800, height_px=450)
    # 800 px draws at most 340 buckets; 181 days of 1h need 1d ones.
    subtitle = fig.axes[0].get_title(loc="left")
    assert "aggregated to 1d buckets" in subtitle and "1h" in subtitle
    shorts, longs = _stacks(fig.axes[0])
    assert len(shorts) == 181
    assert shorts.sum() == pytest.approx(sum(r.short_amount for r in rows))
    assert longs.sum() == pytest.approx(sum(r.long_amount for r in rows))
    daily = rows_for("btc", "2025-01-08", "2025-07-08", "1d")
    np.testing.assert_allclose(longs, [r.long_amount for r in daily])


def test_synthetic_charts_say_so_loudly(week: dict[str, list[LiquidationRow]]) -> None:
    fig = plot_liquidations(week, synthetic=True, **SMALL)
    assert "SYNTHETIC (built-in emulator)" in fig.axes[0].get_title(loc="right")
    assert all(any(t.get_text() == "SYNTHETIC" for t in ax.texts) for ax in fig.axes)
    assert "Kaiko" not in fig.axes[0].get_title(loc="right")


def test_an_asset_without_rows_gets_an_empty_panel_that_says_so(
    week: dict[str, list[LiquidationRow]],
) -> None:
    fig = plot_liquidations({"eth": week["eth"], "pepe": []}, start=START, end=END, **SMALL)
    assert "no liquidations in this window" in [t.get_text() for t in fig.axes[1].texts]
    assert not _layers(fig.axes[1])


def test_rows_outside_the_window_are_left_out(week: dict[str, list[LiquidationRow]]) -> None:
    fig = plot_liquidations(week["eth"], asset="eth", start="2025-10-02", end="2025-10-03", **SMALL)
    shorts, _ = _stacks(fig.axes[0])
    day = [r for r in week["eth"] if r.interval_time.day == 2]
    assert len(shorts) == 24
    assert shorts.sum() == pytest.approx(sum(r.short_amount for r in day))


def test_window_from_the_rows_when_not_given(week: dict[str, list[LiquidationRow]]) -> None:
    rows = week["eth"][5:30]
    fig = plot_liquidations(rows, asset="eth", **SMALL)
    lo, hi = rows[0].interval_time, rows[-1].interval_time + timedelta(hours=1)
    assert f"{lo:%Y-%m-%d %H:%M} → {hi:%Y-%m-%d %H:%M} UTC" in fig.get_suptitle()


def test_descending_rows_draw_the_same_chart(week: dict[str, list[LiquidationRow]]) -> None:
    asc = plot_liquidations(week, **SMALL)
    desc = plot_liquidations({k: v[::-1] for k, v in week.items()}, **SMALL)
    for a, b in zip(asc.axes, desc.axes, strict=True):
        for x, y in zip(_stacks(a), _stacks(b), strict=True):
            np.testing.assert_array_equal(x, y)


def test_totals_short_of_their_breakdown_show_the_rest_as_other() -> None:
    row = next(
        r
        for r in rows_for("eth", START, END)
        if len(r.exchanges) > 1 and r.long_amount > 0 and r.short_amount > 0
    )
    # The breakdown misses an exchange: the bar still reaches the row's total.
    partial = msgspec.structs.replace(row, exchanges=row.exchanges[:1])
    fig = plot_liquidations([partial], asset="eth", **SMALL)
    shorts, longs = _stacks(fig.axes[0])
    assert shorts[0] == pytest.approx(row.short_amount)
    assert longs[0] == pytest.approx(row.long_amount)
    assert _legend(fig)[-1] == "other"


# --- frames ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "shape"),
    [
        (to_pandas, "nested"),
        (to_pandas, "exchanges"),
        (to_polars, "nested"),
        (to_polars, "exchanges"),
        (to_arrow, "nested"),
        (to_arrow, "exchanges"),
    ],
)
def test_frames_draw_what_rows_draw(
    week: dict[str, list[LiquidationRow]], build: Any, shape: str
) -> None:
    expected = plot_liquidations(week, **SMALL)
    fig = plot_liquidations(build(week, shape=shape), **SMALL)
    assert fig.get_suptitle() == expected.get_suptitle()
    assert _legend(fig) == _legend(expected)
    for a, b in zip(fig.axes, expected.axes, strict=True):
        for x, y in zip(_stacks(a), _stacks(b), strict=True):
            np.testing.assert_allclose(x, y)


@pytest.mark.parametrize("build", [to_pandas, to_polars, to_arrow])
def test_a_totals_frame_draws_all_exchanges_as_one(
    week: dict[str, list[LiquidationRow]], build: Any
) -> None:
    fig = plot_liquidations(build(week["eth"], asset="eth"), **SMALL)
    assert _legend(fig)[2:] == ["all exchanges", "all exchanges"]
    shorts, _ = _stacks(fig.axes[0])
    assert shorts.sum() == pytest.approx(sum(r.short_amount for r in week["eth"]))


def test_a_frame_without_an_asset_column_takes_asset(
    week: dict[str, list[LiquidationRow]],
) -> None:
    frame = to_arrow(week["eth"], asset=False, shape="nested")
    with pytest.raises(InvalidArgumentError, match="no 'asset' column; pass asset="):
        plot_liquidations(frame, **SMALL)
    fig = plot_liquidations(frame, asset="eth", **SMALL)
    assert "ETH" in fig.get_suptitle()


# --- bad input ------------------------------------------------------------------------------


def _rows() -> list[LiquidationRow]:
    return rows_for("eth", START, "2025-10-02")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: plot_liquidations(_rows()), "pass asset="),
        (lambda: plot_liquidations({"eth": _rows()}, asset="eth"), "mapping's keys"),
        (lambda: plot_liquidations(_rows(), asset="eth", interval="4h"), "not on the 4h grid"),
        (lambda: plot_liquidations(_rows() + _rows()[:1], asset="eth"), "two rows"),
        (lambda: plot_liquidations(_rows(), asset="eth", interval="2d"), "longer than one day"),
        (lambda: plot_liquidations(_rows(), asset="eth", top_exchanges=0), "top_exchanges"),
        (lambda: plot_liquidations(_rows(), asset="eth", width_px=100), "width_px"),
        (lambda: plot_liquidations(_rows(), asset="eth", start=END, end=START), "not before"),
        (lambda: plot_liquidations([], asset="eth"), "no rows to plot"),
        (lambda: plot_liquidations({}), "no assets"),
        (lambda: plot_liquidations(42), "data must be"),
        (lambda: plot_liquidations([{"interval_time": 1}], asset="eth"), "LiquidationRow"),
        (
            lambda: plot_liquidations(_rows(), asset="eth", start="2026-01-01", end="2026-01-02"),
            None,  # a window with no rows is a chart of nothing, not an error
        ),
    ],
)
def test_bad_input_is_refused_saying_what_is_wrong(call: Any, match: str | None) -> None:
    if match is None:
        assert isinstance(call(), Figure)
        return
    with pytest.raises(InvalidArgumentError, match=match):
        call()


def test_a_naive_time_in_a_frame_is_refused() -> None:
    frame = to_pandas(_rows(), asset="eth")
    frame["interval_time"] = frame["interval_time"].dt.tz_localize(None)
    with pytest.raises(InvalidArgumentError, match="naive"):
        plot_liquidations(frame, **SMALL)


# --- without matplotlib -----------------------------------------------------------------------


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every matplotlib module unimportable, as on an install without the extra."""
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.setitem(sys.modules, name, None)
    yield


@pytest.mark.usefixtures("no_matplotlib")
@pytest.mark.parametrize(
    "call",
    [
        lambda: plot_liquidations(_rows(), asset="eth"),
        lambda: check_chart_path("chart.png"),
    ],
)
def test_without_matplotlib_the_error_says_how_to_install_it(call: Any) -> None:
    with pytest.raises(MissingDependencyError) as caught:
        call()
    assert "pip install 'kaiko-liq[plot]'" in str(caught.value)
    assert "\n" not in str(caught.value)


# --- saving -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["svg", "png"])
def test_the_same_chart_saves_to_the_same_bytes(
    tmp_path: Path, week: dict[str, list[LiquidationRow]], suffix: str
) -> None:
    saved = []
    for name in ("a", "b"):
        save_chart(plot_liquidations(week, **SMALL), tmp_path / f"{name}.{suffix}")
        saved.append((tmp_path / f"{name}.{suffix}").read_bytes())
    assert saved[0] == saved[1]


def test_a_failed_save_leaves_no_file_and_an_old_chart_intact(
    tmp_path: Path, week: dict[str, list[LiquidationRow]], monkeypatch: pytest.MonkeyPatch
) -> None:
    fig = plot_liquidations(week, **SMALL)
    target = tmp_path / "chart.png"

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError):
        save_chart(fig, target)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old chart")
    with pytest.raises(RuntimeError):
        save_chart(fig, target)
    assert list(tmp_path.iterdir()) == [target] and target.read_bytes() == b"old chart"
    with pytest.raises(InvalidArgumentError, match=r"\.jpg"):
        save_chart(fig, tmp_path / "chart.jpg")
    assert list(tmp_path.iterdir()) == [target]


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Charts\n", 1)[1].split("\n## ", 1)[0]
    [example] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md (### Charts)", "exec"), {})
    text = (tmp_path / "week.svg").read_text(encoding="utf-8")
    assert "A week of October" in text and "Liquidations (USD) of ETH, SOL" in text


# --- end to end: emulator → fetch_many → chart files -------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _check_png(data: bytes) -> None:
    width, height = _png_size(data)
    assert width >= 1600 and height >= 900
    pixels = imread(io.BytesIO(data), format="png")[..., :3]
    rgb = (pixels * 255).astype(np.uint32)
    colours = np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])
    assert len(colours) > 100  # antialiased text and a dozen fills, not a blank canvas
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    assert ((b - r) > 0.3).sum() > 2000  # shorts: blue, drawn
    assert (((r - b) > 0.3) & (g > 0.1)).sum() > 2000  # longs: orange (the red badge has no green)


async def _fetch(emu: RunningEmulator, assets: list[str]) -> dict[str, list[LiquidationRow]]:
    async with LiquidationClient(base_url=emu.base_url) as client:
        return await client.fetch_many(assets, START, END)


def _check_svg(text: str, assets: list[str]) -> None:
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    names = ", ".join(a.upper() for a in assets)
    # svg.fonttype "none" keeps text as text, so the title is there to find.
    assert f"Liquidations (USD) of {names} · 2025-10-01 → 2025-10-08 UTC · 1h interval" in text
    assert "SYNTHETIC (built-in emulator)" in text
    assert text.count("<path") > 10  # the stacks are drawn, not just the words
    width = float(text.split('width="', 1)[1].split("pt", 1)[0])
    assert width >= 1600 * 72 / 100  # 16 inches: the same layout as the PNG


def _save_and_check(fig: Figure, directory: Path, assets: list[str]) -> None:
    png = save_chart(fig, directory / "liq.png")
    svg = save_chart(fig, directory / "liq.svg")
    _check_png(png.read_bytes())
    _check_svg(svg.read_text(encoding="utf-8"), assets)
    assert sorted(p.name for p in directory.iterdir()) == ["liq.png", "liq.svg"]  # no temporary


@pytest.mark.parametrize("assets", [["btc"], ["btc", "eth", "sol"]])
async def test_png_and_svg_of_emulator_data(
    emulator: RunningEmulator, tmp_path: Path, assets: list[str]
) -> None:
    async with LiquidationClient(base_url=emulator.base_url) as client:
        rows = await client.fetch_many(assets, START, END)
    assert list(rows) == assets and all(rows.values())
    fig = plot_liquidations(rows, start=START, end=END, synthetic=True)
    assert len(fig.axes) == len(assets)
    _save_and_check(fig, tmp_path, assets)
