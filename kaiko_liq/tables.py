"""What columns a route's rows become: a typed table spec, and the builders over it.

A route's :class:`TableSpec` names its row Struct, its key columns and its *shapes*. A
key column is a path parameter (``asset``; ``exchange, instrument_class, instrument``):
rows come as a mapping from key to rows, ``{"btc": rows}`` or
``{("binc", "perpetual-future", "btc-usdt"): rows}``, and the mapping's keys fill the key
columns, first in every table (``keys=False`` leaves them out: a store's files, whose
directory names them). A :class:`Shape` is one table of the rows: key columns, then its
:class:`Column` s; a shape may *explode* a nested column into one table row per element
(the token route's ``exchanges`` long table), its parent's columns repeated.

Column kinds and their types (Arrow / polars; pandas through Arrow):

=============  ==========================================  ================================
kind           built from                                  type
=============  ==========================================  ================================
``string``     a ``str``                                   ``string``
``time``       a UTC ``datetime``                          ``timestamp[ns, tz=UTC]``
``time_ms``    an ``int`` of milliseconds since the epoch  ``timestamp[ns, tz=UTC]``
``int64``      an ``int``                                  ``int64``
``float64``    a ``float``                                 ``float64``
``float64?``   a ``float`` or ``None``                     ``float64`` (nulls allowed)
``list``       a list of Structs                           ``list<struct<...>>``
=============  ==========================================  ================================

Every time is nanoseconds in a table, whatever it was built from, so tables of different
routes join and concatenate without a cast and pandas gets its native
``datetime64[ns, UTC]``; milliseconds are exact in nanoseconds.

Builders: :func:`to_arrow`, :func:`to_pandas`, :func:`to_polars` (built without pyarrow),
:func:`schema`, :func:`column_values` (what CSV writes), :func:`reshape` (a stored table
into another shape) and the way back, :func:`rows_from_arrow`, which gives back exactly
the rows a table was built from, and :func:`footer_time_bounds`, a file's time span
from its footer.

Speed: tables are built column by column: ``map(attrgetter(name), rows)`` walks the
Structs in C, one pass per column; each column's values are then packed into the
buffers Arrow holds (``struct.pack`` of ints and floats, one encode of a column's text,
times as integer nanoseconds from ``(t - epoch) // 1 µs``) and wrapped by
``pyarrow.Array.from_buffers``, which copies nothing; a nested column is built from its
flat child columns and offsets, with no dict per element and no per-element type
inference. No ``pyarrow.array`` over Python objects: its first call imports pandas
(~0.3 s of a small job's start-up); pandas is imported only by :func:`to_pandas`, and
:func:`footer_time_bounds` reads a file's time span without it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate, chain, pairwise, repeat
from operator import attrgetter, floordiv, mul, sub
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import msgspec

from .errors import InvalidArgumentError
from .optional import import_optional
from .query import EPOCH

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

__all__ = [
    "Column",
    "Grouped",
    "Key",
    "Kind",
    "RowsByKey",
    "Shape",
    "TableSpec",
    "arrow_table",
    "column_values",
    "datetime_from_ns",
    "derived",
    "footer_time_bounds",
    "group_rows",
    "nested",
    "plain",
    "reshape",
    "rows_from_arrow",
    "schema",
    "to_arrow",
    "to_pandas",
    "to_polars",
]

Row = TypeVar("Row", bound=msgspec.Struct)

Kind = Literal["string", "time", "time_ms", "int64", "float64", "float64?", "list"]
#: A mapping key: the key columns' values, a plain string when there is one key column.
Key = str | tuple[str, ...]
#: Rows by key (see the module docstring). Keyed by Any because a Mapping's key type is
#: invariant (a ``dict[tuple[str, str, str], ...]`` is no ``Mapping[Key, ...]``); each
#: key is checked when the rows are grouped.
RowsByKey = Mapping[Any, Iterable[Row]]

_NANOS_PER_MS = 1_000_000


def datetime_from_ns(ns: int) -> datetime:
    """The UTC datetime of ``ns`` nanoseconds since the epoch, to the microsecond (a
    datetime's resolution; times built from datetimes are whole microseconds). The one
    conversion from a table's nanoseconds back to Python."""
    return EPOCH + timedelta(microseconds=ns // 1000)


# --- the spec ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, its kind, how a row (or a nested element) gives its value,
    and which Struct field it holds (``None`` for a column derived from others, which the
    way back skips). A ``list`` column has its elements' Struct and columns."""

    name: str
    kind: Kind
    get: Callable[[Any], Any]
    field: str | None
    element: type[msgspec.Struct] | None = None
    fields: tuple[Column, ...] = ()


def plain(name: str, kind: Kind) -> Column:
    """A column holding the Struct field of the same name."""
    if kind == "list":
        raise InvalidArgumentError(f"column {name!r}: a list column is made with nested()")
    return Column(name, kind, attrgetter(name), name)


def derived(name: str, kind: Kind, get: Callable[[Any], Any]) -> Column:
    """A column computed from a row (e.g. an event's ``time`` from its ``timestamp``)."""
    return Column(name, kind, get, None)


def nested(name: str, element: type[msgspec.Struct], fields: Sequence[Column]) -> Column:
    """A ``list<struct>`` column holding the Struct field ``name``: a list of ``element``
    Structs, each with ``fields`` as its columns (every field of ``element``)."""
    named = {c.field for c in fields}
    missing = [f for f in element.__struct_fields__ if f not in named]
    if missing or any(c.kind == "list" for c in fields):
        raise InvalidArgumentError(
            f"column {name!r}: its fields must be flat and hold every field of "
            f"{element.__name__} (missing: {', '.join(missing) or 'none'})"
        )
    return Column(name, "list", attrgetter(name), name, element, tuple(fields))


@dataclass(frozen=True, slots=True)
class Shape:
    """One table of a route's rows: the key columns, then ``columns``; with ``explode``
    (a ``list`` column of the rows), one table row per element: ``columns`` repeated per
    element, then the element's columns."""

    name: str
    columns: tuple[Column, ...]
    explode: Column | None = None

    def flat_columns(self) -> tuple[Column, ...]:
        """The columns after the keys, an exploded column's elements' included."""
        return self.columns + (self.explode.fields if self.explode else ())

    def is_flat(self) -> bool:
        """Whether every column is a scalar (what CSV can hold)."""
        return all(c.kind != "list" for c in self.flat_columns())


@dataclass(frozen=True, slots=True)
class TableSpec(Generic[Row]):
    """A route's tables (see the module docstring).

    Args:
        row: the row Struct.
        keys: the key columns' names, in path order.
        shapes: every shape; the first is the default.
        files: the shapes CSV and Parquet write, each with the suffix its file gets
            before the extension: ``("totals", "")`` is ``out.csv`` itself,
            ``("exchanges", ".exchanges")`` is ``out.exchanges.csv``. The first is the
            main file (renamed into place last).
        stored: the shape a store keeps and :func:`rows_from_arrow` reads: not exploded,
            and holding every field of ``row``.
        time: the stored shape's column of a row's time (``time`` or ``time_ms``): what
            a store sorts by and reads a file's span from (its footer's statistics).
    """

    row: type[Row]
    keys: tuple[str, ...]
    shapes: tuple[Shape, ...]
    files: tuple[tuple[str, str], ...]
    stored: str
    time: str
    _by_name: dict[str, Shape] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {s.name: s for s in self.shapes})
        if not self.keys or not self.shapes or not self.files:
            raise InvalidArgumentError("a table spec needs keys, shapes and files")
        for name, _ in self.files:
            self.shape(name)
        stored = self.shape(self.stored)
        named = {c.field for c in stored.columns}
        missing = [f for f in self.row.__struct_fields__ if f not in named]
        if stored.explode is not None or missing:
            raise InvalidArgumentError(
                f"stored shape {self.stored!r} must not explode and must hold every field of "
                f"{self.row.__name__} (missing: {', '.join(missing) or 'none'})"
            )
        if not any(c.name == self.time and c.kind in ("time", "time_ms") for c in stored.columns):
            raise InvalidArgumentError(
                f"time column {self.time!r} is not a time column of shape {self.stored!r}"
            )

    @property
    def default(self) -> str:
        """The default shape's name (the first)."""
        return self.shapes[0].name

    def shape(self, name: str | None = None) -> Shape:
        """The shape called ``name`` (the default for ``None``), or a clear error."""
        if name is None:
            return self.shapes[0]
        found = self._by_name.get(name) if isinstance(name, str) else None
        if found is None:
            known = ", ".join(repr(s.name) for s in self.shapes)
            raise InvalidArgumentError(f"shape {name!r} is not one of {known}")
        return found

    def columns(self, shape: str | None = None, *, keys: bool = True) -> tuple[str, ...]:
        """The column names of ``shape``, the key columns first unless ``keys=False``."""
        names = tuple(c.name for c in self.shape(shape).flat_columns())
        return (*self.keys, *names) if keys else names


# --- inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grouped:
    """Rows by key, read exactly once (:func:`group_rows`): ``(key values, rows)`` groups
    in the order given, whether the tables get key columns, and what asked for them (the
    name messages give, such as ``"to_arrow"`` or ``"writing Parquet"``)."""

    keys: bool
    groups: list[tuple[tuple[str, ...], list[Any]]]
    purpose: str

    def rows(self) -> list[Any]:
        return list(chain.from_iterable(rows for _, rows in self.groups))

    def key_column(self, index: int, counts: Sequence[int]) -> list[str]:
        """Key ``index`` of every table row, given each group's table row count."""
        return list(
            chain.from_iterable(
                repeat(key[index], n) for (key, _), n in zip(self.groups, counts, strict=True)
            )
        )


def group_rows(
    spec: TableSpec[Any], rows_by_key: RowsByKey[Any], *, keys: bool = True, purpose: str
) -> Grouped:
    """``rows_by_key`` read once and its keys checked against ``spec.keys``: a key is a
    string for one key column, a tuple of strings for several. ``keys=False`` ignores the
    keys (tables without key columns)."""
    if not isinstance(rows_by_key, Mapping):
        raise InvalidArgumentError(
            f"{purpose} takes rows by key, a mapping such as {{{_example(spec)}: rows}}, "
            f"not {type(rows_by_key).__name__}"
        )
    groups = [
        (_key(spec, key, purpose) if keys else (), list(rows)) for key, rows in rows_by_key.items()
    ]
    return Grouped(keys, groups, purpose)


def _key(spec: TableSpec[Any], key: object, purpose: str) -> tuple[str, ...]:
    if isinstance(key, tuple):
        if len(key) == len(spec.keys) and all(isinstance(v, str) for v in key):
            return key
    elif len(spec.keys) == 1:
        return (str(key),)
    raise InvalidArgumentError(
        f"{purpose}: a key must name {', '.join(spec.keys)}, such as {_example(spec)}; got {key!r}"
    )


def _example(spec: TableSpec[Any]) -> str:
    if len(spec.keys) == 1:
        return repr(spec.keys[0])
    return "(" + ", ".join(repr(k) for k in spec.keys) + ")"


# --- columns as Python lists (polars, CSV) ----------------------------------------------------


def _key_columns(spec: TableSpec[Any]) -> list[Column]:
    return [Column(name, "string", attrgetter(name), None) for name in spec.keys]


def column_values(
    spec: TableSpec[Any], data: Grouped, shape: Shape
) -> list[tuple[Column, list[Any]]]:
    """Every column of ``shape`` as a Python list, built column-wise (key columns are
    ``string`` columns). A ``list`` column's values are the rows' own lists of Structs."""
    rows = data.rows()
    out: list[tuple[Column, list[Any]]] = []
    if shape.explode is None:
        counts = [len(group) for _, group in data.groups]
        if data.keys:
            out += [(c, data.key_column(i, counts)) for i, c in enumerate(_key_columns(spec))]
        out += [(c, list(map(c.get, rows))) for c in shape.columns]
        return out
    per_row = list(map(shape.explode.get, rows))
    lengths = list(map(len, per_row))
    flat = list(chain.from_iterable(per_row))

    def per_element(values: list[Any]) -> list[Any]:
        return list(chain.from_iterable(map(repeat, values, lengths)))

    if data.keys:
        counts = list(_group_sums(data, lengths))
        out += [(c, data.key_column(i, counts)) for i, c in enumerate(_key_columns(spec))]
    out += [(c, per_element(list(map(c.get, rows)))) for c in shape.columns]
    out += [(c, list(map(c.get, flat))) for c in shape.explode.fields]
    return out


def _group_sums(data: Grouped, lengths: list[int]) -> Iterable[int]:
    """Each group's elements: ``lengths`` (one per row) summed group by group."""
    start = 0
    for _, group in data.groups:
        yield sum(lengths[start : start + len(group)])
        start += len(group)


# --- Arrow ------------------------------------------------------------------------------------


def _arrow_type(pa: Any, column: Column) -> Any:
    kind = column.kind
    if kind == "string":
        return pa.string()
    if kind in ("time", "time_ms"):
        return pa.timestamp("ns", tz="UTC")
    if kind == "int64":
        return pa.int64()
    if kind in ("float64", "float64?"):
        return pa.float64()
    return pa.list_(pa.struct([pa.field(c.name, _arrow_type(pa, c)) for c in column.fields]))


def schema(spec: TableSpec[Any], shape: str | None = None, *, keys: bool = True) -> pa.Schema:
    """The Arrow schema of ``shape``, key columns first unless ``keys=False``."""
    pa = import_optional("pyarrow", "schema")
    return _schema(pa, spec, spec.shape(shape), keys)


def _schema(pa: Any, spec: TableSpec[Any], shape: Shape, keys: bool) -> Any:
    columns = [*_key_columns(spec), *shape.flat_columns()] if keys else shape.flat_columns()
    return pa.schema([pa.field(c.name, _arrow_type(pa, c)) for c in columns])


def _arrow_array(pa: Any, column: Column, values: list[Any]) -> Any:
    """One column from its Python values, through buffers (see the module docstring)."""
    kind = column.kind
    if kind == "list":
        return _list_array(pa, column, values)
    if kind == "string":
        return _string_array(pa, values)
    if kind == "float64?" and None in values:
        return _nullable_floats(pa, values)
    if kind in ("float64", "float64?"):
        return _fixed(pa, pa.float64(), "d", values)
    if kind == "int64":
        return _fixed(pa, pa.int64(), "q", values)
    nanos = _nanos_of_datetimes(pa, values) if kind == "time" else _nanos_of_ms(pa, values)
    return _fixed(pa, pa.timestamp("ns", tz="UTC"), "q", nanos)


def _pack(code: str, values: Sequence[Any]) -> bytes:
    """``values`` as little-endian ``code`` (struct's ``q``, ``i``, ``d``): Arrow's
    memory layout. Refuses a float where an int goes and an int out of range (a
    ``struct.error``), as ``pa.array`` did."""
    return struct.pack(f"<{len(values)}{code}", *values)


def _fixed(pa: Any, arrow_type: Any, code: str, values: Sequence[Any]) -> Any:
    data = pa.py_buffer(_pack(code, values))
    return pa.Array.from_buffers(arrow_type, len(values), [None, data], null_count=0)


def _string_array(pa: Any, values: list[str]) -> Any:
    text = "".join(values)  # a TypeError unless every value is a str
    if text.isascii():  # the usual case (codes, ids): one encode, a str's length its bytes'
        data, lengths = text.encode("ascii"), map(len, values)
    else:
        encoded = [value.encode() for value in values]
        data, lengths = b"".join(encoded), map(len, encoded)
    # int32 offsets: more than 2 GiB of text in one column is a struct.error.
    offsets = _pack("i", list(accumulate(lengths, initial=0)))
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), len(values), buffers, null_count=0)


def _nullable_floats(pa: Any, values: list[float | None]) -> Any:
    import numpy as np  # pyarrow's own dependency, loaded with it

    present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    validity = pa.py_buffer(np.packbits(present, bitorder="little"))
    data = pa.py_buffer(_pack("d", [0.0 if v is None else v for v in values]))
    nulls = len(values) - int(present.sum())
    return pa.Array.from_buffers(pa.float64(), len(values), [validity, data], null_count=nulls)


#: The nanosecond timestamps Arrow holds: int64, about 1677-09-21 to 2262-04-11.
_MAX_MICROS = (2**63 - 1) // 1000
_MAX_MILLIS = (2**63 - 1) // _NANOS_PER_MS
_MICROSECOND = timedelta(microseconds=1)


def _nanos_of_datetimes(pa: Any, values: list[datetime]) -> list[int]:
    """Nanoseconds since the epoch of UTC datetimes (a naive one read as UTC, as Arrow
    reads it), computed in C: ``(t - epoch) // 1 µs``, then x 1000."""
    try:
        micros = list(map(floordiv, map(sub, values, repeat(EPOCH)), repeat(_MICROSECOND)))
    except TypeError:  # a naive datetime among them, or not a datetime at all
        micros = [(_aware(t) - EPOCH) // _MICROSECOND for t in values]
    return _scaled(pa, micros, 1000, _MAX_MICROS, values)


def _aware(t: datetime) -> datetime:
    if not isinstance(t, datetime):
        raise TypeError(f"a time column holds {type(t).__name__} {t!r}, not a datetime")
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _nanos_of_ms(pa: Any, values: list[int]) -> list[int]:
    return _scaled(pa, values, _NANOS_PER_MS, _MAX_MILLIS, values)


def _scaled(pa: Any, values: list[int], factor: int, limit: int, given: list[Any]) -> list[int]:
    """``values`` x ``factor``, or the error ``pa.array`` gave for a time beyond
    nanoseconds' range (naming the value ``given``)."""
    if values and (max(values) > limit or min(values) < -limit):
        bad = next(g for v, g in zip(values, given, strict=True) if not -limit <= v <= limit)
        raise pa.ArrowInvalid(f"time {bad!r} is out of bounds for nanosecond resolution")
    return list(map(mul, values, repeat(factor)))


def _list_array(pa: Any, column: Column, per_row: list[list[Any]]) -> Any:
    """A ``list<struct>`` column from its flat children and offsets: no dict per element,
    no per-element type inference."""
    flat = list(chain.from_iterable(per_row))
    offsets = _fixed(pa, pa.int32(), "i", list(accumulate(map(len, per_row), initial=0)))
    children = [_arrow_array(pa, c, list(map(c.get, flat))) for c in column.fields]
    list_type = _arrow_type(pa, column)
    structs = pa.StructArray.from_arrays(children, fields=list(list_type.value_type))
    return pa.ListArray.from_arrays(offsets, structs, type=list_type)


def to_arrow(
    spec: TableSpec[Any],
    rows_by_key: RowsByKey[Any],
    shape: str | None = None,
    *,
    keys: bool = True,
) -> pa.Table:
    """A ``pyarrow.Table`` of ``rows_by_key`` in ``shape`` (the spec's default for ``None``)."""
    data = group_rows(spec, rows_by_key, keys=keys, purpose="to_arrow")
    return arrow_table(spec, data, spec.shape(shape))


def arrow_table(spec: TableSpec[Any], data: Grouped, shape: Shape) -> pa.Table:
    """:func:`to_arrow` of rows grouped once (a writer builds several shapes of them)."""
    pa = import_optional("pyarrow", data.purpose)
    rows = data.rows()
    counts = [len(group) for _, group in data.groups]
    arrays = [
        _string_array(pa, data.key_column(i, counts))
        for i in range(len(spec.keys) if data.keys else 0)
    ]
    arrays += [_arrow_array(pa, c, list(map(c.get, rows))) for c in shape.columns]
    table_schema = _schema(pa, spec, shape, data.keys)
    if shape.explode is not None:
        # The long table is the nested column flattened, the rest repeated per element:
        # Arrow's take and flatten do that in C, without a Python list per element.
        listed = _list_array(pa, shape.explode, list(map(shape.explode.get, rows)))
        indices = listed.value_parent_indices()
        structs = listed.flatten()
        arrays = [array.take(indices) for array in arrays]
        arrays += [structs.field(i) for i in range(structs.type.num_fields)]
    return pa.Table.from_arrays(arrays, schema=table_schema)


def reshape(spec: TableSpec[Any], table: pa.Table, shape: str | None = None) -> pa.Table:
    """A table in the stored shape (e.g. a dataset read) as ``shape``: its key columns
    (those present) first, then the shape's columns; an exploded shape is flattened."""
    pc = import_optional("pyarrow.compute", "reshape")
    wanted = spec.shape(shape)
    keys = [name for name in spec.keys if name in table.column_names]
    out = table.select([*keys, *(c.name for c in wanted.columns)])
    if wanted.explode is None:
        return out
    listed = table.column(wanted.explode.name)
    out = out.take(pc.list_parent_indices(listed))
    flat = pc.list_flatten(listed)
    for column in wanted.explode.fields:
        out = out.append_column(column.name, pc.struct_field(flat, column.name))
    return out


def to_pandas(
    spec: TableSpec[Any],
    rows_by_key: RowsByKey[Any],
    shape: str | None = None,
    *,
    keys: bool = True,
) -> pd.DataFrame:
    """A ``pandas.DataFrame``, built through Arrow (which the pandas extra brings along):
    times are ``datetime64[ns, UTC]``, a nullable float's nulls ``NaN``."""
    import_optional("pandas", "to_pandas")
    import_optional("pyarrow", "to_pandas", extra="pandas")
    data = group_rows(spec, rows_by_key, keys=keys, purpose="to_pandas")
    frame: pd.DataFrame = arrow_table(spec, data, spec.shape(shape)).to_pandas()
    return frame


# --- polars -----------------------------------------------------------------------------------


def _polars_type(pl: Any, column: Column) -> Any:
    kind = column.kind
    if kind == "string":
        return pl.String
    if kind in ("time", "time_ms"):
        return pl.Datetime("ns", "UTC")
    if kind == "int64":
        return pl.Int64
    if kind in ("float64", "float64?"):
        return pl.Float64
    return pl.List(pl.Struct({c.name: _polars_type(pl, c) for c in column.fields}))


def _polars_series(pl: Any, column: Column, values: list[Any]) -> Any:
    if column.kind == "time_ms":
        millis = pl.Series(column.name, values, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC"))
        return millis.dt.cast_time_unit("ns")
    if column.kind == "list":
        values = [[msgspec.structs.asdict(element) for element in row] for row in values]
    return pl.Series(column.name, values, dtype=_polars_type(pl, column))


def to_polars(
    spec: TableSpec[Any],
    rows_by_key: RowsByKey[Any],
    shape: str | None = None,
    *,
    keys: bool = True,
) -> pl.DataFrame:
    """A ``polars.DataFrame``, built without pyarrow (the polars extra does not need it)."""
    polars = import_optional("polars", "to_polars")
    data = group_rows(spec, rows_by_key, keys=keys, purpose="to_polars")
    columns = column_values(spec, data, spec.shape(shape))
    frame: pl.DataFrame = polars.DataFrame(
        [_polars_series(polars, column, values) for column, values in columns]
    )
    return frame


# --- the way back -----------------------------------------------------------------------------


def rows_from_arrow(spec: TableSpec[Row], table: pa.Table) -> list[Row]:
    """The rows of a table in the spec's stored shape, exactly as they were written (key
    columns and derived columns are not part of a row, and are not read)."""
    pa = import_optional("pyarrow", "reading rows from a table", extra="parquet")
    pc = import_optional("pyarrow.compute", "reading rows from a table", extra="parquet")
    stored = spec.shape(spec.stored)
    missing = [c.name for c in stored.columns if c.name not in table.column_names]
    if missing:
        raise InvalidArgumentError(
            f"the table lacks column(s) {', '.join(missing)} of the {stored.name!r} shape "
            f"of {spec.row.__name__} rows"
        )
    if table.num_rows == 0:
        return []
    values = {c.field: _pylist(pa, pc, c, table.column(c.name)) for c in stored.columns if c.field}
    return list(map(spec.row, *(values[name] for name in spec.row.__struct_fields__)))


#: Nanoseconds per unit of a Parquet timestamp, by the logical type's ``timeUnit``.
_PARQUET_TIME_UNITS = {"milliseconds": _NANOS_PER_MS, "microseconds": 1000, "nanoseconds": 1}


def footer_time_bounds(meta: Any, column: str) -> tuple[datetime, datetime] | None:
    """The first and last time of the top-level timestamp ``column`` from a Parquet
    footer's statistics (a ``pyarrow.parquet.FileMetaData``): ``None`` for a file with
    no rows or a row group without them.

    Read from the statistics' raw integers: ``Statistics.min`` of a nanosecond timestamp
    imports pandas (~0.3 s) to give a ``pandas.Timestamp`` when pandas is installed."""
    if meta.num_rows == 0:
        return None
    names = meta.schema.names  # leaf columns: a top-level one's index is its own
    index = names.index(column) if column in names else None
    unit = None
    if index is not None:
        unit = json.loads(meta.schema.column(index).logical_type.to_json()).get("timeUnit")
    if index is None or unit not in _PARQUET_TIME_UNITS:
        raise InvalidArgumentError(f"the file has no timestamp column {column!r}")
    lows, highs = [], []
    for group in range(meta.num_row_groups):
        stats = meta.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max:
            return None
        lows.append(stats.min_raw)
        highs.append(stats.max_raw)
    scale = _PARQUET_TIME_UNITS[unit]
    return datetime_from_ns(min(lows) * scale), datetime_from_ns(max(highs) * scale)


def _pylist(pa: Any, pc: Any, column: Column, array: Any) -> list[Any]:
    if column.kind != "float64?" and array.null_count:
        # A row Struct holding None where it declares a number would be wrong for ever.
        raise InvalidArgumentError(f"column {column.name!r} holds nulls; its rows cannot")
    if column.kind in ("time", "time_ms"):
        # Through int64 nanoseconds: to_pylist() of a timestamp gives pandas Timestamps
        # when pandas is installed.
        nanos = array.cast(pa.int64()).to_pylist()
        if column.kind == "time_ms":
            return [ns // _NANOS_PER_MS for ns in nanos]
        return list(map(datetime_from_ns, nanos))
    if column.kind != "list":
        values: list[Any] = array.to_pylist()
        return values
    listed = array.combine_chunks() if hasattr(array, "combine_chunks") else array
    offsets = listed.offsets.to_pylist()
    flat = pc.list_flatten(listed)
    assert column.element is not None  # nested() sets it
    children = {c.field: _pylist(pa, pc, c, pc.struct_field(flat, c.name)) for c in column.fields}
    elements = list(
        map(column.element, *(children[name] for name in column.element.__struct_fields__))
    )
    # list_flatten starts at the first offset, which a sliced array need not have at 0.
    base = offsets[0]
    return [elements[lo - base : hi - base] for lo, hi in pairwise(offsets)]
