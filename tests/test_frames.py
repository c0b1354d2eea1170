"""fetch_frame: one call to a DataFrame, equal to the rows of one fetch per asset."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from kaiko_liq import InvalidArgumentError, LiquidationClient, LiquidationRow
from kaiko_liq.emulator import RunningEmulator
from kaiko_liq.export import EXCHANGE_COLUMNS, TOTAL_COLUMNS, MissingDependencyError

START, END = "2025-03-01", "2025-03-04T05:00:00Z"
FIGURES = (
    "total_trades",
    "total_amount",
    "long_trades",
    "long_amount",
    "short_trades",
    "short_amount",
)


def expected(by_asset: dict[str, list[LiquidationRow]], shape: str) -> list[tuple[Any, ...]]:
    """The table a shape should hold, built straight from the rows."""
    out: list[tuple[Any, ...]] = []
    for asset, rows in by_asset.items():
        for row in rows:
            figures = tuple(getattr(row, f) for f in FIGURES)
            if shape == "exchanges":
                for ex in row.exchanges:
                    ex_figures = tuple(getattr(ex, f) for f in FIGURES)
                    out.append((asset, row.interval_time, ex.exchange, *ex_figures))
                continue
            head = (asset, row.interval_time, row.interval_timestamp, *figures)
            if shape == "nested":
                head += ([msgspec.structs.asdict(ex) for ex in row.exchanges],)
            out.append(head)
    return out


def _plain(value: Any) -> Any:
    if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        value = value.to_pydatetime()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy array of structs
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def table_rows(frame: Any, backend: str) -> tuple[list[str], list[tuple[Any, ...]], str]:
    """Column names, row tuples, and the type of ``interval_time``, for any backend."""
    if backend == "pandas":
        columns = list(frame.columns)
        rows = [tuple(_plain(v) for v in r) for r in frame.itertuples(index=False)]
        return columns, rows, str(frame["interval_time"].dtype)
    if backend == "polars":
        return (
            frame.columns,
            [tuple(_plain(v) for v in r) for r in frame.rows()],
            str(frame.schema["interval_time"]),
        )
    columns = frame.column_names
    data = frame.to_pylist()
    rows = [tuple(_plain(d[c]) for c in columns) for d in data]
    return columns, rows, str(frame.schema.field("interval_time").type)


TIME_TYPES = {
    "pandas": "datetime64[ns, UTC]",
    "polars": "Datetime(time_unit='ns', time_zone='UTC')",
    "arrow": "timestamp[ns, tz=UTC]",
}


@pytest.mark.parametrize("backend", ["pandas", "polars", "arrow"])
@pytest.mark.parametrize("shape", ["totals", "exchanges", "nested"])
async def test_fetch_frame_equals_the_rows_of_fetch_for_every_backend_and_shape(
    emulator: RunningEmulator, backend: str, shape: str
) -> None:
    assets = ["eth", "btc"]
    async with LiquidationClient(base_url=emulator.base_url) as client:
        frame = await client.fetch_frame(assets, START, END, backend=backend, shape=shape)
        rows = {a: await client.fetch(a, START, END, sort="asc") for a in assets}
    columns, got, time_type = table_rows(frame, backend)
    layout = EXCHANGE_COLUMNS if shape == "exchanges" else TOTAL_COLUMNS
    assert columns == list(layout) + (["exchanges"] if shape == "nested" else [])
    assert time_type == TIME_TYPES[backend]
    want = expected(rows, shape)
    assert len(want) > 100
    assert got == want


@pytest.mark.parametrize("backend", ["pandas", "polars", "arrow"])
async def test_one_asset_still_has_its_asset_column_and_sort_is_kept(
    emulator: RunningEmulator, backend: str
) -> None:
    async with LiquidationClient(base_url=emulator.base_url) as client:
        frame = await client.fetch_frame("sol", START, END, sort="desc", backend=backend)
        rows = await client.fetch("sol", START, END, sort="desc")
    columns, got, _ = table_rows(frame, backend)
    assert columns[0] == "asset"
    assert got == expected({"sol": rows}, "totals")
    times = [r[1] for r in got]
    assert times == sorted(times, reverse=True) and times[0].tzinfo is not None
    assert times[-1] == datetime(2025, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "excel"}, "backend 'excel' is not one of"),
        ({"shape": "wide"}, "shape 'wide' is not one of"),
        ({"sort": "up"}, "sort 'up'"),
    ],
)
async def test_bad_backend_or_shape_is_refused_before_anything_is_sent(
    emulator: RunningEmulator, options: dict[str, str], message: str
) -> None:
    async with LiquidationClient(base_url=emulator.base_url) as client:
        with pytest.raises(InvalidArgumentError, match=message):
            await client.fetch_frame("eth", START, END, **options)
    assert emulator.stats.total_requests == 0


async def test_a_missing_backend_package_is_named_before_anything_is_sent(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules: "import polars" raises ImportError, as if it were not installed.
    monkeypatch.setitem(sys.modules, "polars", None)
    async with LiquidationClient(base_url=emulator.base_url) as client:
        with pytest.raises(MissingDependencyError, match=r"kaiko-liq\[polars\]"):
            await client.fetch_frame("eth", START, END, backend="polars")
    assert emulator.stats.total_requests == 0
