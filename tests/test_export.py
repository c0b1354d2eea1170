"""Export of hand-made rows (and the seed's example) to every format and frame, types included."""

from __future__ import annotations

import contextlib
import csv
import errno
import gzip
import io
import json
import os
import stat
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiko_liq import export
from kaiko_liq.errors import InvalidArgumentError
from kaiko_liq.export import (
    EXCHANGE_COLUMNS,
    TOTAL_COLUMNS,
    arrow_schema,
    atomic_write,
    compression_for_path,
    exchanges_path,
    flatten_exchanges,
    format_for_path,
    to_arrow,
    to_pandas,
    to_polars,
    write_csv,
    write_files,
    write_jsonl,
    write_stdout,
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
    assert exchanges_path("out/liq.csv.gz") == Path("out/liq.exchanges.csv.gz")
    assert exchanges_path("liq.CSV.GZ") == Path("liq.exchanges.CSV.GZ")


@pytest.mark.parametrize(
    ("path", "fmt", "compression"),
    [
        ("a.csv.gz", "csv", "gzip"),
        ("a.jsonl.gz", "jsonl", "gzip"),
        ("a.ndjson.GZ", "jsonl", "gzip"),
        ("a.csv", "csv", None),
        ("-", "jsonl", None),
    ],
)
def test_gz_and_stdout_paths(path: str, fmt: str, compression: str | None) -> None:
    assert format_for_path(path) == fmt
    assert compression_for_path(path) == compression


def test_stdout_takes_csv_but_not_parquet() -> None:
    assert format_for_path("-", "csv") == "csv"
    with pytest.raises(InvalidArgumentError, match="Parquet is not written to standard output"):
        format_for_path("-", "parquet")


def test_parquet_gz_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="Parquet compresses its own columns"):
        format_for_path("a.parquet.gz")
    with pytest.raises(InvalidArgumentError, match="cannot tell the format.*\\.csv\\.gz"):
        format_for_path("a.txt.gz")


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


def test_csv_with_asset_false_has_no_asset_column() -> None:
    out = io.StringIO()
    write_csv(out, ETH, asset=False)
    assert out.getvalue().splitlines()[0] == ",".join(TOTAL_COLUMNS[1:])


@pytest.mark.parametrize(
    "call",
    [
        lambda: to_arrow(ETH),
        lambda: to_pandas(ETH, shape="exchanges"),
        lambda: to_polars(ETH),
        lambda: write_csv(io.StringIO(), ETH),
        lambda: write_jsonl(io.BytesIO(), ETH),
        lambda: write_stdout(ETH, stream=io.BytesIO()),
    ],
)
def test_a_plain_list_without_asset_is_refused(call: object) -> None:
    # A frame that silently has no asset column is wrong in a way nobody notices.
    with pytest.raises(InvalidArgumentError, match=r"asset='btc'.*asset=False"):
        call()  # type: ignore[operator]


def test_asset_must_be_a_code() -> None:
    with pytest.raises(InvalidArgumentError, match="asset code"):
        to_arrow(ETH, asset="")
    with pytest.raises(InvalidArgumentError, match="asset code"):
        to_polars(ETH, asset=7)  # type: ignore[arg-type]


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
    assert to_arrow(ETH, asset=False).column_names == list(TOTAL_COLUMNS[1:])
    assert to_arrow(DATA, asset=False, shape="nested").schema == arrow_schema("nested", asset=False)
    named = to_arrow(ETH, asset="eth")
    assert named.column("asset").to_pylist() == ["eth"] * 3
    with pytest.raises(InvalidArgumentError, match="mapping"):
        to_arrow(DATA, asset="eth")


def test_empty_rows_give_typed_empty_tables() -> None:
    for shape in ("totals", "exchanges", "nested"):
        table = to_arrow([], asset=False, shape=shape)
        assert table.num_rows == 0
        assert table.schema == arrow_schema(shape, asset=False)
        assert to_arrow({}, shape=shape).schema == arrow_schema(shape)
        assert to_arrow([], asset="eth", shape=shape).schema == arrow_schema(shape)


def test_unknown_shape_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="shape 'wide'"):
        to_arrow(ETH, asset="eth", shape="wide")  # type: ignore[arg-type]


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
        ("pyarrow", lambda: to_arrow(ETH, asset="eth"), "parquet"),
        ("pandas", lambda: to_pandas(ETH, asset="eth"), "pandas"),
        ("polars", lambda: to_polars(ETH, asset="eth"), "polars"),
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


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_gz_files_hold_the_same_bytes_compressed(tmp_path: Path, fmt: str) -> None:
    plain = write_files(tmp_path / f"liq.{fmt}", DATA, format_for_path(f"x.{fmt}"))
    packed = write_files(tmp_path / f"liq.{fmt}.gz", DATA, format_for_path(f"x.{fmt}.gz"))
    assert [p.name for p in packed] == [p.name + ".gz" for p in plain]
    assert packed[-1].name == f"liq.exchanges.{fmt}.gz" or fmt == "jsonl"
    for a, b in zip(plain, packed, strict=True):
        assert gzip.decompress(b.read_bytes()) == a.read_bytes()


@pytest.mark.parametrize("name", ["liq.csv", "liq.csv.gz", "liq.jsonl.gz", "liq.parquet"])
def test_the_same_rows_give_byte_identical_files(tmp_path: Path, name: str) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    a = write_files(first / name, DATA, format_for_path(name))
    os.utime(first / name, (0, 0))  # a gzip header would carry the time: it must not
    b = write_files(second / name, DATA, format_for_path(name))
    for x, y in zip(a, b, strict=True):
        assert x.read_bytes() == y.read_bytes()
    if name.endswith(".gz"):
        header = a[0].read_bytes()[:10]
        assert header[4:8] == b"\0\0\0\0"  # MTIME 0
        assert header[3] & 0x08 == 0  # no FNAME


def test_gz_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "liq.jsonl.gz"
    target.write_bytes(b"old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_files(target, DATA, "jsonl")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["liq.jsonl.gz"]


def test_write_files_refuses_stdout_and_parquet_gz(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="write_stdout"):
        write_files("-", DATA, "jsonl")
    with pytest.raises(InvalidArgumentError, match="Parquet compresses"):
        write_files(tmp_path / "liq.parquet.gz", DATA, "parquet")
    assert list(tmp_path.iterdir()) == []


def test_write_stdout_jsonl_and_csv(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert write_stdout(DATA) == 4
    out = capsysbinary.readouterr().out
    expected = io.BytesIO()
    write_jsonl(expected, DATA)
    assert out == expected.getvalue()

    buffer = io.BytesIO()
    assert write_stdout(DATA, "csv", shape="exchanges", stream=buffer) == 5
    assert buffer.getvalue().decode().splitlines()[0] == ",".join(EXCHANGE_COLUMNS)
    assert write_stdout(ETH, "csv", asset="eth", stream=buffer) == 3


def test_write_stdout_refuses_parquet_and_shapes_for_jsonl() -> None:
    with pytest.raises(InvalidArgumentError, match="standard output"):
        write_stdout(DATA, "parquet", stream=io.BytesIO())
    with pytest.raises(InvalidArgumentError, match="CSV only"):
        write_stdout(DATA, "jsonl", shape="exchanges", stream=io.BytesIO())


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


# --- the column-wise Arrow build against the obvious one ----------------------------------------

_counts = st.integers(min_value=0, max_value=2**62)
_amounts = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
_exchanges = st.builds(
    ExchangeVolume,
    exchange=st.text(max_size=6),
    total_trades=_counts,
    total_amount=_amounts,
    long_trades=_counts,
    long_amount=_amounts,
    short_trades=_counts,
    short_amount=_amounts,
)


@st.composite
def _rows(draw: st.DrawFn) -> list[LiquidationRow]:
    times = draw(
        st.lists(
            st.datetimes(
                min_value=datetime(2000, 1, 1),
                max_value=datetime(2100, 1, 1),
                timezones=st.just(UTC),
            ),
            max_size=12,
        )
    )
    return [
        LiquidationRow(
            interval_time=t,
            interval_timestamp=draw(st.integers(min_value=-(2**63), max_value=2**63 - 1)),
            total_trades=draw(_counts),
            total_amount=draw(_amounts),
            long_trades=draw(_counts),
            long_amount=draw(_amounts),
            short_trades=draw(_counts),
            short_amount=draw(_amounts),
            exchanges=draw(st.lists(_exchanges, max_size=5)),
        )
        for t in times
    ]


def reference_tables(data: dict[str, list[LiquidationRow]]) -> dict[str, pa.Table]:
    """The straightforward conversion: one dict per row (and per exchange), then Arrow."""
    nested = [
        {"asset": a}
        | {k: v for k, v in msgspec.structs.asdict(r).items() if k not in {"interval_time"}}
        | {
            "interval_time": r.interval_time,
            "exchanges": [msgspec.structs.asdict(e) for e in r.exchanges],
        }
        for a, rows in data.items()
        for r in rows
    ]
    return {
        "totals": pa.Table.from_pylist(expected_totals(data), schema=arrow_schema("totals")),
        "exchanges": pa.Table.from_pylist(
            expected_exchanges(data), schema=arrow_schema("exchanges")
        ),
        "nested": pa.Table.from_pylist(nested, schema=arrow_schema("nested")),
    }


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["btc", "eth", "sol"]), _rows(), max_size=3))
def test_arrow_build_equals_the_reference_conversion(data: dict[str, list[LiquidationRow]]) -> None:
    want = reference_tables(data)
    for shape in ("totals", "exchanges", "nested"):
        got = to_arrow(data, shape=shape)
        assert got.schema == want[shape].schema
        assert got.equals(want[shape]), shape
        # And the polars and CSV builders, which share the column extraction.
        assert to_polars(data, shape=shape).to_dicts() == want[shape].to_pylist()
    without = to_arrow(data, asset=False, shape="nested")
    assert without.equals(want["nested"].drop_columns(["asset"]))


@pytest.mark.parametrize("name", ["liq.csv", "liq.parquet", "liq.csv.gz"])
def test_a_pair_whose_second_file_fails_leaves_the_old_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    target = tmp_path / name
    pair = [target, exchanges_path(target)]
    for file in pair:
        file.write_bytes(b"old")
    real = export.atomic_write
    opened: list[Path] = []

    @contextlib.contextmanager
    def second_fails(path: Any) -> Iterator[Any]:
        opened.append(Path(path))
        with real(path) as stream:
            if len(opened) == 2:  # whichever file is written second: the disk is full
                raise OSError(28, "No space left on device", str(path))
            yield stream

    monkeypatch.setattr(export, "atomic_write", second_fails)
    with pytest.raises(OSError, match="No space left"):
        write_files(target, DATA, format_for_path(name))
    assert [f.read_bytes() for f in pair] == [b"old", b"old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in pair)
