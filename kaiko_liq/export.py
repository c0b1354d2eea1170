"""Rows out as tables: CSV, JSON Lines and Parquet files; Arrow, pandas and polars frames.

The shape
---------
An API row is one bucket: its totals plus a nested ``exchanges`` list. Spreadsheets, SQL
and DataFrames want flat tables, so a fetch becomes two that join on
``(asset, interval_time)``:

``totals`` (the default), one row per ``(asset, interval_time)``::

    asset, interval_time, interval_timestamp,
    total_trades, total_amount, long_trades, long_amount, short_trades, short_amount

``exchanges``, the per-exchange breakdown in long form, one row per
``(asset, interval_time, exchange)``::

    asset, interval_time, exchange,
    total_trades, total_amount, long_trades, long_amount, short_trades, short_amount

``nested`` keeps the API's own nesting: the totals columns plus ``exchanges`` as a
``list<struct>`` column. Backfill datasets use it so one file holds a whole shard.

The ``asset`` column is there when the asset is known: rows given as a mapping
``{asset: rows}``, or with ``asset=``. Types: ``interval_time`` is
``timestamp[ns, tz=UTC]`` (nanoseconds, because ``interval_timestamp`` is nanoseconds
although the endpoint doc says milliseconds), trade counts are int64, amounts float64
(USD), ``asset`` and ``exchange`` strings.

Files
-----
* CSV and Parquet: the totals table at ``PATH`` and the breakdown beside it, with
  ``.exchanges`` before the suffix (``out.csv`` and ``out.exchanges.csv``). CSV times are
  ISO 8601 with ``Z``; amounts use Python's shortest round-trip form, so they read back
  as the same floats.
* JSON Lines: one object per row, ``asset`` first, then the API's fields with
  ``exchanges`` nested, as the API sent them. One file holds everything.

Every file is written atomically: into a hidden temporary file in the same directory,
fsynced, then renamed over the target, so a reader never sees half a file and a crash
leaves the old file (or none) in place.

Optional dependencies are imported only inside the functions that need them; a missing
one raises :class:`MissingDependencyError` (an ``ImportError``) naming the extra to
install: ``kaiko-liq[parquet]``, ``kaiko-liq[pandas]`` or ``kaiko-liq[polars]``.

Example::

    async with LiquidationClient() as client:
        rows = await client.fetch("eth", "2025-02-01", "2025-03-01")
    totals = to_pandas(rows, asset="eth")
    breakdown = to_polars({"eth": rows}, shape="exchanges")
"""

from __future__ import annotations

import csv
import importlib
import io
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TextIO, get_args

import msgspec

from .errors import InvalidArgumentError, KaikoLiqError
from .models import LiquidationRow
from .query import format_time

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

__all__ = [
    "EXCHANGE_COLUMNS",
    "FORMATS",
    "SHAPES",
    "TOTAL_COLUMNS",
    "Format",
    "MissingDependencyError",
    "Rows",
    "Shape",
    "arrow_schema",
    "atomic_write",
    "exchanges_path",
    "flatten_exchanges",
    "format_for_path",
    "to_arrow",
    "to_pandas",
    "to_polars",
    "write_csv",
    "write_files",
    "write_jsonl",
]

Format = Literal["csv", "jsonl", "parquet"]
Shape = Literal["totals", "exchanges", "nested"]
FORMATS: tuple[Format, ...] = get_args(Format)
SHAPES: tuple[Shape, ...] = get_args(Shape)

#: Rows of one asset, or rows by asset (the mapping's keys fill the ``asset`` column).
Rows = Iterable[LiquidationRow] | Mapping[str, Iterable[LiquidationRow]]

# Column kinds, mapped to Arrow and polars types in one place each.
_Kind = Literal["str", "time", "int", "float", "exchanges"]

_FIGURES: tuple[tuple[str, _Kind], ...] = (
    ("total_trades", "int"),
    ("total_amount", "float"),
    ("long_trades", "int"),
    ("long_amount", "float"),
    ("short_trades", "int"),
    ("short_amount", "float"),
)
_FIGURE_NAMES = tuple(name for name, _ in _FIGURES)
_TOTALS: tuple[tuple[str, _Kind], ...] = (
    ("asset", "str"),
    ("interval_time", "time"),
    ("interval_timestamp", "int"),
    *_FIGURES,
)
_EXCHANGES: tuple[tuple[str, _Kind], ...] = (
    ("asset", "str"),
    ("interval_time", "time"),
    ("exchange", "str"),
    *_FIGURES,
)
_NESTED: tuple[tuple[str, _Kind], ...] = (*_TOTALS, ("exchanges", "exchanges"))
_LAYOUTS: dict[Shape, tuple[tuple[str, _Kind], ...]] = {
    "totals": _TOTALS,
    "exchanges": _EXCHANGES,
    "nested": _NESTED,
}

TOTAL_COLUMNS: tuple[str, ...] = tuple(name for name, _ in _TOTALS)
EXCHANGE_COLUMNS: tuple[str, ...] = tuple(name for name, _ in _EXCHANGES)

_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_EXTRA_FOR = {"pyarrow": "parquet", "pandas": "pandas", "polars": "polars"}


# --- inputs -----------------------------------------------------------------------------

_Groups = list[tuple[str | None, Sequence[LiquidationRow]]]


def _groups(rows: Rows, asset: str | None) -> _Groups:
    """Normalise both input forms to ``[(asset or None, rows), ...]``, read exactly once."""
    if isinstance(rows, Mapping):
        if asset is not None:
            raise InvalidArgumentError(
                "pass asset= only with a plain list of rows; a mapping's keys are the assets"
            )
        return [(str(key), list(value)) for key, value in rows.items()]
    return [(asset, list(rows))]


def _check_shape(shape: str) -> Shape:
    for known in SHAPES:
        if shape == known:
            return known
    raise InvalidArgumentError(f"shape {shape!r} is not one of {', '.join(map(repr, SHAPES))}")


def _columns(groups: _Groups, shape: Shape) -> dict[str, tuple[_Kind, list[Any]]]:
    """Column name → (kind, values) for one shape; ``asset`` only when it is known."""
    with_asset = any(key is not None for key, _ in groups)
    layout = [(name, kind) for name, kind in _LAYOUTS[shape] if with_asset or name != "asset"]
    values: dict[str, list[Any]] = {name: [] for name, _ in layout}
    times = values["interval_time"]
    for key, group in groups:
        assets = values["asset"] if with_asset else None
        for row in group:
            if shape == "exchanges":
                for ex in row.exchanges:
                    if assets is not None:
                        assets.append(key)
                    times.append(row.interval_time)
                    values["exchange"].append(ex.exchange)
                    for name in _FIGURE_NAMES:
                        values[name].append(getattr(ex, name))
                continue
            if assets is not None:
                assets.append(key)
            times.append(row.interval_time)
            values["interval_timestamp"].append(row.interval_timestamp)
            for name in _FIGURE_NAMES:
                values[name].append(getattr(row, name))
            if shape == "nested":
                values["exchanges"].append([msgspec.structs.asdict(ex) for ex in row.exchanges])
    return {name: (kind, values[name]) for name, kind in layout}


# --- optional dependencies ------------------------------------------------------------------


class MissingDependencyError(KaikoLiqError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def import_optional(module: str, purpose: str, extra: str | None = None) -> Any:
    """Import an optional dependency, or raise :class:`MissingDependencyError` naming the
    extra that brings it. Package-internal (backfill uses it too); ``purpose`` says what
    needed the module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = extra or _EXTRA_FOR[module.partition(".")[0]]
        raise MissingDependencyError(
            f"{purpose} needs {module.partition('.')[0]}, which is not installed: "
            f"pip install 'kaiko-liq[{extra}]'"
        ) from exc


# --- Arrow, pandas, polars ------------------------------------------------------------------


def _arrow_type(pa: Any, kind: _Kind) -> Any:
    if kind == "str":
        return pa.string()
    if kind == "time":
        return pa.timestamp("ns", tz="UTC")
    if kind == "int":
        return pa.int64()
    if kind == "float":
        return pa.float64()
    fields = [pa.field("exchange", pa.string())]
    fields += [pa.field(name, _arrow_type(pa, k)) for name, k in _FIGURES]
    return pa.list_(pa.struct(fields))


def arrow_schema(shape: Shape = "totals", *, asset: bool = True) -> pa.Schema:
    """The Arrow schema of a shape, with or without the ``asset`` column."""
    pa = import_optional("pyarrow", "arrow_schema")
    layout = _LAYOUTS[_check_shape(shape)]
    return pa.schema(
        [pa.field(name, _arrow_type(pa, kind)) for name, kind in layout if asset or name != "asset"]
    )


def _arrow_table(groups: _Groups, shape: Shape, purpose: str) -> pa.Table:
    pa = import_optional("pyarrow", purpose)
    columns = _columns(groups, shape)
    arrays = {
        name: pa.array(values, type=_arrow_type(pa, kind))
        for name, (kind, values) in columns.items()
    }
    return pa.table(arrays)


def to_arrow(rows: Rows, asset: str | None = None, *, shape: Shape = "totals") -> pa.Table:
    """A ``pyarrow.Table`` of ``rows`` in the given shape (see the module docstring)."""
    return _arrow_table(_groups(rows, asset), _check_shape(shape), "to_arrow")


def to_pandas(rows: Rows, asset: str | None = None, *, shape: Shape = "totals") -> pd.DataFrame:
    """A ``pandas.DataFrame``: ``interval_time`` is ``datetime64[ns, UTC]``, counts int64.

    Built through Arrow, which the pandas extra brings along.
    """
    import_optional("pandas", "to_pandas")
    import_optional("pyarrow", "to_pandas", extra="pandas")
    return to_arrow(rows, asset, shape=shape).to_pandas()


def _polars_type(pl: Any, kind: _Kind) -> Any:
    if kind == "str":
        return pl.String
    if kind == "time":
        return pl.Datetime("ns", "UTC")
    if kind == "int":
        return pl.Int64
    if kind == "float":
        return pl.Float64
    fields = {"exchange": pl.String} | {name: _polars_type(pl, k) for name, k in _FIGURES}
    return pl.List(pl.Struct(fields))


def to_polars(rows: Rows, asset: str | None = None, *, shape: Shape = "totals") -> pl.DataFrame:
    """A ``polars.DataFrame``, built without pyarrow (the polars extra does not need it)."""
    polars = import_optional("polars", "to_polars")
    columns = _columns(_groups(rows, asset), _check_shape(shape))
    series = [
        polars.Series(name, values, dtype=_polars_type(polars, kind))
        for name, (kind, values) in columns.items()
    ]
    frame: pl.DataFrame = polars.DataFrame(series)
    return frame


def flatten_exchanges(table: pa.Table) -> pa.Table:
    """The ``exchanges`` long table out of a ``nested`` Arrow table (e.g. a backfill read).

    Keeps ``asset`` (when present) and ``interval_time`` as keys, one row per exchange.
    """
    pc = import_optional("pyarrow.compute", "flatten_exchanges")
    nested = table.column("exchanges")
    parents = pc.list_parent_indices(nested)
    flat = pc.list_flatten(nested)
    keys = [name for name in ("asset", "interval_time") if name in table.column_names]
    out = table.select(keys).take(parents)
    for name in ("exchange", *_FIGURE_NAMES):
        out = out.append_column(name, pc.struct_field(flat, name))
    return out


# --- files ----------------------------------------------------------------------------------


def format_for_path(path: str | os.PathLike[str], explicit: str | None = None) -> Format:
    """The format to write: ``explicit`` if given, else the one the extension names."""
    if explicit is not None:
        for known in FORMATS:
            if explicit == known:
                return known
        raise InvalidArgumentError(f"format {explicit!r} is not one of {', '.join(FORMATS)}")
    suffix = Path(path).suffix.lower()
    found = _EXTENSIONS.get(suffix)
    if found is None:
        raise InvalidArgumentError(
            f"cannot tell the format of {os.fspath(path)!r} from its extension "
            f"{suffix or '(none)'}; use one of {', '.join(_EXTENSIONS)}, "
            f"or name the format ({', '.join(FORMATS)})"
        )
    return found


def exchanges_path(path: str | os.PathLike[str]) -> Path:
    """Where the breakdown goes beside ``path``: ``out.csv`` → ``out.exchanges.csv``."""
    p = Path(path)
    if not p.suffix:
        return p.with_name(p.name + ".exchanges")
    return p.with_name(f"{p.stem}.exchanges{p.suffix}")


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: on POSIX the directory entry needs its own fsync."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a binary file that appears at ``path`` only once it is complete.

    Writes go to ``.<name>.<random>.tmp`` in the same directory (a leading dot, so
    pyarrow's dataset discovery and ``ls`` skip it), which is fsynced and then renamed
    over ``path``: a rename within one filesystem is atomic. On any error, or on
    cancellation, the temporary file is removed and ``path`` is left as it was. An
    ``OSError`` names ``path``, never the temporary file: that name means nothing to the
    caller, and it is gone.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        # open() rather than mkstemp(): mkstemp's mode 0600 would end up on the final file.
        handle = open(tmp, "xb")  # noqa: SIM115  # closed below, before the rename
    except OSError as exc:
        raise _naming(exc, target) from exc
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, target) from exc
        raise
    _fsync_directory(target.parent)


def _naming(error: OSError, target: Path) -> OSError:
    """``error`` again, about ``target``; OSError() picks the subclass from the errno."""
    return OSError(error.errno, error.strerror or str(error), os.fspath(target))


def _csv_value(kind: _Kind, value: Any) -> Any:
    if kind == "time":
        return format_time(value)
    return value  # str(float) is the shortest form that reads back as the same float


def _write_csv_groups(stream: TextIO, groups: _Groups, shape: Shape) -> int:
    if shape == "nested":
        raise InvalidArgumentError("CSV cannot hold nested exchanges; use 'totals' or 'exchanges'")
    columns = _columns(groups, shape)
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(columns)
    kinds = [kind for kind, _ in columns.values()]
    count = 0
    for record in zip(*(values for _, values in columns.values()), strict=True):
        writer.writerow([_csv_value(k, v) for k, v in zip(kinds, record, strict=True)])
        count += 1
    return count


def write_csv(
    stream: TextIO, rows: Rows, asset: str | None = None, *, shape: Shape = "totals"
) -> int:
    """Write one CSV table, header first, to ``stream``; returns the data rows written.

    ``shape`` is ``"totals"`` or ``"exchanges"``: CSV has no nesting.
    """
    return _write_csv_groups(stream, _groups(rows, asset), _check_shape(shape))


_jsonl_encoder = msgspec.json.Encoder()


def _write_jsonl_groups(stream: IO[bytes], groups: _Groups) -> int:
    count = 0
    buffer = bytearray()
    for key, group in groups:
        head = {"asset": key} if key is not None else {}
        for row in group:
            # encode_into appends at offset -1 (the end), so one buffer serves many rows.
            _jsonl_encoder.encode_into(head | msgspec.structs.asdict(row), buffer, -1)
            buffer += b"\n"
            count += 1
            if len(buffer) >= 1 << 20:
                stream.write(buffer)
                buffer.clear()
    stream.write(buffer)
    return count


def write_jsonl(stream: IO[bytes], rows: Rows, asset: str | None = None) -> int:
    """Write one JSON object per row (``asset`` first, exchanges nested); returns the count."""
    return _write_jsonl_groups(stream, _groups(rows, asset))


def _jsonl_file(groups: _Groups) -> Callable[[IO[bytes]], None]:
    def write(stream: IO[bytes]) -> None:
        _write_jsonl_groups(stream, groups)

    return write


def _csv_file(groups: _Groups, shape: Shape) -> Callable[[IO[bytes]], None]:
    def write(stream: IO[bytes]) -> None:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        _write_csv_groups(text, groups, shape)
        text.flush()
        text.detach()  # leave ``stream`` open: atomic_write fsyncs and closes it

    return write


def _parquet_file(table: pa.Table) -> Callable[[IO[bytes]], None]:
    def write(stream: IO[bytes]) -> None:
        pq = import_optional("pyarrow.parquet", "writing Parquet")
        pq.write_table(table, stream)

    return write


def write_files(
    path: str | os.PathLike[str], rows: Rows, fmt: Format, asset: str | None = None
) -> list[Path]:
    """Write ``rows`` to ``path``, and the breakdown to its ``.exchanges`` sibling for CSV
    and Parquet; returns the paths written.

    Each file is written atomically. Parquet tables are built before any file is touched,
    so a missing pyarrow or a conversion error writes nothing.
    """
    target = Path(path)
    groups = _groups(rows, asset)
    writers: list[tuple[Path, Callable[[IO[bytes]], None]]]
    if fmt == "jsonl":
        writers = [(target, _jsonl_file(groups))]
    elif fmt == "csv":
        writers = [
            (target, _csv_file(groups, "totals")),
            (exchanges_path(target), _csv_file(groups, "exchanges")),
        ]
    elif fmt == "parquet":
        writers = [
            (target, _parquet_file(_arrow_table(groups, "totals", "writing Parquet"))),
            (
                exchanges_path(target),
                _parquet_file(_arrow_table(groups, "exchanges", "writing Parquet")),
            ),
        ]
    else:
        raise InvalidArgumentError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    # The breakdown first: if we die between the two renames, the totals file (the one
    # people open first) is the old one, never newer than the breakdown beside it.
    for file, write in reversed(writers):
        with atomic_write(file) as stream:
            write(stream)
    return [file for file, _ in writers]
