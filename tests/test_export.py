"""Export of hand-made rows (and the seed's example) to every format and frame, types included."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kaiko_liq.errors import InvalidArgumentError
from kaiko_liq.export import (
    EXCHANGE_COLUMNS,
    TOTAL_COLUMNS,
    arrow_schema,
    atomic_write,
    exchanges_path,
    flatten_exchanges,
    format_for_path,
    to_arrow,
    to_pandas,
    to_polars,
    write_csv,
    write_files,
    write_jsonl,
)
from kaiko_liq.models import ExchangeVolume, LiquidationRow, decode_envelope, decode_rows
from tests.seed import seed_response_json

FIGURES = (
    "total_trades",
    "total_amount",
    "long_trades",
    "long_amount",
    "short_trades",
    "short_amount",
)


def ex(
    name: str, long_trades: int, long_amount: float, short_trades: int, short_amount: float
) -> ExchangeVolume:
    return ExchangeVolume(
        exchange=name,
        total_trades=long_trades + short_trades,
        total_amount=long_amount + short_amount,
        long_trades=long_trades,
        long_amount=long_amount,
        short_trades=short_trades,
        short_amount=short_amount,
    )


def row(hour: int, *exchanges: ExchangeVolume) -> LiquidationRow:
    t = datetime(2025, 3, 1, hour, tzinfo=UTC)
    return LiquidationRow(
        interval_time=t,
        interval_timestamp=int(t.timestamp()) * 10**9,
        total_trades=sum(e.total_trades for e in exchanges),
        total_amount=sum(e.total_amount for e in exchanges),
        long_trades=sum(e.long_trades for e in exchanges),
        long_amount=sum(e.long_amount for e in exchanges),
        short_trades=sum(e.short_trades for e in exchanges),
        short_amount=sum(e.short_amount for e in exchanges),
        exchanges=list(exchanges),
    )


ETH = [
    row(0, ex("bbit", 1, 0.1, 2, 1234.5678901234567), ex("okex", 0, 0.0, 3, 1e-7)),
    row(1, ex("bnce", 5, 99999999.99, 0, 0.0)),
    row(3),  # a bucket with no exchanges: a totals row, no breakdown rows
]
SEED = decode_rows(decode_envelope(seed_response_json()).data)
DATA = {"eth": ETH, "btc": SEED}


def expected_totals(data: dict[str, list[LiquidationRow]]) -> list[dict[str, object]]:
    return [
        {"asset": a, "interval_time": r.interval_time, "interval_timestamp": r.interval_timestamp}
        | {f: getattr(r, f) for f in FIGURES}
        for a, rows in data.items()
        for r in rows
    ]


def expected_exchanges(data: dict[str, list[LiquidationRow]]) -> list[dict[str, object]]:
    return [
        {"asset": a, "interval_time": r.interval_time, "exchange": e.exchange}
        | {f: getattr(e, f) for f in FIGURES}
        for a, rows in data.items()
        for r in rows
        for e in r.exchanges
    ]


# --- formats and paths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("a.csv", "csv"),
        ("A.CSV", "csv"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.parquet", "parquet"),
        ("dir/a.pq", "parquet"),
    ],
)
def test_format_follows_the_extension(path: str, fmt: str) -> None:
    assert format_for_path(path) == fmt


def test_an_explicit_format_wins_over_the_extension() -> None:
    assert format_for_path("a.csv", "parquet") == "parquet"


@pytest.mark.parametrize("path", ["a.json", "a.xlsx", "noext"])
def test_unknown_extension_is_refused_with_the_choices(path: str) -> None:
    with pytest.raises(InvalidArgumentError, match=r"\.csv, \.jsonl.*csv, jsonl, parquet"):
        format_for_path(path)


def test_unknown_explicit_format_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="'xml' is not one of csv, jsonl, parquet"):
        format_for_path("a.csv", "xml")


def test_exchanges_path_sits_beside_the_totals() -> None:
    assert exchanges_path("out/liq.csv") == Path("out/liq.exchanges.csv")
    assert exchanges_path("liq.parquet") == Path("liq.exchanges.parquet")
    assert exchanges_path("liq") == Path("liq.exchanges")


# --- CSV and JSON Lines ---------------------------------------------------------------------------


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_totals_read_back_exactly() -> None:
    out = io.StringIO()
    assert write_csv(out, DATA) == 4
    header = out.getvalue().splitlines()[0]
    assert header == ",".join(TOTAL_COLUMNS)
    got = read_csv(out.getvalue())
    for line, want in zip(got, expected_totals(DATA), strict=True):
        assert line["asset"] == want["asset"]
        assert datetime.fromisoformat(line["interval_time"]) == want["interval_time"]
        assert line["interval_time"].endswith("Z")
        assert int(line["interval_timestamp"]) == want["interval_timestamp"]
        for f in FIGURES:
            # Counts as integers, amounts as the shortest repr: the same float comes back.
            parse = int if f.endswith("trades") else float
            assert parse(line[f]) == want[f]


def test_csv_exchanges_is_the_long_breakdown() -> None:
    out = io.StringIO()
    assert write_csv(out, DATA, shape="exchanges") == 5
    assert out.getvalue().splitlines()[0] == ",".join(EXCHANGE_COLUMNS)
    got = read_csv(out.getvalue())
    assert [(g["asset"], g["exchange"]) for g in got] == [
        ("eth", "bbit"),
        ("eth", "okex"),
        ("eth", "bnce"),
        ("btc", "bbit"),
        ("btc", "okex"),
    ]
    assert float(got[1]["short_amount"]) == 1e-7


def test_csv_without_asset_has_no_asset_column() -> None:
    out = io.StringIO()
    write_csv(out, ETH)
    assert out.getvalue().splitlines()[0] == ",".join(TOTAL_COLUMNS[1:])


def test_csv_refuses_nesting() -> None:
    with pytest.raises(InvalidArgumentError, match="nested"):
        write_csv(io.StringIO(), DATA, shape="nested")


def test_jsonl_keeps_the_api_nesting_with_asset_first() -> None:
    out = io.BytesIO()
    assert write_jsonl(out, DATA) == 4
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert list(lines[0])[:2] == ["asset", "interval_time"]
    assert [line["asset"] for line in lines] == ["eth", "eth", "eth", "btc"]
    # The seed row comes back as the API sent it, plus its asset.
    seed_row = json.loads(seed_response_json())["data"][0]
    assert lines[3] == {"asset": "btc"} | seed_row
    assert lines[2]["exchanges"] == []


# --- Arrow, pandas, polars ------------------------------------------------------------------------


def test_arrow_totals_types_and_values() -> None:
    table = to_arrow(DATA)
    assert table.column_names == list(TOTAL_COLUMNS)
    assert table.schema.field("interval_time").type == pa.timestamp("ns", tz="UTC")
    assert table.schema.field("interval_timestamp").type == pa.int64()
    assert table.schema.field("total_trades").type == pa.int64()
    assert table.schema.field("total_amount").type == pa.float64()
    assert table.schema.field("asset").type == pa.string()
    assert table.to_pylist() == expected_totals(DATA)
    # interval_time and interval_timestamp agree to the nanosecond.
    assert table.column("interval_time").cast(pa.int64()) == table.column("interval_timestamp")


def test_arrow_exchanges_and_nested_agree() -> None:
    flat = to_arrow(DATA, shape="exchanges")
    assert flat.column_names == list(EXCHANGE_COLUMNS)
    assert flat.to_pylist() == expected_exchanges(DATA)
    nested = to_arrow(DATA, shape="nested")
    assert nested.schema == arrow_schema("nested")
    assert flatten_exchanges(nested).to_pylist() == flat.to_pylist()


def test_arrow_of_one_asset_with_and_without_the_asset_column() -> None:
    assert to_arrow(ETH).column_names == list(TOTAL_COLUMNS[1:])
    named = to_arrow(ETH, asset="eth")
    assert named.column("asset").to_pylist() == ["eth"] * 3
    with pytest.raises(InvalidArgumentError, match="mapping"):
        to_arrow(DATA, asset="eth")


def test_empty_rows_give_typed_empty_tables() -> None:
    table = to_arrow([], shape="nested")
    assert table.num_rows == 0
    assert table.schema == arrow_schema("nested", asset=False)


def test_unknown_shape_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="shape 'wide'"):
        to_arrow(ETH, shape="wide")  # type: ignore[arg-type]


def test_pandas_types() -> None:
    frame = to_pandas(DATA)
    assert list(frame.columns) == list(TOTAL_COLUMNS)
    assert str(frame["interval_time"].dtype) == "datetime64[ns, UTC]"
    assert frame["total_trades"].dtype == "int64"
    assert frame["long_amount"].dtype == "float64"
    assert frame["interval_time"].iloc[0] == pd.Timestamp("2025-03-01T00:00:00Z")
    breakdown = to_pandas(DATA, shape="exchanges")
    assert len(breakdown) == 5
    assert list(breakdown["exchange"]) == ["bbit", "okex", "bnce", "bbit", "okex"]


def test_polars_types() -> None:
    frame = to_polars(DATA)
    assert frame.columns == list(TOTAL_COLUMNS)
    assert frame.schema["interval_time"] == pl.Datetime("ns", "UTC")
    assert frame.schema["total_trades"] == pl.Int64
    assert frame.schema["total_amount"] == pl.Float64
    assert frame.schema["asset"] == pl.String
    assert frame["interval_timestamp"].to_list() == [r.interval_timestamp for r in ETH + SEED]
    nested = to_polars(DATA, shape="nested")
    assert isinstance(nested.schema["exchanges"], pl.List)
    assert to_polars(DATA, shape="exchanges").height == 5


@pytest.mark.parametrize(
    ("module", "call", "extra"),
    [
        ("pyarrow", lambda: to_arrow(ETH), "parquet"),
        ("pandas", lambda: to_pandas(ETH), "pandas"),
        ("polars", lambda: to_polars(ETH), "polars"),
    ],
)
def test_a_missing_optional_dependency_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, call: object, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes ``import module`` fail
    with pytest.raises(ImportError, match=rf"pip install 'kaiko-liq\[{extra}\]'"):
        call()  # type: ignore[operator]


# --- files ------------------------------------------------------------------------------------


def test_write_files_csv_writes_totals_and_breakdown(tmp_path: Path) -> None:
    written = write_files(tmp_path / "liq.csv", DATA, "csv")
    assert written == [tmp_path / "liq.csv", tmp_path / "liq.exchanges.csv"]
    assert len(read_csv(written[0].read_text())) == 4
    assert len(read_csv(written[1].read_text())) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["liq.csv", "liq.exchanges.csv"]


def test_write_files_parquet_keeps_real_types(tmp_path: Path) -> None:
    written = write_files(tmp_path / "liq.parquet", DATA, "parquet")
    totals, breakdown = (pq.read_table(p) for p in written)
    assert totals.schema.equals(arrow_schema("totals"))
    assert breakdown.schema.equals(arrow_schema("exchanges"))
    assert totals.to_pylist() == expected_totals(DATA)
    assert breakdown.to_pylist() == expected_exchanges(DATA)


def test_write_files_jsonl_is_one_file(tmp_path: Path) -> None:
    [path] = write_files(tmp_path / "liq.jsonl", DATA, "jsonl")
    assert len(path.read_bytes().splitlines()) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["liq.jsonl"]


def test_atomic_write_replaces_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as stream:
        stream.write(b"half a fi")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary left behind

    with atomic_write(target) as stream:
        # While writing, the temporary is hidden (a leading dot) and the target is intact.
        [tmp] = [p for p in tmp_path.iterdir() if p != target]
        assert tmp.name.startswith(".out.csv.") and tmp.name.endswith(".tmp")
        assert target.read_text() == "old"
        stream.write(b"new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_atomic_write_honours_the_umask_not_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "f") as stream:
            stream.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644


def test_atomic_write_errors_name_the_target_not_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Creating the temporary fails: the directory is missing.
    missing = tmp_path / "no" / "such" / "out.csv"
    with pytest.raises(FileNotFoundError) as created, atomic_write(missing):
        pass
    assert created.value.filename == str(missing)

    # Writing fails: a disk that fills up at the fsync. The target is untouched.
    target = tmp_path / "out.csv"
    target.write_text("old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left") as written, atomic_write(target) as stream:
        stream.write(b"new")
    monkeypatch.undo()
    assert written.value.errno == errno.ENOSPC
    assert written.value.filename == str(target)
    assert ".tmp" not in str(written.value)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]

    # The rename fails: the target is a directory.
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(IsADirectoryError) as renamed, atomic_write(tmp_path / "d.csv") as stream:
        stream.write(b"x")
    assert renamed.value.filename == str(tmp_path / "d.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "out.csv"]
