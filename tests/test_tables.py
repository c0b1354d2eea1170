"""The generic table layer: the events spec to every frame and file and back, the token
spec's way back, key columns from mapping keys, and the spec's own checks."""

from __future__ import annotations

import csv
import gzip
import io
import json
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from operator import attrgetter
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

from kaiko_liq import outputs, tables
from kaiko_liq.errors import InvalidArgumentError
from kaiko_liq.models import ExchangeVolume, LiquidationEvent, LiquidationRow
from kaiko_liq.routes.events import EVENTS_TABLE
from kaiko_liq.routes.token import TOKEN_TABLE
from kaiko_liq.tables import Shape, TableSpec, derived, nested, plain

BINC = ("binc", "perpetual-future", "btc-usdt")
OKEX = ("okex", "future", "eth-usd-250328")
EVENT_COLUMNS = [
    "exchange",
    "instrument_class",
    "instrument",
    "time",
    "timestamp",
    "trade_id",
    "price",
    "amount",
    "amount_quote",
    "amount_usd",
    "rate",
    "position_side",
]


def event(ms: int, trade_id: str, *, rate: float | None = 0.0001, side: str = "long") -> Any:
    return LiquidationEvent(ms, trade_id, 97_000.5, 0.25, 24_250.125, 24_251.0, rate, side)  # type: ignore[arg-type]


EVENTS = {
    BINC: [
        event(1_738_368_000_123, "a1"),
        event(1_738_368_000_123, "a2", rate=None, side="short"),  # same ms, no rate
        event(1_738_368_061_999, "a3"),
    ],
    OKEX: [event(1_738_371_600_001, "b1", side="short")],
}
ALL_EVENTS = [e for group in EVENTS.values() for e in group]


def bucket(hour: int, exchanges: list[ExchangeVolume]) -> LiquidationRow:
    t = datetime(2025, 2, 1, hour, tzinfo=UTC)
    return LiquidationRow(t, int(t.timestamp()) * 10**9, 3, 1.5, 2, 1.0, 1, 0.5, exchanges)


def volume(name: str) -> ExchangeVolume:
    return ExchangeVolume(name, 1, 0.1, 1, 0.1, 0, 0.0)


BUCKETS = {
    "btc": [bucket(0, [volume("binc"), volume("okex")]), bucket(1, []), bucket(2, [volume("x")])],
    "eth": [bucket(0, [volume("bybt")])],
}


# --- events ------------------------------------------------------------------------------------


def test_events_to_arrow_keys_from_the_mapping_and_times_in_nanoseconds() -> None:
    table = tables.to_arrow(EVENTS_TABLE, EVENTS)
    assert table.column_names == EVENT_COLUMNS
    assert table.schema.equals(tables.schema(EVENTS_TABLE))
    assert table.schema.field("time").type == pa.timestamp("ns", tz="UTC")
    assert table.schema.field("rate").type == pa.float64()
    assert table.column("exchange").to_pylist() == ["binc"] * 3 + ["okex"]
    assert table.column("instrument").to_pylist() == ["btc-usdt"] * 3 + ["eth-usd-250328"]
    nanos = table.column("time").cast(pa.int64()).to_pylist()
    assert nanos == [e.timestamp * 1_000_000 for e in ALL_EVENTS]
    assert table.column("timestamp").to_pylist() == [e.timestamp for e in ALL_EVENTS]
    assert table.column("rate").to_pylist() == [0.0001, None, 0.0001, 0.0001]
    assert table.column("position_side").to_pylist() == ["long", "short", "long", "short"]


def test_events_round_trip_through_arrow_and_parquet_exactly(tmp_path: Path) -> None:
    assert tables.rows_from_arrow(EVENTS_TABLE, tables.to_arrow(EVENTS_TABLE, EVENTS)) == ALL_EVENTS
    bare = tables.to_arrow(EVENTS_TABLE, EVENTS, keys=False)
    assert bare.column_names == EVENT_COLUMNS[3:]
    assert tables.rows_from_arrow(EVENTS_TABLE, bare) == ALL_EVENTS
    written = outputs.write_files(tmp_path / "ev.parquet", EVENTS_TABLE, EVENTS, "parquet")
    assert written == [tmp_path / "ev.parquet"]  # one file: the spec has no sibling
    assert [p.name for p in tmp_path.iterdir()] == ["ev.parquet"]
    read = pq.read_table(written[0])
    assert read.schema.equals(tables.schema(EVENTS_TABLE))
    assert tables.rows_from_arrow(EVENTS_TABLE, read) == ALL_EVENTS


def test_events_to_pandas_and_polars() -> None:
    frame = tables.to_pandas(EVENTS_TABLE, EVENTS)
    assert list(frame.columns) == EVENT_COLUMNS
    assert str(frame["time"].dtype) == "datetime64[ns, UTC]"
    assert frame["time"].iloc[0] == pd.Timestamp("2025-02-01T00:00:00.123Z")
    assert frame["rate"].isna().tolist() == [False, True, False, False]
    assert frame["timestamp"].dtype == "int64"

    polars = tables.to_polars(EVENTS_TABLE, EVENTS)
    assert polars.columns == EVENT_COLUMNS
    assert polars.schema["time"] == pl.Datetime("ns", "UTC")
    assert polars.schema["rate"] == pl.Float64
    assert polars["rate"].to_list() == [0.0001, None, 0.0001, 0.0001]
    # The same table whichever way it was built.
    assert (
        polars.to_arrow()
        .cast(tables.schema(EVENTS_TABLE))
        .equals(tables.to_arrow(EVENTS_TABLE, EVENTS))
    )
    assert tables.to_polars(EVENTS_TABLE, {}).columns == EVENT_COLUMNS


def test_events_csv_one_file_times_to_the_millisecond_null_rate_empty(tmp_path: Path) -> None:
    written = outputs.write_files(tmp_path / "ev.csv.gz", EVENTS_TABLE, EVENTS, "csv")
    assert written == [tmp_path / "ev.csv.gz"]
    lines = list(csv.reader(io.StringIO(gzip.decompress(written[0].read_bytes()).decode())))
    assert lines[0] == EVENT_COLUMNS
    assert lines[1] == [
        *BINC,
        "2025-02-01T00:00:00.123Z",
        "1738368000123",
        "a1",
        "97000.5",
        "0.25",
        "24250.125",
        "24251.0",
        "0.0001",
        "long",
    ]
    assert lines[2][10] == ""  # no rate
    assert lines[3][3] == "2025-02-01T00:01:01.999Z"
    assert len(lines) == 5


def test_events_jsonl_keys_first_then_the_wire_fields_as_sent() -> None:
    out = io.BytesIO()
    assert outputs.write_jsonl(out, EVENTS_TABLE, EVENTS) == 4
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert list(objects[0]) == [
        "exchange",
        "instrument_class",
        "instrument",
        *LiquidationEvent.__struct_fields__,
    ]
    assert objects[1] == {
        "exchange": "binc",
        "instrument_class": "perpetual-future",
        "instrument": "btc-usdt",
        "timestamp": 1_738_368_000_123,
        "trade_id": "a2",
        "price": 97_000.5,
        "amount": 0.25,
        "amount_quote": 24_250.125,
        "amount_usd": 24_251.0,
        "rate": None,
        "position_side": "short",
    }
    back = [msgspec.convert(o, LiquidationEvent) for o in objects]
    assert back == ALL_EVENTS
    piped = io.BytesIO()
    assert outputs.write_stdout(EVENTS_TABLE, EVENTS, "csv", stream=piped) == 4
    assert piped.getvalue().splitlines()[0].decode() == ",".join(EVENT_COLUMNS)


@pytest.mark.parametrize("trade_id", ["a\rb", "a\nb", 'a,"b'])
def test_a_line_break_in_a_string_stays_inside_its_csv_cell(trade_id: str) -> None:
    text = io.StringIO(newline="")
    outputs.write_csv(text, EVENTS_TABLE, {BINC: [event(1, trade_id, rate=None), event(2, "x")]})
    cells = list(csv.DictReader(io.StringIO(text.getvalue(), newline="")))
    assert [c["trade_id"] for c in cells] == [trade_id, "x"]
    assert [c["timestamp"] for c in cells] == ["1", "2"]
    assert pl.read_csv(io.StringIO(text.getvalue()))["trade_id"].to_list() == [trade_id, "x"]


_EVENT = st.builds(
    LiquidationEvent,
    timestamp=st.integers(0, 9_000_000_000_000),  # to the year 2255: nanoseconds hold it
    trade_id=st.text(max_size=8),
    price=st.floats(0, 1e12),
    amount=st.floats(0, 1e12),
    amount_quote=st.floats(0, 1e12),
    amount_usd=st.floats(0, 1e12),
    rate=st.none() | st.floats(-1, 1),
    position_side=st.sampled_from(["long", "short"]),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(_EVENT, max_size=6), st.lists(_EVENT, max_size=3))
def test_any_events_come_back_exactly(first: list[Any], second: list[Any]) -> None:
    data = {BINC: first, OKEX: second}
    table = tables.to_arrow(EVENTS_TABLE, data)
    assert tables.rows_from_arrow(EVENTS_TABLE, table) == first + second
    assert tables.to_polars(EVENTS_TABLE, data).to_arrow().cast(table.schema).equals(table)
    text = io.StringIO(newline="")
    outputs.write_csv(text, EVENTS_TABLE, data)
    cells = list(csv.DictReader(io.StringIO(text.getvalue(), newline="")))
    assert [c["trade_id"] for c in cells] == [e.trade_id for e in first + second]
    assert [float(c["price"]) for c in cells] == [e.price for e in first + second]
    assert [c["rate"] or None for c in cells] == [
        None if e.rate is None else str(e.rate) for e in first + second
    ]


# --- the token spec ----------------------------------------------------------------------------


def test_token_rows_round_trip_through_the_stored_shape() -> None:
    rows = [r for group in BUCKETS.values() for r in group]
    table = tables.to_arrow(TOKEN_TABLE, BUCKETS, "nested")
    assert tables.rows_from_arrow(TOKEN_TABLE, table) == rows
    bare = tables.to_arrow(TOKEN_TABLE, BUCKETS, "nested", keys=False)
    assert tables.rows_from_arrow(TOKEN_TABLE, bare) == rows
    # A slice, as a filtered read gives: its list offsets no longer start at 0.
    assert tables.rows_from_arrow(TOKEN_TABLE, table.slice(2, 2)) == rows[2:4]
    assert tables.rows_from_arrow(TOKEN_TABLE, table.slice(0, 0)) == []
    # Chunked (several files read as one table).
    both = pa.concat_tables([table.slice(0, 1), table.slice(1)])
    assert tables.rows_from_arrow(TOKEN_TABLE, both) == rows


def test_an_exploded_shape_repeats_its_keys_per_element() -> None:
    table = tables.to_arrow(TOKEN_TABLE, BUCKETS, "exchanges")
    assert table.column("asset").to_pylist() == ["btc", "btc", "btc", "eth"]
    assert table.column("exchange").to_pylist() == ["binc", "okex", "x", "bybt"]
    polars = tables.to_polars(TOKEN_TABLE, BUCKETS, "exchanges")
    assert polars.to_dicts() == table.to_pylist()
    stored = tables.to_arrow(TOKEN_TABLE, BUCKETS, "nested")
    assert tables.reshape(TOKEN_TABLE, stored, "exchanges").equals(table)
    assert tables.reshape(TOKEN_TABLE, stored).equals(tables.to_arrow(TOKEN_TABLE, BUCKETS))


def test_csv_refuses_a_nested_shape_naming_the_flat_ones() -> None:
    with pytest.raises(InvalidArgumentError, match="nested exchanges; use 'totals' or 'exchanges'"):
        outputs.write_csv(io.StringIO(), TOKEN_TABLE, BUCKETS, "nested")


# --- keys, shapes and the spec's checks --------------------------------------------------------


@pytest.mark.parametrize(
    "rows_by_key",
    [
        {"binc": ALL_EVENTS},  # one string for three key columns
        {("binc", "future"): ALL_EVENTS},  # too few
        {("binc", "future", 3): ALL_EVENTS},  # not a string
    ],
)
def test_a_key_that_does_not_name_every_key_column_is_refused(rows_by_key: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="exchange, instrument_class, instrument"):
        tables.to_arrow(EVENTS_TABLE, rows_by_key)
    # Without key columns the keys are not read.
    assert tables.to_arrow(EVENTS_TABLE, rows_by_key, keys=False).num_rows == 4


def test_rows_must_come_by_key_and_shapes_by_name() -> None:
    with pytest.raises(InvalidArgumentError, match="mapping"):
        tables.to_arrow(EVENTS_TABLE, ALL_EVENTS)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="shape 'totals' is not one of 'events'"):
        tables.to_polars(EVENTS_TABLE, EVENTS, "totals")
    with pytest.raises(InvalidArgumentError, match="CSV only"):
        outputs.write_stdout(TOKEN_TABLE, BUCKETS, "jsonl", shape="exchanges", stream=io.BytesIO())


def test_rows_from_arrow_refuses_a_table_it_cannot_give_back_exactly() -> None:
    table = tables.to_arrow(EVENTS_TABLE, EVENTS)
    with pytest.raises(InvalidArgumentError, match="lacks column.*trade_id"):
        tables.rows_from_arrow(EVENTS_TABLE, table.drop_columns(["trade_id"]))
    nulls = table.set_column(
        table.column_names.index("price"), "price", pa.array([1.0, None, 2.0, 3.0])
    )
    with pytest.raises(InvalidArgumentError, match="'price' holds nulls"):
        tables.rows_from_arrow(EVENTS_TABLE, nulls)


def test_a_spec_whose_stored_shape_misses_a_field_is_refused() -> None:
    partial = Shape("partial", (plain("timestamp", "int64"), derived("t", "time_ms", int)))
    with pytest.raises(InvalidArgumentError, match="missing: trade_id, price"):
        TableSpec(LiquidationEvent, ("exchange",), (partial,), (("partial", ""),), "partial", "t")
    events = EVENTS_TABLE.shape("events")
    with pytest.raises(InvalidArgumentError, match="'price' is not a time column"):
        TableSpec(LiquidationEvent, ("exchange",), (events,), (("events", ""),), "events", "price")
    with pytest.raises(InvalidArgumentError, match="missing: total_trades, total_amount"):
        nested("exchanges", ExchangeVolume, (plain("exchange", "string"),))


# --- built from buffers ------------------------------------------------------------------------


class Sample(msgspec.Struct, frozen=True):
    name: str
    at: datetime
    ms: int
    count: int
    value: float
    maybe: float | None


_SAMPLE_COLUMNS = (
    plain("name", "string"),
    plain("at", "time"),
    derived("ms_time", "time_ms", attrgetter("ms")),
    plain("ms", "int64"),
    plain("count", "int64"),
    plain("value", "float64"),
    plain("maybe", "float64?"),
)
SAMPLES = TableSpec(
    Sample, ("key",), (Shape("flat", _SAMPLE_COLUMNS),), (("flat", ""),), "flat", "at"
)
_NS = pa.timestamp("ns", tz="UTC")
_ZONES = [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
_SAMPLE = st.builds(
    Sample,
    st.text(max_size=5),
    st.builds(
        lambda t, zone: t.replace(tzinfo=zone),
        st.datetimes(datetime(1678, 1, 2), datetime(2262, 4, 10)),
        st.sampled_from(_ZONES),
    ),
    st.integers(-((2**63 - 1) // 10**6), (2**63 - 1) // 10**6),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.none() | st.floats(allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_SAMPLE, max_size=6), st.lists(_SAMPLE, max_size=3))
def test_columns_from_buffers_equal_arrows_own_conversion(
    first: list[Sample], second: list[Sample]
) -> None:
    # Arrow's own pa.array over the same Python values is the reference (it reads a
    # naive datetime as UTC); the builders never call it (it imports pandas).
    samples = first + second
    keys = ["k1"] * len(first) + ["kü"] * len(second)
    expected = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "name": pa.array([s.name for s in samples], pa.string()),
            "at": pa.array([s.at for s in samples], _NS),
            "ms_time": pa.array([s.ms for s in samples], pa.timestamp("ms", tz="UTC")).cast(_NS),
            "ms": pa.array([s.ms for s in samples], pa.int64()),
            "count": pa.array([s.count for s in samples], pa.int64()),
            "value": pa.array([s.value for s in samples], pa.float64()),
            "maybe": pa.array([s.maybe for s in samples], pa.float64()),
        }
    )
    table = tables.to_arrow(SAMPLES, {"k1": first, "kü": second})
    assert table.equals(expected)
    table.validate(full=True)


def test_values_arrow_cannot_hold_are_refused() -> None:
    now = datetime(2025, 2, 1, tzinfo=UTC)
    ok = Sample("a", now, 0, 1, 1.0, None)
    far = msgspec.structs.replace(ok, at=datetime(2300, 1, 1, tzinfo=UTC))
    with pytest.raises(pa.ArrowInvalid, match=r"datetime\(2300, 1, 1.*out of bounds"):
        tables.to_arrow(SAMPLES, {"k": [ok, far]})
    with pytest.raises(pa.ArrowInvalid, match="out of bounds"):
        tables.to_arrow(SAMPLES, {"k": [msgspec.structs.replace(ok, ms=2**62)]})
    with pytest.raises(struct.error):
        tables.to_arrow(SAMPLES, {"k": [msgspec.structs.replace(ok, count=2**63)]})
    with pytest.raises(struct.error):
        tables.to_arrow(SAMPLES, {"k": [msgspec.structs.replace(ok, count=1.5)]})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tables.to_arrow(SAMPLES, {"k": [msgspec.structs.replace(ok, name=1)]})  # type: ignore[arg-type]


def test_footer_time_bounds_match_the_statistics(tmp_path: Path) -> None:
    table = tables.to_arrow(TOKEN_TABLE, BUCKETS, "nested", keys=False)
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=2)  # two row groups
    meta = pq.read_metadata(path)
    assert meta.num_row_groups == 2
    first, last = BUCKETS["btc"][0].interval_time, BUCKETS["btc"][2].interval_time
    assert tables.footer_time_bounds(meta, "interval_time") == (first, last)
    index = meta.schema.names.index("interval_time")
    stats = [meta.row_group(g).column(index).statistics for g in range(2)]
    assert (first, last) == (min(s.min for s in stats), max(s.max for s in stats))
    pq.write_table(table.slice(0, 0), path)
    assert tables.footer_time_bounds(pq.read_metadata(path), "interval_time") is None
    pq.write_table(table, path, coerce_timestamps="ms")
    assert tables.footer_time_bounds(pq.read_metadata(path), "interval_time") == (first, last)
    with pytest.raises(InvalidArgumentError, match="no timestamp column 'total_trades'"):
        tables.footer_time_bounds(pq.read_metadata(path), "total_trades")
    with pytest.raises(InvalidArgumentError, match="no timestamp column 'time'"):
        tables.footer_time_bounds(pq.read_metadata(path), "time")


def test_tables_files_and_the_way_back_never_import_pandas(tmp_path: Path) -> None:
    code = f"""
import sys
import pyarrow.parquet as pq
from kaiko_liq import tables
from kaiko_liq.routes.token import TOKEN_TABLE
from kaiko_liq.emulator import INSTRUMENTS, events_for, rows_for
from kaiko_liq.routes.events import EVENTS_TABLE
BUCKETS = {{"btc": rows_for("btc", "2025-02-01", "2025-02-03", "1h")}}
EVENTS = {{INSTRUMENTS[0].path: events_for(INSTRUMENTS[0], "2025-02-01", "2025-02-03")}}
for spec, rows in ((TOKEN_TABLE, BUCKETS), (EVENTS_TABLE, EVENTS)):
    for shape in spec.shapes:
        tables.to_arrow(spec, rows, shape.name)
    stored = tables.to_arrow(spec, rows, spec.stored, keys=False)
    pq.write_table(stored, {str(tmp_path / "s.parquet")!r})
    table = pq.ParquetFile({str(tmp_path / "s.parquet")!r}).read()  # (pyarrow.dataset imports it)
    tables.rows_from_arrow(spec, table)
    tables.footer_time_bounds(pq.read_metadata({str(tmp_path / "s.parquet")!r}), spec.time)
assert "pandas" not in sys.modules, "pandas was imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
