"""Rows out to files: formats and paths, atomic writes, the CSV / JSON Lines / Parquet writers.

Generic over a route's :class:`~kaiko_liq.tables.TableSpec`:

* CSV and Parquet: each of the spec's file shapes, the first at ``PATH`` and the others
  beside it with their suffix before the extension (the token route's ``out.csv`` and
  ``out.exchanges.csv``; the events route's one file). CSV times are ISO 8601 with
  ``Z``, to the millisecond; floats use Python's shortest round-trip form, so they read
  back as the same floats; a null is an empty cell.
* JSON Lines: one object per row, the key columns first, then the row's fields as the
  API sent them (nesting kept). One file holds everything.
* ``.csv.gz``, ``.jsonl.gz`` (and ``.ndjson.gz``): the same, gzip-compressed. The gzip
  header carries no time and no file name, so the same rows always give the same bytes.
* ``-`` is standard output (:func:`write_stdout`): JSON Lines by default, or one CSV
  table; Parquet is not written to a pipe.
* ``s3://bucket/key.csv`` (any location :func:`kaiko_liq.fs.is_remote` names) is an object
  store: each file is built whole in memory and stored with one
  :meth:`~kaiko_liq.fs.Storage.write_atomic` (one PUT: whole or not at all), the same bytes
  a local path gets. Settings come from the AWS environment or ``storage_options``.

Every output is deterministic: keys in the order given, rows in the order given, the same
bytes for the same rows. Every file is written atomically (:func:`atomic_write`).
:func:`check_output_location` says before anything is fetched whether the files can be
written at all.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, Literal, TextIO, get_args, overload

import msgspec

from .atomic import atomic_write, output_target
from .errors import InvalidArgumentError
from .fs import Storage, is_remote, open_storage
from .optional import import_optional
from .query import format_time, from_epoch_ms
from .tables import (
    Grouped,
    RowsByKey,
    Shape,
    TableSpec,
    arrow_table,
    column_values,
    group_rows,
)

__all__ = [
    "FORMATS",
    "STDOUT",
    "Compression",
    "Format",
    "Opener",
    "atomic_write",
    "check_output_location",
    "check_writable",
    "compression_for_path",
    "format_for_path",
    "output_target",
    "sibling_path",
    "write_csv",
    "write_files",
    "write_jsonl",
    "write_stdout",
]

Format = Literal["csv", "jsonl", "parquet"]
FORMATS: tuple[Format, ...] = get_args(Format)
Compression = Literal["gzip"] | None
#: How :func:`write_files` opens each file: :func:`atomic_write`, or a wrapper of it.
Opener = Callable[[Path], AbstractContextManager[IO[bytes]]]

#: The path that means standard output, as in most command-line tools.
STDOUT = "-"

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


# --- formats and paths ------------------------------------------------------------------------


def _split_gz(path: str | os.PathLike[str]) -> tuple[Path, bool]:
    """``path`` without a trailing ``.gz`` (any case), and whether it had one."""
    p = Path(path)
    if p.suffix.lower() == _GZ:
        return p.with_name(p.name[: -len(_GZ)]), True
    return p, False


def _is_stdout(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path) == STDOUT


def _check_format(fmt: str) -> Format:
    for known in FORMATS:
        if fmt == known:
            return known
    raise InvalidArgumentError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def format_for_path(path: str | os.PathLike[str], explicit: str | None = None) -> Format:
    """The format to write: ``explicit`` if given, else the one the extension names.

    ``out.csv.gz`` is CSV (compressed, see :func:`compression_for_path`); ``-`` (standard
    output) is JSON Lines unless ``explicit`` says ``csv``.
    """
    if explicit is not None:
        found = _check_format(explicit)
    elif _is_stdout(path):
        found = "jsonl"
    else:
        inner, _ = _split_gz(path)
        suffix = inner.suffix.lower()
        named = _EXTENSIONS.get(suffix)
        if named is None:
            choices = [*_EXTENSIONS, ".csv.gz", ".jsonl.gz", ".ndjson.gz"]
            raise InvalidArgumentError(
                f"cannot tell the format of {os.fspath(path)!r} from its extension "
                f"{suffix or '(none)'}; use one of {', '.join(choices)}, "
                f"or name the format ({', '.join(FORMATS)})"
            )
        found = named
    if found == "parquet" and _is_stdout(path):
        raise InvalidArgumentError(
            "Parquet is not written to standard output (it needs seeking, and some tables "
            "are two files); pass a PATH.parquet, or use csv or jsonl for -"
        )
    if found == "parquet" and _split_gz(path)[1]:
        raise InvalidArgumentError(
            f"{os.fspath(path)!r}: Parquet compresses its own columns; drop the .gz"
        )
    return found


def compression_for_path(path: str | os.PathLike[str]) -> Compression:
    """``"gzip"`` for a path ending in ``.gz`` (``out.csv.gz``), else ``None``."""
    return "gzip" if not _is_stdout(path) and _split_gz(path)[1] else None


def sibling_path(path: str | os.PathLike[str], suffix: str) -> Path:
    """``path`` with ``suffix`` before its extension: ``out.csv`` → ``out.exchanges.csv``,
    ``out.csv.gz`` → ``out.exchanges.csv.gz`` (for ``.exchanges``); ``""`` is ``path``."""
    if not suffix:
        return Path(path)
    inner, gz = _split_gz(path)
    if not inner.suffix:
        named = inner.with_name(inner.name + suffix)
    else:
        named = inner.with_name(f"{inner.stem}{suffix}{inner.suffix}")
    if gz:
        return named.with_name(named.name + Path(path).suffix)  # keeps the .gz's case
    return named


# --- atomic files -----------------------------------------------------------------------------


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


# --- CSV --------------------------------------------------------------------------------------


def _csv_time_ms(ms: int) -> str:
    return format_time(from_epoch_ms(ms))


def _write_csv(stream: TextIO, spec: TableSpec[Any], data: Grouped, shape: Shape) -> int:
    if not shape.is_flat():
        flat = " or ".join(repr(s.name) for s in spec.shapes if s.is_flat())
        nested = ", ".join(c.name for c in shape.flat_columns() if c.kind == "list")
        raise InvalidArgumentError(f"CSV cannot hold nested {nested}; use {flat}")
    columns = column_values(spec, data, shape)
    # Python's csv quotes a field holding a character of the line terminator, and ours is
    # "\n" alone: a bare "\r" in a string would go out unquoted and split the row for
    # every reader. Such a table (rare: names and ids from the server) is quoted whole.
    carriage = any("\r" in "".join(values) for column, values in columns if column.kind == "string")
    if carriage:
        writer = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)
    else:
        writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([column.name for column, _ in columns])
    # Times as ISO 8601 with Z; str(float) is the shortest form that reads back as the
    # same float, which is what csv writes for a float (and "" for None).
    cells = [
        list(map(format_time, values))
        if column.kind == "time"
        else list(map(_csv_time_ms, values))
        if column.kind == "time_ms"
        else values
        for column, values in columns
    ]
    count = len(cells[0]) if cells else 0
    writer.writerows(zip(*cells, strict=True))
    return count


def _csv_to(stream: IO[bytes], spec: TableSpec[Any], data: Grouped, shape: Shape) -> int:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    count = _write_csv(text, spec, data, shape)
    text.flush()
    text.detach()  # leave ``stream`` open: its owner closes it
    return count


def write_csv(
    stream: TextIO,
    spec: TableSpec[Any],
    rows_by_key: RowsByKey[Any],
    shape: str | None = None,
    *,
    keys: bool = True,
) -> int:
    """Write one CSV table, header first, to ``stream``; returns the data rows written.
    ``shape`` (the spec's default for ``None``) must have no nested column."""
    data = group_rows(spec, rows_by_key, keys=keys, purpose="write_csv")
    return _write_csv(stream, spec, data, spec.shape(shape))


# --- JSON Lines -------------------------------------------------------------------------------

_jsonl_encoder = msgspec.json.Encoder()


def _write_jsonl(stream: IO[bytes], spec: TableSpec[Any], data: Grouped) -> int:
    count = 0
    buffer = bytearray()
    for key, group in data.groups:
        head = dict(zip(spec.keys, key, strict=True)) if data.keys else {}
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


def write_jsonl(
    stream: IO[bytes], spec: TableSpec[Any], rows_by_key: RowsByKey[Any], *, keys: bool = True
) -> int:
    """Write one JSON object per row (key columns first, then the row's fields as the API
    sent them); returns the count."""
    return _write_jsonl(
        stream, spec, group_rows(spec, rows_by_key, keys=keys, purpose="write_jsonl")
    )


# --- files and standard output ----------------------------------------------------------------

_Writer = Callable[[IO[bytes]], object]


def _parquet_file(table: Any) -> _Writer:
    def write(stream: IO[bytes]) -> None:
        pq = import_optional("pyarrow.parquet", "writing Parquet")
        pq.write_table(table, stream)

    return write


def _csv_file(spec: TableSpec[Any], data: Grouped, shape: Shape) -> _Writer:
    return lambda stream: _csv_to(stream, spec, data, shape)


def _remote_folder(
    path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None
) -> tuple[Storage, str] | None:
    """For an object-store ``path``, the storage of its folder and the file's name there;
    ``None`` for a local path. ``storage_options`` with a local path, or a scheme no storage
    knows (``gs://``), is refused: such a path is not quietly a local folder named ``gs:``."""
    text = os.fspath(path)
    if not is_remote(path):
        if storage_options or "://" in text:
            open_storage(text, storage_options=storage_options)  # raises, saying what is wrong
        return None
    scheme, _, rest = text.partition("://")
    folder, slash, name = rest.rpartition("/")
    if not (slash and folder and name):
        raise InvalidArgumentError(
            f"{text!r} names no file: write {scheme}://bucket/name.parquet (or .csv, .jsonl)"
        )
    return open_storage(f"{scheme}://{folder}", storage_options=storage_options), name


def _file_names(path: str | os.PathLike[str], spec: TableSpec[Any], fmt: str) -> list[Path]:
    """The files ``write_files`` writes, in the order of ``spec.files``: ``path`` alone for
    JSON Lines (it holds every shape), each file shape's sibling otherwise."""
    if _is_stdout(path):
        raise InvalidArgumentError("'-' is standard output: use write_stdout, not write_files")
    if compression_for_path(path) is not None and fmt == "parquet":
        format_for_path(path)  # raises: Parquet compresses its own columns
    if _check_format(fmt) == "jsonl":
        return [Path(path)]
    return [sibling_path(path, suffix) for _, suffix in spec.files]


def check_output_location(
    path: str | os.PathLike[str],
    spec: TableSpec[Any],
    fmt: Format,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Raise now, before anything is fetched, if :func:`write_files` could not write
    ``path`` (and its siblings) at all; ``-`` (standard output) passes.

    On an object store: one request (a HEAD of the bucket), and
    :class:`~kaiko_liq.fs.StorageUnavailableError` for no bucket, access denied, an
    unreachable endpoint or no credentials; never credentials in the message. Permission
    to *write* the bucket shows only at the upload: S3 has no probe that neither writes nor
    needs a conditional write the server may ignore.

    Locally: a device, FIFO, socket or directory in the way is an
    :class:`~kaiko_liq.errors.InvalidArgumentError`; a folder where no file can be made
    (missing, read-only) raises the ``OSError``, naming the file.
    """
    if _is_stdout(path):
        return
    remote = _remote_folder(path, storage_options)
    if remote is not None:
        storage, name = remote
        for file in _file_names(name, spec, fmt):
            storage.url_of(file.name)  # a name S3 can hold, or InvalidArgumentError
        storage.check()
        return
    for file in _file_names(path, spec, fmt):
        check_writable(file)


def check_writable(file: Path) -> None:
    """Raise now if no file could be written at ``file`` (a local path): a device, FIFO,
    socket or directory in the way is an :class:`InvalidArgumentError`; a folder where
    no file can be made raises the ``OSError``, naming ``file``."""
    output_target(file)  # not a device, FIFO or socket
    if file.is_dir():
        raise InvalidArgumentError(f"cannot write {file}: it is a directory")
    # Not access(): it says yes to root everywhere, and some filesystems (/proc, sysfs,
    # a read-only mount) refuse anyway. Create (and drop) a nameless file where the
    # output's temporary file goes.
    try:
        with tempfile.TemporaryFile(dir=file.parent):
            pass
    except OSError as exc:
        exc.filename = os.fspath(file)
        raise


def _in_memory(write: _Writer, compression: Compression) -> bytes:
    """The whole file ``write`` makes, as bytes (the same bytes it writes to a file)."""
    buffer = io.BytesIO()
    with _maybe_gzip(buffer, compression) as out:
        write(out)
    return buffer.getvalue()


@overload
def write_files(
    path: os.PathLike[str],
    spec: TableSpec[Any],
    rows_by_key: RowsByKey[Any],
    fmt: Format,
    *,
    keys: bool = ...,
    opener: Opener = ...,
    storage_options: Mapping[str, Any] | None = ...,
) -> list[Path]: ...
@overload
def write_files(
    path: str,
    spec: TableSpec[Any],
    rows_by_key: RowsByKey[Any],
    fmt: Format,
    *,
    keys: bool = ...,
    opener: Opener = ...,
    storage_options: Mapping[str, Any] | None = ...,
) -> list[Path] | list[str]: ...
def write_files(
    path: str | os.PathLike[str],
    spec: TableSpec[Any],
    rows_by_key: RowsByKey[Any],
    fmt: Format,
    *,
    keys: bool = True,
    opener: Opener = atomic_write,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Path] | list[str]:
    """Write the rows to ``path`` (and, for CSV and Parquet, each further file shape of
    ``spec`` to its sibling); returns the files written: paths, or ``s3://`` URLs for an
    object store. A path ending in ``.gz`` is gzip-compressed; standard output is
    :func:`write_stdout`.

    Locally each file is written with ``opener`` (atomically by default). On an object store
    (``s3://bucket/key.parquet``, settings from the AWS environment or ``storage_options``)
    each file is built whole in memory, then stored with one PUT, visible whole or not at
    all; ``opener`` does not apply. Parquet tables are built before any file is touched, so
    a missing pyarrow or a conversion error writes nothing.

    A CSV or Parquet pair is built whole before either file is replaced, and the main file
    is replaced last. A failure part-way (a full disk; an upload refused or cut off) leaves
    the old files, or none, except when it falls between the two replacements: then the
    breakdown (``.exchanges``) is new and the main file old (or absent), never the main
    file newer than its breakdown. Run the write again to make the pair agree.
    """
    remote = _remote_folder(path, storage_options)
    files = _file_names(path if remote is None else remote[1], spec, fmt)
    compression = compression_for_path(path)
    data = group_rows(spec, rows_by_key, keys=keys, purpose="write_files")
    if fmt == "jsonl":
        makers: list[_Writer] = [lambda stream: _write_jsonl(stream, spec, data)]
    elif fmt == "csv":
        makers = [_csv_file(spec, data, spec.shape(name)) for name, _ in spec.files]
    else:
        parquet = Grouped(data.keys, data.groups, "writing Parquet")
        makers = [
            _parquet_file(arrow_table(spec, parquet, spec.shape(name))) for name, _ in spec.files
        ]
    writers = list(zip(files, makers, strict=True))
    if remote is not None:
        storage, _ = remote
        bodies = [(file.name, _in_memory(write, compression)) for file, write in writers]
        for key, body in reversed(bodies):  # the main file last, as the renames below
            storage.write_atomic(key, body)
        return [storage.url_of(key) for key, _ in bodies]
    # Every file is written whole before any is renamed into place, so a failure while
    # writing (a full disk) leaves the old files, or none. The renames run as the stack
    # unwinds, the main file last: were we to die between them, the main file (the one
    # people open first) would be the old one, never newer than its siblings.
    with ExitStack() as stack:
        for file, write in writers:
            stream = stack.enter_context(opener(file))
            with _maybe_gzip(stream, compression) as out:
                write(out)
    return files


def write_stdout(
    spec: TableSpec[Any],
    rows_by_key: RowsByKey[Any],
    fmt: Format = "jsonl",
    *,
    shape: str | None = None,
    keys: bool = True,
    stream: IO[bytes] | None = None,
) -> int:
    """Write one table to standard output (``-o -``), flushed; returns the rows written.

    JSON Lines holds whole rows; CSV one ``shape`` (the spec's default for ``None``).
    Parquet is refused: it needs seeking. ``stream`` replaces ``sys.stdout.buffer``
    (tests, or another pipe).
    """
    table_shape = spec.shape(shape)
    if fmt == "parquet":
        format_for_path(STDOUT, fmt)  # raises, saying what to use instead
    fmt = _check_format(fmt)
    data = group_rows(spec, rows_by_key, keys=keys, purpose="write_stdout")
    if stream is None:
        sys.stdout.flush()  # text already printed goes first, not after our bytes
        out: IO[bytes] = sys.stdout.buffer
    else:
        out = stream
    if fmt == "jsonl":
        if table_shape is not spec.shapes[0]:
            raise InvalidArgumentError(
                "JSON Lines holds whole rows, as the API sent them; shape= applies to CSV only"
            )
        count = _write_jsonl(out, spec, data)
    else:
        count = _csv_to(out, spec, data, table_shape)
    out.flush()
    return count
