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

The ``asset`` column is always there unless asked away: rows come as a mapping
``{asset: rows}`` or as a list with ``asset="eth"``; a list without ``asset=`` is an
error (a table that silently lacks its asset is the kind of wrong nobody notices), and
``asset=False`` builds the tables without the column (a backfill's files, whose
directory names the asset). Types: ``interval_time`` is
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
* ``.csv.gz``, ``.jsonl.gz`` (and ``.ndjson.gz``): the same, gzip-compressed
  (``out.csv.gz`` and ``out.exchanges.csv.gz``). The gzip header carries no time and no
  file name, so the same rows always give the same bytes.
* ``-`` is standard output (:func:`write_stdout`): JSON Lines by default, or one CSV
  table; Parquet is not written to a pipe.

Every output is deterministic: assets in the order given, rows in the order given, the
same bytes for the same rows.

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

Speed: the tables are built column by column (one C-level pass per column over the
structs, then one ``pyarrow.array`` per column, the nested ``exchanges`` from its flat
child columns and offsets), in less time than msgspec takes to decode the page they
came from (measured by ``python -m benchmarks.run --only decode``; README, Performance).
"""

from __future__ import annotations

import csv
import gzip
import importlib
import importlib.util
import io
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from itertools import accumulate, chain, repeat
from operator import attrgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TextIO, get_args

import msgspec

from .errors import InvalidArgumentError, KaikoLiqError
from .models import ExchangeVolume, LiquidationRow
from .query import format_time

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

__all__ = [
    "EXCHANGE_COLUMNS",
    "FORMATS",
    "SHAPES",
    "STDOUT",
    "TOTAL_COLUMNS",
    "AssetArg",
    "Compression",
    "Format",
    "MissingDependencyError",
    "Rows",
    "Shape",
    "arrow_schema",
    "atomic_write",
    "compression_for_path",
    "exchanges_path",
    "flatten_exchanges",
    "format_for_path",
    "to_arrow",
    "to_pandas",
    "to_polars",
    "write_csv",
    "write_files",
    "write_jsonl",
    "write_stdout",
]

Format = Literal["csv", "jsonl", "parquet"]
Shape = Literal["totals", "exchanges", "nested"]
FORMATS: tuple[Format, ...] = get_args(Format)
SHAPES: tuple[Shape, ...] = get_args(Shape)

#: Rows of one asset, or rows by asset (the mapping's keys fill the ``asset`` column).
Rows = Iterable[LiquidationRow] | Mapping[str, Iterable[LiquidationRow]]
#: ``asset=``: the asset of a plain list of rows, or ``False`` for no ``asset`` column.
AssetArg = str | Literal[False] | None
Compression = Literal["gzip"] | None

#: The path that means standard output, as in most command-line tools.
STDOUT = "-"

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
_GZ = ".gz"
# gzip level 6 (zlib's default): level 9 takes ~3x the time for ~2% smaller files.
_GZIP_LEVEL = 6
_EXTRA_FOR = {"pyarrow": "parquet", "pandas": "pandas", "polars": "polars"}


# --- inputs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Input:
    """Rows in either input form, read exactly once: ``(asset, rows)`` groups in the
    order given, and whether the tables get an ``asset`` column."""

    with_asset: bool
    groups: list[tuple[str, Sequence[LiquidationRow]]]

    def rows(self) -> list[LiquidationRow]:
        return list(chain.from_iterable(group for _, group in self.groups))

    def assets(self) -> list[str]:
        """The asset of every row, in row order."""
        return list(chain.from_iterable(repeat(key, len(group)) for key, group in self.groups))


def _groups(rows: Rows, asset: AssetArg, purpose: str) -> _Input:
    """Normalise both input forms (a mapping, or a list with ``asset=``)."""
    if isinstance(rows, Mapping):
        if asset is not None and asset is not False:
            raise InvalidArgumentError(
                "pass asset= only with a plain list of rows; a mapping's keys are the assets"
            )
        return _Input(asset is None, [(str(key), list(value)) for key, value in rows.items()])
    if isinstance(rows, str | bytes):
        raise InvalidArgumentError(f"{purpose} takes rows, not {type(rows).__name__}")
    if asset is None:
        raise InvalidArgumentError(
            f"{purpose}: rows given as a list do not say their asset; pass asset='btc' "
            f"(or a mapping {{'btc': rows}}) for an asset column, or asset=False for "
            f"tables without one"
        )
    if asset is not False and not (isinstance(asset, str) and asset):
        raise InvalidArgumentError(f"asset must be an asset code such as 'btc', not {asset!r}")
    return _Input(asset is not False, [(asset or "", list(rows))])


def _check_shape(shape: str) -> Shape:
    for known in SHAPES:
        if shape == known:
            return known
    raise InvalidArgumentError(f"shape {shape!r} is not one of {', '.join(map(repr, SHAPES))}")


# Column-wise extraction: ``map(attrgetter(name), rows)`` walks the structs in C, one
# pass per column. The row-by-row loop it replaces, with a dict per exchange for
# ``pyarrow.array`` to infer, took ~1.7x the page's decode alone and ~6x inside a backfill
# (the garbage collector scanning those dicts); measured, see the README's Performance.
_GET = {name: attrgetter(name) for name in ("interval_time", "interval_timestamp", *_FIGURE_NAMES)}
_GET_EXCHANGE = attrgetter("exchange")
_GET_EXCHANGES = attrgetter("exchanges")

#: Column name -> (kind, values). A ``nested`` table's ``exchanges`` values are the rows'
#: own lists of :class:`ExchangeVolume`; each backend builds its nested column from them.
_Columns = dict[str, tuple[_Kind, list[Any]]]


def _columns(data: _Input, shape: Shape) -> _Columns:
    """Every column of one shape as a Python list, built column-wise in one pass each."""
    with_asset = data.with_asset
    rows = data.rows()
    assets = data.assets() if with_asset else []
    layout = [(name, kind) for name, kind in _LAYOUTS[shape] if with_asset or name != "asset"]
    values: dict[str, list[Any]] = {"asset": assets}
    if shape == "exchanges":
        exchanges = list(map(_GET_EXCHANGES, rows))
        lengths = list(map(len, exchanges))
        flat: list[ExchangeVolume] = list(chain.from_iterable(exchanges))

        def per_exchange(per_row: list[Any]) -> list[Any]:
            return list(chain.from_iterable(map(repeat, per_row, lengths)))

        values["asset"] = per_exchange(assets) if with_asset else []
        values["interval_time"] = per_exchange(list(map(_GET["interval_time"], rows)))
        values["exchange"] = list(map(_GET_EXCHANGE, flat))
        for name in _FIGURE_NAMES:
            values[name] = list(map(_GET[name], flat))
    else:
        for name in ("interval_time", "interval_timestamp", *_FIGURE_NAMES):
            values[name] = list(map(_GET[name], rows))
        if shape == "nested":
            values["exchanges"] = list(map(_GET_EXCHANGES, rows))
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
        raise _missing(module, purpose, extra) from exc


def require_optional(module: str, purpose: str, extra: str | None = None) -> None:
    """Like :func:`import_optional`, but only finds the package, without the cost of
    importing it: for a check up front of what is loaded later (in a worker thread)."""
    if importlib.util.find_spec(module.partition(".")[0]) is None:
        raise _missing(module, purpose, extra)


def _missing(module: str, purpose: str, extra: str | None) -> MissingDependencyError:
    package = module.partition(".")[0]
    extra = extra or _EXTRA_FOR[package]
    return MissingDependencyError(
        f"{purpose} needs {package}, which is not installed: pip install 'kaiko-liq[{extra}]'"
    )


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


def _exchanges_array(pa: Any, per_row: list[list[ExchangeVolume]]) -> Any:
    """The ``list<struct>`` column from its flat children and offsets: no dict per
    exchange, no per-element type inference."""
    flat: list[ExchangeVolume] = list(chain.from_iterable(per_row))
    offsets = pa.array([0, *accumulate(map(len, per_row))], type=pa.int32())
    children = [pa.array(list(map(_GET_EXCHANGE, flat)), type=pa.string())]
    children += [
        pa.array(list(map(_GET[name], flat)), type=_arrow_type(pa, kind)) for name, kind in _FIGURES
    ]
    list_type = _arrow_type(pa, "exchanges")
    structs = pa.StructArray.from_arrays(children, fields=list(list_type.value_type))
    return pa.ListArray.from_arrays(offsets, structs, type=list_type)


def _arrow_table(data: _Input, shape: Shape, purpose: str) -> pa.Table:
    pa = import_optional("pyarrow", purpose)
    schema = arrow_schema(shape, asset=data.with_asset)
    rows = data.rows()
    keys: list[Any] = []
    if data.with_asset:
        keys.append(pa.array(data.assets(), type=pa.string()))
    keys.append(pa.array(list(map(_GET["interval_time"], rows)), type=_arrow_type(pa, "time")))
    if shape == "exchanges":
        # The long table is the nested column flattened, its keys repeated per exchange:
        # Arrow's take and flatten do that in C, without a Python list per exchange.
        nested = _exchanges_array(pa, list(map(_GET_EXCHANGES, rows)))
        parents = nested.value_parent_indices()
        structs = nested.flatten()
        arrays = [key.take(parents) for key in keys]
        arrays += [structs.field(i) for i in range(structs.type.num_fields)]
        return pa.Table.from_arrays(arrays, schema=schema)
    arrays = keys
    for name in ("interval_timestamp", *_FIGURE_NAMES):
        arrays.append(pa.array(list(map(_GET[name], rows)), type=schema.field(name).type))
    if shape == "nested":
        arrays.append(_exchanges_array(pa, list(map(_GET_EXCHANGES, rows))))
    return pa.Table.from_arrays(arrays, schema=schema)


def to_arrow(rows: Rows, asset: AssetArg = None, *, shape: Shape = "totals") -> pa.Table:
    """A ``pyarrow.Table`` of ``rows`` in the given shape (see the module docstring).

    ``rows`` is ``{asset: rows}`` or a list with ``asset="eth"``; ``asset=False`` leaves
    the ``asset`` column out.
    """
    shape = _check_shape(shape)
    return _arrow_table(_groups(rows, asset, "to_arrow"), shape, "to_arrow")


def to_pandas(rows: Rows, asset: AssetArg = None, *, shape: Shape = "totals") -> pd.DataFrame:
    """A ``pandas.DataFrame``: ``interval_time`` is ``datetime64[ns, UTC]``, counts int64.

    Built through Arrow, which the pandas extra brings along.
    """
    import_optional("pandas", "to_pandas")
    import_optional("pyarrow", "to_pandas", extra="pandas")
    table = _arrow_table(_groups(rows, asset, "to_pandas"), _check_shape(shape), "to_pandas")
    frame: pd.DataFrame = table.to_pandas()
    return frame


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


def to_polars(rows: Rows, asset: AssetArg = None, *, shape: Shape = "totals") -> pl.DataFrame:
    """A ``polars.DataFrame``, built without pyarrow (the polars extra does not need it)."""
    polars = import_optional("polars", "to_polars")
    shape = _check_shape(shape)
    columns = _columns(_groups(rows, asset, "to_polars"), shape)
    series = []
    for name, (kind, values) in columns.items():
        if kind == "exchanges":
            values = [[msgspec.structs.asdict(ex) for ex in row] for row in values]
        series.append(polars.Series(name, values, dtype=_polars_type(polars, kind)))
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


def _split_gz(path: str | os.PathLike[str]) -> tuple[Path, bool]:
    """``path`` without a trailing ``.gz`` (any case), and whether it had one."""
    p = Path(path)
    if p.suffix.lower() == _GZ:
        return p.with_name(p.name[: -len(_GZ)]), True
    return p, False


def _is_stdout(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path) == STDOUT


def format_for_path(path: str | os.PathLike[str], explicit: str | None = None) -> Format:
    """The format to write: ``explicit`` if given, else the one the extension names.

    ``out.csv.gz`` is CSV (compressed, see :func:`compression_for_path`); ``-`` (standard
    output) is JSON Lines unless ``explicit`` says ``csv``.
    """
    if explicit is not None:
        found: Format | None = None
        for known in FORMATS:
            if explicit == known:
                found = known
        if found is None:
            raise InvalidArgumentError(f"format {explicit!r} is not one of {', '.join(FORMATS)}")
    elif _is_stdout(path):
        found = "jsonl"
    else:
        inner, _ = _split_gz(path)
        suffix = inner.suffix.lower()
        found = _EXTENSIONS.get(suffix)
        if found is None:
            choices = [*_EXTENSIONS, ".csv.gz", ".jsonl.gz", ".ndjson.gz"]
            raise InvalidArgumentError(
                f"cannot tell the format of {os.fspath(path)!r} from its extension "
                f"{suffix or '(none)'}; use one of {', '.join(choices)}, "
                f"or name the format ({', '.join(FORMATS)})"
            )
    if found == "parquet" and _is_stdout(path):
        raise InvalidArgumentError(
            "Parquet is not written to standard output (it is two files, totals and "
            ".exchanges, and needs seeking); pass a PATH.parquet, or use csv or jsonl for -"
        )
    if found == "parquet" and _split_gz(path)[1]:
        raise InvalidArgumentError(
            f"{os.fspath(path)!r}: Parquet compresses its own columns; drop the .gz"
        )
    return found


def compression_for_path(path: str | os.PathLike[str]) -> Compression:
    """``"gzip"`` for a path ending in ``.gz`` (``out.csv.gz``), else ``None``."""
    return "gzip" if not _is_stdout(path) and _split_gz(path)[1] else None


def exchanges_path(path: str | os.PathLike[str]) -> Path:
    """Where the breakdown goes beside ``path``: ``out.csv`` → ``out.exchanges.csv``,
    ``out.csv.gz`` → ``out.exchanges.csv.gz``."""
    inner, gz = _split_gz(path)
    if not inner.suffix:
        named = inner.with_name(inner.name + ".exchanges")
    else:
        named = inner.with_name(f"{inner.stem}.exchanges{inner.suffix}")
    if gz:
        return named.with_name(named.name + Path(path).suffix)  # keeps the .gz's case
    return named


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: on POSIX the directory entry needs its own fsync."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def output_target(path: str | os.PathLike[str]) -> Path:
    """The file a write to ``path`` really replaces: a symlink's target (renaming over
    the link would replace the link itself). A device, FIFO or socket is refused: renaming
    a regular file over ``/dev/null`` (as root) would replace the device, and a reader on
    a FIFO would never see the data."""
    target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    except OSError:
        return target  # said by the write itself, naming the path
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InvalidArgumentError(
            f"cannot write {os.fspath(path)}: it is not a regular file (a device, FIFO or "
            "socket); write to a file, or use -o - for stdout"
        )
    return target


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a binary file that appears at ``path`` only once it is complete.

    Writes go to ``.<name>.<pid>.<random>.tmp`` in the same directory (a leading dot, so
    pyarrow's dataset discovery and ``ls`` skip it), which is fsynced and then renamed
    over ``path``: a rename within one filesystem is atomic. On any error, or on
    cancellation, the temporary file is removed and ``path`` is left as it was. An
    ``OSError`` names ``path``, never the temporary file: that name means nothing to the
    caller, and it is gone.
    """
    target = output_target(path)
    # The writer's pid in the name: a cleanup removes only a dead writer's leftovers.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
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


def _write_csv_groups(stream: TextIO, groups: _Input, shape: Shape) -> int:
    if shape == "nested":
        raise InvalidArgumentError("CSV cannot hold nested exchanges; use 'totals' or 'exchanges'")
    columns = _columns(groups, shape)
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(columns)
    # Times as ISO 8601 with Z; str(float) is the shortest form that reads back as the
    # same float, which is what csv writes for a float.
    cells = [
        list(map(format_time, values)) if kind == "time" else values
        for kind, values in columns.values()
    ]
    count = len(cells[0]) if cells else 0
    writer.writerows(zip(*cells, strict=True))
    return count


def write_csv(
    stream: TextIO, rows: Rows, asset: AssetArg = None, *, shape: Shape = "totals"
) -> int:
    """Write one CSV table, header first, to ``stream``; returns the data rows written.

    ``shape`` is ``"totals"`` or ``"exchanges"``: CSV has no nesting.
    """
    shape = _check_shape(shape)
    return _write_csv_groups(stream, _groups(rows, asset, "write_csv"), shape)


_jsonl_encoder = msgspec.json.Encoder()


def _write_jsonl_groups(stream: IO[bytes], groups: _Input) -> int:
    count = 0
    buffer = bytearray()
    for key, group in groups.groups:
        head = {"asset": key} if groups.with_asset else {}
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


def write_jsonl(stream: IO[bytes], rows: Rows, asset: AssetArg = None) -> int:
    """Write one JSON object per row (``asset`` first, exchanges nested); returns the count."""
    return _write_jsonl_groups(stream, _groups(rows, asset, "write_jsonl"))


def _csv_to(stream: IO[bytes], groups: _Input, shape: Shape) -> int:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    count = _write_csv_groups(text, groups, shape)
    text.flush()
    text.detach()  # leave ``stream`` open: its owner closes it
    return count


@contextmanager
def _maybe_gzip(stream: IO[bytes], compression: Compression) -> Iterator[IO[bytes]]:
    """``stream``, or a gzip writer over it that is finished (not closing ``stream``).

    mtime=0 and an empty file name: the header then holds nothing that changes between
    runs, so the same rows give byte-identical files.
    """
    if compression is None:
        yield stream
        return
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=stream, mtime=0, compresslevel=_GZIP_LEVEL
    ) as packed:
        yield packed  # type: ignore[misc]  # GzipFile is a binary file object


_Writer = Callable[[IO[bytes]], object]


def _parquet_file(table: pa.Table) -> _Writer:
    def write(stream: IO[bytes]) -> None:
        pq = import_optional("pyarrow.parquet", "writing Parquet")
        pq.write_table(table, stream)

    return write


def write_files(
    path: str | os.PathLike[str], rows: Rows, fmt: Format, asset: AssetArg = None
) -> list[Path]:
    """Write ``rows`` to ``path``, and the breakdown to its ``.exchanges`` sibling for CSV
    and Parquet; returns the paths written. A path ending in ``.gz`` is gzip-compressed
    (``out.csv.gz``, ``out.exchanges.csv.gz``); standard output is :func:`write_stdout`.

    Each file is written atomically. Parquet tables are built before any file is touched,
    so a missing pyarrow or a conversion error writes nothing.
    """
    if _is_stdout(path):
        raise InvalidArgumentError("'-' is standard output: use write_stdout, not write_files")
    target = Path(path)
    compression = compression_for_path(target)
    if compression is not None and fmt == "parquet":
        format_for_path(target)  # raises: Parquet compresses its own columns
    groups = _groups(rows, asset, "write_files")
    writers: list[tuple[Path, _Writer]]
    if fmt == "jsonl":
        writers = [(target, lambda stream: _write_jsonl_groups(stream, groups))]
    elif fmt == "csv":
        writers = [
            (target, lambda stream: _csv_to(stream, groups, "totals")),
            (exchanges_path(target), lambda stream: _csv_to(stream, groups, "exchanges")),
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
    # Every file is written whole before any is renamed into place, so a failure while
    # writing (a full disk) leaves the old pair, or none. The renames run as the stack
    # unwinds, the breakdown first: were we to die between them, the totals file (the
    # one people open first) would be the old one, never newer than its breakdown.
    with ExitStack() as stack:
        for file, write in writers:
            stream = stack.enter_context(atomic_write(file))
            with _maybe_gzip(stream, compression) as out:
                write(out)
    return [file for file, _ in writers]


def write_stdout(
    rows: Rows,
    fmt: Format = "jsonl",
    asset: AssetArg = None,
    *,
    shape: Shape = "totals",
    stream: IO[bytes] | None = None,
) -> int:
    """Write one table to standard output (``-o -``), flushed; returns the rows written.

    JSON Lines holds everything (exchanges nested); CSV holds one table, ``shape``
    ``"totals"`` (the default) or ``"exchanges"``. Parquet is refused: it is two files
    and needs seeking. ``stream`` replaces ``sys.stdout.buffer`` (tests, or another pipe).
    """
    shape = _check_shape(shape)
    if fmt == "parquet":
        format_for_path(STDOUT, fmt)  # raises, saying what to use instead
    groups = _groups(rows, asset, "write_stdout")
    if stream is None:
        sys.stdout.flush()  # text already printed goes first, not after our bytes
        out: IO[bytes] = sys.stdout.buffer
    else:
        out = stream
    if fmt == "jsonl":
        if shape != "totals":
            raise InvalidArgumentError(
                "JSON Lines always nests the exchanges; shape= applies to CSV only"
            )
        count = _write_jsonl_groups(out, groups)
    elif fmt == "csv":
        count = _csv_to(out, groups, shape)
    else:
        raise InvalidArgumentError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    out.flush()
    return count
