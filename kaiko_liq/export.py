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
leaves the old file (or none) in place. An ``s3://bucket/key.parquet`` path writes to
object storage: each file built whole in memory and stored with one PUT, so a failed
upload leaves the old object (or none); settings from the AWS environment or
``storage_options``.

Optional dependencies are imported only inside the functions that need them; a missing
one raises :class:`MissingDependencyError` (an ``ImportError``) naming the extra to
install: ``kaiko-liq[parquet]``, ``kaiko-liq[pandas]`` or ``kaiko-liq[polars]``.

This module is the token route's facade: its columns are
:data:`kaiko_liq.routes.token.TOKEN_TABLE`, the builders :mod:`kaiko_liq.tables`,
the files :mod:`kaiko_liq.outputs`, all generic over a route's table spec.

Example::

    async with LiquidationClient() as client:
        rows = await client.fetch("eth", "2025-02-01", "2025-03-01")
    totals = to_pandas(rows, asset="eth")
    breakdown = to_polars({"eth": rows}, shape="exchanges")

Speed: the tables are built column by column (see :mod:`kaiko_liq.tables`), in less time
than msgspec takes to decode the page they came from (measured by
``python -m benchmarks.run --only decode``; README, Performance).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TextIO, get_args, overload

from . import outputs, tables
from .errors import InvalidArgumentError
from .models import LiquidationRow
from .optional import MissingDependencyError, import_optional, require_optional
from .outputs import (
    FORMATS,
    STDOUT,
    Compression,
    Format,
    atomic_write,
    compression_for_path,
    format_for_path,
    output_target,
)
from .routes.token import TOKEN_TABLE

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
    "check_output_location",
    "compression_for_path",
    "exchanges_path",
    "flatten_exchanges",
    "format_for_path",
    "import_optional",
    "output_target",
    "require_optional",
    "to_arrow",
    "to_pandas",
    "to_polars",
    "write_csv",
    "write_files",
    "write_jsonl",
    "write_stdout",
]

Shape = Literal["totals", "exchanges", "nested"]
SHAPES: tuple[Shape, ...] = get_args(Shape)

#: Rows of one asset, or rows by asset (the mapping's keys fill the ``asset`` column).
Rows = Iterable[LiquidationRow] | Mapping[str, Iterable[LiquidationRow]]
#: ``asset=``: the asset of a plain list of rows, or ``False`` for no ``asset`` column.
AssetArg = str | Literal[False] | None

TOTAL_COLUMNS: tuple[str, ...] = TOKEN_TABLE.columns("totals")
EXCHANGE_COLUMNS: tuple[str, ...] = TOKEN_TABLE.columns("exchanges")
_EXCHANGES_SUFFIX = dict(TOKEN_TABLE.files)["exchanges"]


def _by_asset(
    rows: Rows, asset: AssetArg, purpose: str
) -> tuple[Mapping[str, Iterable[LiquidationRow]], bool]:
    """Both input forms (a mapping, or a list with ``asset=``) as rows by asset, and
    whether the tables get an ``asset`` column."""
    if isinstance(rows, Mapping):
        if asset is not None and asset is not False:
            raise InvalidArgumentError(
                "pass asset= only with a plain list of rows; a mapping's keys are the assets"
            )
        return rows, asset is None
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
    return {asset or "": rows}, asset is not False


def arrow_schema(shape: Shape = "totals", *, asset: bool = True) -> pa.Schema:
    """The Arrow schema of a shape, with or without the ``asset`` column."""
    return tables.schema(TOKEN_TABLE, shape, keys=asset)


def to_arrow(rows: Rows, asset: AssetArg = None, *, shape: Shape = "totals") -> pa.Table:
    """A ``pyarrow.Table`` of ``rows`` in the given shape (see the module docstring).

    ``rows`` is ``{asset: rows}`` or a list with ``asset="eth"``; ``asset=False`` leaves
    the ``asset`` column out.
    """
    TOKEN_TABLE.shape(shape)
    by_asset, keys = _by_asset(rows, asset, "to_arrow")
    return tables.to_arrow(TOKEN_TABLE, by_asset, shape, keys=keys)


def to_pandas(rows: Rows, asset: AssetArg = None, *, shape: Shape = "totals") -> pd.DataFrame:
    """A ``pandas.DataFrame``: ``interval_time`` is ``datetime64[ns, UTC]``, counts int64.

    Built through Arrow, which the pandas extra brings along.
    """
    by_asset, keys = _by_asset(rows, asset, "to_pandas")
    return tables.to_pandas(TOKEN_TABLE, by_asset, shape, keys=keys)


def to_polars(rows: Rows, asset: AssetArg = None, *, shape: Shape = "totals") -> pl.DataFrame:
    """A ``polars.DataFrame``, built without pyarrow (the polars extra does not need it)."""
    by_asset, keys = _by_asset(rows, asset, "to_polars")
    return tables.to_polars(TOKEN_TABLE, by_asset, shape, keys=keys)


def flatten_exchanges(table: pa.Table) -> pa.Table:
    """The ``exchanges`` long table out of a ``nested`` Arrow table (e.g. a backfill read).

    Keeps ``asset`` (when present) and ``interval_time`` as keys, one row per exchange.
    """
    return tables.reshape(TOKEN_TABLE, table, "exchanges")


def exchanges_path(path: str | os.PathLike[str]) -> Path:
    """Where the breakdown goes beside ``path``: ``out.csv`` → ``out.exchanges.csv``,
    ``out.csv.gz`` → ``out.exchanges.csv.gz``."""
    return outputs.sibling_path(path, _EXCHANGES_SUFFIX)


def write_csv(
    stream: TextIO, rows: Rows, asset: AssetArg = None, *, shape: Shape = "totals"
) -> int:
    """Write one CSV table, header first, to ``stream``; returns the data rows written.

    ``shape`` is ``"totals"`` or ``"exchanges"``: CSV has no nesting.
    """
    TOKEN_TABLE.shape(shape)
    by_asset, keys = _by_asset(rows, asset, "write_csv")
    return outputs.write_csv(stream, TOKEN_TABLE, by_asset, shape, keys=keys)


def write_jsonl(stream: IO[bytes], rows: Rows, asset: AssetArg = None) -> int:
    """Write one JSON object per row (``asset`` first, exchanges nested); returns the count."""
    by_asset, keys = _by_asset(rows, asset, "write_jsonl")
    return outputs.write_jsonl(stream, TOKEN_TABLE, by_asset, keys=keys)


@overload
def write_files(
    path: os.PathLike[str],
    rows: Rows,
    fmt: Format,
    asset: AssetArg = ...,
    *,
    storage_options: Mapping[str, Any] | None = ...,
) -> list[Path]: ...
@overload
def write_files(
    path: str,
    rows: Rows,
    fmt: Format,
    asset: AssetArg = ...,
    *,
    storage_options: Mapping[str, Any] | None = ...,
) -> list[Path] | list[str]: ...
def write_files(
    path: str | os.PathLike[str],
    rows: Rows,
    fmt: Format,
    asset: AssetArg = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Path] | list[str]:
    """Write ``rows`` to ``path``, and the breakdown to its ``.exchanges`` sibling for CSV
    and Parquet; returns the files written (``s3://`` URLs on an object store). A path
    ending in ``.gz`` is gzip-compressed (``out.csv.gz``, ``out.exchanges.csv.gz``);
    standard output is :func:`write_stdout`. ``storage_options`` (endpoint, region,
    credentials; see :data:`kaiko_liq.fs.STORAGE_OPTIONS`) apply to ``s3://`` paths.

    Each file is written atomically: locally renamed into place, on S3 one PUT of the whole
    file. Parquet tables are built before any file is touched, so a missing pyarrow or a
    conversion error writes nothing. The breakdown is replaced before the totals: a failure
    between the two leaves the breakdown new and the totals old (see
    :func:`kaiko_liq.outputs.write_files`).
    """
    if os.fspath(path) == STDOUT:
        raise InvalidArgumentError("'-' is standard output: use write_stdout, not write_files")
    by_asset, keys = _by_asset(rows, asset, "write_files")
    # atomic_write looked up here, at the call: a test wraps it to fill the disk mid-pair.
    return outputs.write_files(
        path,
        TOKEN_TABLE,
        by_asset,
        fmt,
        keys=keys,
        opener=atomic_write,
        storage_options=storage_options,
    )


def check_output_location(
    path: str | os.PathLike[str],
    fmt: Format,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Raise before anything is fetched if :func:`write_files` could not write ``path``
    (and its ``.exchanges`` sibling) in ``fmt``: no bucket, access denied or an unreachable
    endpoint (:class:`~kaiko_liq.fs.StorageUnavailableError`), a directory or device in the
    way, a folder where no file can be made. ``-`` passes. See
    :func:`kaiko_liq.outputs.check_output_location`."""
    outputs.check_output_location(path, TOKEN_TABLE, fmt, storage_options=storage_options)


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
    TOKEN_TABLE.shape(shape)
    if fmt == "parquet":
        format_for_path(STDOUT, fmt)  # raises, saying what to use instead
    by_asset, keys = _by_asset(rows, asset, "write_stdout")
    return outputs.write_stdout(TOKEN_TABLE, by_asset, fmt, shape=shape, keys=keys, stream=stream)
