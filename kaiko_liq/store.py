"""A directory of settled shards: the one home of the on-disk layout, for the cache and
for :mod:`kaiko_liq.backfill` alike (a backfill directory is a cache with a manifest).

Layout, hive-style, one Parquet file per fetched window::

    DIR/
      asset=btc/
        20250108T000000Z_20250217T000000Z.parquet  the rows of [2025-01-08, 2025-02-17)
        20250217T000000Z_20250329T000000Z.parquet
      asset=eth/
        ...

A file holds its window in the ``nested`` shape of :mod:`kaiko_liq.export` (the totals
columns, ascending, plus the per-exchange breakdown as a ``list<struct>`` column;
``asset`` comes from the directory), so a window is on disk whole or not at all.
:meth:`ShardStore.read_rows` gives back exactly the rows written, field for field: the
exchanges in their order, ``interval_timestamp`` as sent. A window with no rows is a
zero-row file: "fetched, nothing there" must stay distinct from "not fetched".

Only settled buckets belong here (:func:`settled_horizon`): a bucket still filling would
be kept short for ever. Deciding what is settled is the caller's job; the store keeps
whatever it is given.

What counts as on disk
    A file under its final name, whose footer reads and whose schema is the nested one.
    Final names appear only by ``os.replace`` of a complete, fsynced temporary file whose
    name starts with ``.`` (:func:`kaiko_liq.export.atomic_write`), so a reader or a kill
    never sees half a file. A final-named file that does not pass that check (0 bytes, a
    torn copy, another program's file) is moved aside to ``.<name>.damaged-<hex>``, which
    every reader skips, with a warning on the ``kaiko_liq`` logger: its window becomes a
    gap and is fetched again.

Two processes, one store
    Files are named by their window, and :meth:`ShardStore.write` holds an exclusive lock
    on the asset's directory while it looks at what is there and renames its file in. A
    window another process wrote meanwhile is not written again: only the buckets no file
    covers yet are, each part under its own name. So files never overlap, and no reader
    (ours or pyarrow's, polars', DuckDB's) can see a bucket twice. Should a directory hold
    overlapping files anyway (copied together by hand), :meth:`read_rows` still takes each
    bucket from one file only, the earliest-starting one.

The methods block (file I/O, Parquet); call them from a worker thread in async code
(``await anyio.to_thread.run_sync(store.gaps, "btc", start, end)``). One store may be used
from several threads at once.

Example::

    store = ShardStore("liq", "1h")
    for lo, hi in store.gaps("btc", start, end):
        store.write("btc", lo, hi, await client.fetch_shard(...))  # settled windows only
    rows = store.read_rows("btc", start, end)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import InvalidArgumentError, KaikoLiqError
from .export import (
    SHAPES,
    Shape,
    arrow_schema,
    atomic_write,
    flatten_exchanges,
    import_optional,
    to_arrow,
)
from .models import ExchangeVolume, LiquidationRow
from .query import Interval, TimeLike, format_time, parse_interval, parse_time, validate_asset
from .settle import CLOCK_MARGIN, RECHECK, SETTLE, settled_horizon
from .spans import gaps_in, merge_spans

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as pads

__all__ = [
    "CLOCK_MARGIN",
    "PARTITION",
    "RECHECK",
    "SETTLE",
    "AssetOnDisk",
    "Damaged",
    "NotStoredError",
    "Shard",
    "ShardStore",
    "StorageError",
    "cache_store",
    "check_store_dir",
    "describe_backfill",
    "gaps_in",
    "is_temporary",
    "merge_spans",
    "open_dataset",
    "origin_slug",
    "parse_shard_filename",
    "read_backfill",
    "server_slug",
    "settled_horizon",
    "shard_filename",
]

logger = logging.getLogger("kaiko_liq")

PARTITION = "asset="
#: A temporary file this old was left by a killed writer; younger ones may be in flight
#: in another process sharing the store.
_STALE_TEMPORARY = 3600.0
_STAMP = "%Y%m%dT%H%M%S"
_STAMP_RE = r"\d{8}T\d{6}(?:\.\d{6})?Z"
_SHARD_RE = re.compile(rf"^({_STAMP_RE})_({_STAMP_RE})\.parquet$")
# atomic_write's temporary names: ".<final name>.<pid>.<hex>.tmp" (older: no pid)
_TEMP_RE = re.compile(r"^\..+\.[0-9a-f]+\.tmp$")
_TEMP_PID_RE = re.compile(r"\.(\d+)\.[0-9a-f]{12}\.tmp$")
#: The footer's key-value entry that records the grid a file was written on, so that a
#: directory whose manifest is lost still knows its interval.
_META_KEY = b"kaiko_liq"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- errors -----------------------------------------------------------------------------------


class StorageError(KaikoLiqError):
    """The filesystem refused: disk full, read-only, missing, permission denied, a file
    where a directory should be. ``path`` is what was being touched, ``reason`` the
    system's words (``strerror``), ``errno`` its number. A backfill adds what it had
    saved by then: ``written``, the shards this run wrote, and ``saved``, a sentence
    saying where they are (``None`` when nothing was written); both are ``None`` when the
    store alone raises it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        reason: str,
        *,
        doing: str = "write",
        errno: int | None = None,
        saved: str | None = None,
        written: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.reason = reason
        self.doing = doing
        self.errno = errno
        self.saved = saved
        self.written = written
        tail = f"; {saved}" if saved else "; nothing fetched was saved" if written == 0 else ""
        super().__init__(f"cannot {doing} {self.path}: {reason}{tail}")

    @classmethod
    def from_os_error(
        cls, exc: OSError, path: str | os.PathLike[str], *, doing: str = "write"
    ) -> StorageError:
        where = exc.filename if isinstance(exc.filename, str) else os.fspath(path)
        return cls(where, exc.strerror or str(exc), doing=doing, errno=exc.errno)

    def with_saved(self, saved: str | None, written: int) -> StorageError:
        """The same failure, saying what had been saved before it."""
        again = StorageError(
            self.path,
            self.reason,
            doing=self.doing,
            errno=self.errno,
            saved=saved,
            written=written,
        )
        again.__cause__ = self.__cause__
        return again


class NotStoredError(KaikoLiqError, LookupError):
    """:meth:`ShardStore.read_rows` was asked for buckets no file holds (``gaps``)."""

    def __init__(self, asset: str, gaps: Sequence[tuple[datetime, datetime]]) -> None:
        self.asset = asset
        self.gaps = list(gaps)
        shown = ", ".join(f"[{format_time(a)}, {format_time(b)})" for a, b in self.gaps[:3])
        more = f" and {len(self.gaps) - 3} more" if len(self.gaps) > 3 else ""
        super().__init__(
            f"{asset}: not in the store: {shown}{more}; fetch and write them first "
            "(ShardStore.gaps says what is missing)"
        )


@contextmanager
def _os_errors(path: str | os.PathLike[str], doing: str) -> Iterator[None]:
    """Turn an ``OSError`` into one :class:`StorageError` naming the path and the cause."""
    try:
        yield
    except OSError as exc:
        raise StorageError.from_os_error(exc, path, doing=doing) from exc


class _DataDamage(Exception):
    """pyarrow could not decode a file's data pages (an ``OSError`` with no errno)."""


def _read_table(pq: Any, path: Path) -> Any:
    """A shard file's table. pyarrow reports torn data pages as an ``OSError`` without an
    errno, unlike the filesystem: those are damage to move aside, not a disk fault."""
    try:
        return pq.ParquetFile(path).read()
    except OSError as exc:
        if exc.errno is None:
            raise _DataDamage(str(exc)) from exc
        raise StorageError.from_os_error(exc, path, doing="read") from exc


# --- names ------------------------------------------------------------------------------------


def shard_filename(start: datetime, end: datetime) -> str:
    """``20250108T000000Z_20250217T000000Z.parquet``: sortable, and no ``:`` for Windows."""
    return f"{_stamp(start)}_{_stamp(end)}.parquet"


def _stamp(t: datetime) -> str:
    t = t.astimezone(UTC)
    fraction = f".{t.microsecond:06d}" if t.microsecond else ""
    return t.strftime(_STAMP) + fraction + "Z"


def _parse_stamp(text: str) -> datetime:
    fmt = _STAMP + (".%fZ" if "." in text else "Z")
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def parse_shard_filename(name: str) -> tuple[datetime, datetime] | None:
    """The window a shard file's name stands for, or ``None`` for any other name."""
    match = _SHARD_RE.match(name)
    if match is None:
        return None
    start, end = _parse_stamp(match.group(1)), _parse_stamp(match.group(2))
    return (start, end) if start < end else None


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (one we may not signal
    counts: it is someone's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def is_temporary(name: str) -> bool:
    """Whether ``name`` is an :func:`~kaiko_liq.export.atomic_write` temporary file."""
    return _TEMP_RE.match(name) is not None


# --- what is on disk --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard file that passed the check: its window (as named) and its row count."""

    asset: str
    start: datetime
    end: datetime
    rows: int
    path: Path

    @property
    def relpath(self) -> str:
        """``asset=btc/<start>_<end>.parquet``, '/'-separated: the manifest's key."""
        return f"{PARTITION}{self.asset}/{self.path.name}"


@dataclass(frozen=True, slots=True)
class Damaged:
    """A file that failed the check and was moved aside (``moved_to``), and why."""

    path: Path
    moved_to: Path
    reason: str

    def __str__(self) -> str:
        return f"moved {self.path} aside to {self.moved_to.name}: {self.reason}"


class _Unreadable(Exception):
    """Why a file fails the check (internal: it becomes a :class:`Damaged`)."""


# --- Arrow <-> rows ---------------------------------------------------------------------------


def _table_of(rows: Sequence[LiquidationRow], interval: Interval) -> pa.Table:
    meta = json.dumps({"interval_seconds": interval.seconds}).encode()
    return to_arrow(rows, asset=False, shape="nested").replace_schema_metadata({_META_KEY: meta})


def _rows_of(table: pa.Table) -> list[LiquidationRow]:
    """The rows of a ``nested`` table, exactly as written."""
    pa = import_optional("pyarrow", "reading a shard", extra="parquet")
    pc = import_optional("pyarrow.compute", "reading a shard", extra="parquet")
    n = table.num_rows
    if n == 0:
        return []
    # Through int64 nanoseconds: to_pylist() of a ns timestamp gives pandas Timestamps
    # when pandas is installed. The times came from datetimes, so they are whole µs.
    nanos = table.column("interval_time").cast(pa.int64()).to_pylist()
    times = [_EPOCH + timedelta(microseconds=ns // 1000) for ns in nanos]
    figures = (
        "total_trades",
        "total_amount",
        "long_trades",
        "long_amount",
        "short_trades",
        "short_amount",
    )
    stamps = table.column("interval_timestamp").to_pylist()
    cols = [table.column(name).to_pylist() for name in figures]
    nested = table.column("exchanges").combine_chunks()
    offsets = nested.offsets.to_pylist()
    flat = pc.list_flatten(nested)
    ex_cols = [pc.struct_field(flat, name).to_pylist() for name in ("exchange", *figures)]
    volumes = [ExchangeVolume(*values) for values in zip(*ex_cols, strict=True)]
    rows: list[LiquidationRow] = []
    for i in range(n):
        rows.append(
            LiquidationRow(
                times[i],
                stamps[i],
                cols[0][i],
                cols[1][i],
                cols[2][i],
                cols[3][i],
                cols[4][i],
                cols[5][i],
                volumes[offsets[i] : offsets[i + 1]],
            )
        )
    return rows


# --- the store --------------------------------------------------------------------------------


class ShardStore:
    """A directory of settled shards at one interval (see the module docstring).

    Args:
        directory: the store's root, created on the first write.
        interval: the bucket width every file here has (``"1h"``, or an ``Interval``).
    """

    def __init__(self, directory: str | os.PathLike[str], interval: Interval | str) -> None:
        self.directory = Path(directory)
        self.interval = parse_interval(interval) if isinstance(interval, str) else interval
        #: Every file this store moved aside, in order (also logged on ``kaiko_liq``).
        self.damaged: list[Damaged] = []
        # Footer checks are remembered by (name, size, mtime, inode): a file is read once.
        self._checked: dict[Path, tuple[tuple[int, int, int], int]] = {}
        self._lock = threading.Lock()
        # Assets whose dead writers' temporary files this store has removed (once each).
        self._swept: set[str] = set()

    def __repr__(self) -> str:
        return f"ShardStore({os.fspath(self.directory)!r}, {self.interval.text!r})"

    # -- reading what is there ---------------------------------------------------------

    def assets(self) -> list[str]:
        """The assets with a directory here, sorted."""
        with _os_errors(self.directory, "read"):
            if not self.directory.is_dir():
                return []
            names = [p.name for p in self.directory.iterdir() if p.is_dir()]
        return sorted(n[len(PARTITION) :] for n in names if n.startswith(PARTITION))

    def partition(self, asset: str) -> Path:
        """``DIR/asset=<asset>``."""
        return self.directory / f"{PARTITION}{validate_asset(asset)}"

    def shards(self, asset: str) -> list[Shard]:
        """The asset's shard files that pass the check, by start; a file that fails it
        is moved aside (:attr:`damaged`) and so no longer covers anything."""
        asset = validate_asset(asset)
        part = self.partition(asset)
        found: list[Shard] = []
        with _os_errors(part, "read"):
            try:
                entries = sorted(os.scandir(part), key=lambda e: e.name)
            except FileNotFoundError:
                return []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue  # temporary, moved aside, or someone's hidden file
            window = parse_shard_filename(name)
            if window is None:
                if name.endswith(".parquet"):
                    self._check_stray(Path(entry.path))
                continue
            path = Path(entry.path)
            try:
                rows = self._check(path, window)
            except _Unreadable as why:
                self.quarantine(path, str(why))
                continue
            except FileNotFoundError:
                continue  # moved aside by another process meanwhile
            found.append(Shard(asset, window[0], window[1], rows, path))
        return found

    def _check(self, path: Path, window: tuple[datetime, datetime]) -> int:
        """The file's row count, from its footer, or :class:`_Unreadable` saying why not.

        Cheap: a stat, and for a file not seen before its footer (a few kB)."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise  # moved aside by another process since the listing: not there
        except OSError as exc:
            raise StorageError.from_os_error(exc, path, doing="read") from exc
        signature = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        with self._lock:
            known = self._checked.get(path)
        if known is not None and known[0] == signature:
            return known[1]
        if stat.st_size == 0:
            raise _Unreadable("empty (0 bytes)")
        pq = import_optional("pyarrow.parquet", "reading a shard store", extra="parquet")
        try:
            meta = pq.read_metadata(path)
            schema = meta.schema.to_arrow_schema()
        except FileNotFoundError:
            raise
        except PermissionError as exc:
            raise StorageError.from_os_error(exc, path, doing="read") from exc
        except (
            OSError,
            ValueError,
            KeyError,
            IndexError,
        ) as exc:  # pyarrow's ArrowInvalid is an OSError/ValueError
            raise _Unreadable(f"not a readable Parquet file ({exc})") from None
        if not schema.equals(arrow_schema("nested", asset=False)):
            raise _Unreadable("not a kaiko-liq shard (its columns differ)")
        self._check_interval(path, meta.metadata)
        rows = int(meta.num_rows)
        bounds = _time_bounds(meta)
        if bounds is not None:
            lo, hi = self.interval.floor(window[0]), self.interval.ceil(window[1])
            first, last = bounds
            if first < lo or last >= hi:
                raise _Unreadable(
                    f"holds rows from {format_time(first)} to {format_time(last)}, outside "
                    "the window its name says"
                )
        with self._lock:
            self._checked[path] = (signature, rows)
        return rows

    def _check_interval(self, path: Path, metadata: dict[bytes, bytes] | None) -> None:
        raw = (metadata or {}).get(_META_KEY)
        if raw is None:
            return  # written before files recorded their grid
        try:
            seconds = int(json.loads(raw)["interval_seconds"])
        except (ValueError, KeyError, TypeError):
            return
        if seconds != self.interval.seconds:
            raise InvalidArgumentError(
                f"{path} holds {_interval_text(seconds)} buckets, not {self.interval.text}: "
                f"{self.directory} is a store at interval {_interval_text(seconds)}; use "
                f"--interval {_interval_text(seconds)} or another directory"
            )

    def _check_stray(self, path: Path) -> None:
        """A ``.parquet`` file not named as a shard (a copy, another program's): every
        reader would read it as data, doubling buckets or crashing, so it is moved aside."""
        self.quarantine(path, "not a shard of this store (its name is not a window)")

    def quarantine(self, path: Path, reason: str) -> Damaged | None:
        """Move ``path`` aside to a dot-name readers skip, and say so (logged, and in
        :attr:`damaged`). ``None`` if it had gone already (another process moved it)."""
        moved = path.with_name(f".{path.name}.damaged-{secrets.token_hex(3)}")
        try:
            os.replace(path, moved)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError.from_os_error(exc, path, doing="move aside damaged") from exc
        damaged = Damaged(path, moved, reason)
        logger.warning("%s; it will be fetched again", damaged)
        with self._lock:
            self.damaged.append(damaged)
            self._checked.pop(path, None)
        return damaged

    def remove_temporary(self, asset: str) -> None:
        """Remove the asset's temporary files left by killed writers: those whose writer
        (the pid in the name) is gone; never a live writer's, in this process or another
        sharing the store (a cache beside a backfill). A name without a pid (an older
        version's) is taken as left over once :data:`_STALE_TEMPORARY` old."""
        part = self.partition(asset)
        now = time.time()
        with _os_errors(part, "clean up"):
            try:
                entries = list(os.scandir(part))
            except FileNotFoundError:
                return
            for entry in entries:
                if not is_temporary(entry.name):
                    continue
                owner = _TEMP_PID_RE.search(entry.name)
                try:
                    if owner is not None:
                        if _alive(int(owner.group(1))):
                            continue
                    elif now - entry.stat().st_mtime < _STALE_TEMPORARY:
                        continue
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue

    def shelf(self, asset: str) -> AssetShelf:
        """The store as one asset's shelf (what the fetch engine reads and fills)."""
        return AssetShelf(self, validate_asset(asset))

    def covered(self, asset: str) -> list[tuple[datetime, datetime]]:
        """The buckets on disk as merged ``[start, end)`` runs on the grid, ascending."""
        return merge_spans(self._spans(self.shards(asset)))

    def _spans(self, shards: Sequence[Shard]) -> list[tuple[datetime, datetime]]:
        return [(self.interval.floor(s.start), self.interval.ceil(s.end)) for s in shards]

    def gaps(self, asset: str, start: TimeLike, end: TimeLike) -> list[tuple[datetime, datetime]]:
        """The parts of ``[start, end)`` whose buckets no file holds yet, ascending.

        On buckets, because the server snaps a window outward to the grid: a file for
        ``[09:00:01, ...)`` holds the 09:00 bucket. The first and last gap keep the
        caller's own edges, so the same query plans the same shards as it would with
        nothing on disk.
        """
        lo, hi = parse_time(start, "start"), parse_time(end, "end")
        return gaps_in(lo, hi, self.interval, self.covered(asset))

    def read_rows(self, asset: str, start: TimeLike, end: TimeLike) -> list[LiquidationRow]:
        """The stored rows of the buckets ``[start, end)`` touches, ascending, exactly as
        written. Raises :class:`NotStoredError` if any of those buckets is not stored."""
        asset = validate_asset(asset)
        lo, hi = parse_time(start, "start"), parse_time(end, "end")
        shards = self.shards(asset)
        missing = gaps_in(lo, hi, self.interval, merge_spans(self._spans(shards)))
        if missing:
            raise NotStoredError(asset, missing)
        want_lo, want_hi = self.interval.floor(lo), self.interval.ceil(hi)
        pq = import_optional("pyarrow.parquet", "reading a shard store", extra="parquet")
        rows: list[LiquidationRow] = []
        cursor = want_lo
        for shard in shards:
            # Each bucket from one file: the earliest-starting one that holds it.
            s_lo, s_hi = self.interval.floor(shard.start), self.interval.ceil(shard.end)
            seg_lo, seg_hi = max(s_lo, cursor), min(s_hi, want_hi)
            if seg_lo >= seg_hi:
                continue
            cursor = seg_hi
            if shard.rows == 0:
                continue
            try:
                table = _read_table(pq, shard.path)
            except (ValueError, KeyError, _DataDamage) as exc:  # footer fine, data pages torn
                self.quarantine(shard.path, f"unreadable data ({exc})")
                raise StorageError(
                    shard.path,
                    f"damaged ({exc}); moved aside, run again to fetch it again",
                    doing="read",
                ) from None
            rows += [r for r in _rows_of(table) if seg_lo <= r.interval_time < seg_hi]
        return rows

    # -- writing -----------------------------------------------------------------------

    def write(
        self, asset: str, start: TimeLike, end: TimeLike, rows: Sequence[LiquidationRow]
    ) -> list[Shard]:
        """Store the rows of ``[start, end)`` (all of that window's rows, ascending), and
        return the files written: one normally; only the parts no file held yet when
        another process wrote some of the window meanwhile; none if it wrote all of it.

        Atomic per file (see the module docstring). Raises :class:`StorageError` when the
        filesystem refuses, :class:`InvalidArgumentError` for rows outside the window.
        """
        asset = validate_asset(asset)
        lo, hi = parse_time(start, "start"), parse_time(end, "end")
        if not lo < hi:
            raise InvalidArgumentError(
                f"start {format_time(lo)} is not before end {format_time(hi)}"
            )
        _check_rows(rows, self.interval.floor(lo), self.interval.ceil(hi))
        pq = import_optional("pyarrow.parquet", "writing a shard store", extra="parquet")
        part = self.partition(asset)
        # Converted before the lock: only the look and the rename are serialised.
        table = _table_of(rows, self.interval)
        with _os_errors(part, "create"):
            part.mkdir(parents=True, exist_ok=True)
        if asset not in self._swept:
            self._swept.add(asset)
            self.remove_temporary(asset)  # a killed cache writer's, left in the partition
        written: list[Shard] = []
        with self._locked(part):
            segments = gaps_in(lo, hi, self.interval, self.covered(asset))
            for seg_lo, seg_hi in segments:
                if (seg_lo, seg_hi) == (lo, hi):
                    part_rows, part_table = rows, table
                else:
                    b_lo, b_hi = self.interval.floor(seg_lo), self.interval.ceil(seg_hi)
                    part_rows = [r for r in rows if b_lo <= r.interval_time < b_hi]
                    part_table = _table_of(part_rows, self.interval)
                path = part / shard_filename(seg_lo, seg_hi)
                with _os_errors(path, "write"), atomic_write(path) as stream:
                    pq.write_table(part_table, stream)
                self._remember(path, len(part_rows))
                written.append(Shard(asset, seg_lo, seg_hi, len(part_rows), path))
        return written

    def revise(
        self, asset: str, start: TimeLike, end: TimeLike, rows: Sequence[LiquidationRow]
    ) -> list[datetime]:
        """Make the stored buckets of ``[start, end)`` hold ``rows`` (that window's rows
        as the server gives them now, ascending), and return the buckets that changed.

        Each file holding a changed bucket is rewritten whole under its own name by one
        atomic rename, so a reader sees it before or after, never half; buckets no file
        holds are left alone (:meth:`write` is for those)."""
        asset = validate_asset(asset)
        lo, hi = parse_time(start, "start"), parse_time(end, "end")
        grid = self.interval
        _check_rows(rows, grid.floor(lo), grid.ceil(hi))
        pq = import_optional("pyarrow.parquet", "revising a shard store", extra="parquet")
        fresh = {r.interval_time: r for r in rows}
        changed: list[datetime] = []
        part = self.partition(asset)
        with self._locked(part):
            for shard in self.shards(asset):
                s_lo, s_hi = grid.floor(shard.start), grid.ceil(shard.end)
                seg_lo, seg_hi = max(s_lo, grid.floor(lo)), min(s_hi, grid.ceil(hi))
                if seg_lo >= seg_hi:
                    continue
                old = _rows_of(_read_table(pq, shard.path)) if shard.rows else []
                inside = {r.interval_time: r for r in old if seg_lo <= r.interval_time < seg_hi}
                new = {t: r for t, r in fresh.items() if seg_lo <= t < seg_hi}
                differ = sorted(
                    t for t in inside.keys() | new.keys() if inside.get(t) != new.get(t)
                )
                if not differ:
                    continue
                kept = [r for r in old if not seg_lo <= r.interval_time < seg_hi]
                merged = sorted([*kept, *new.values()], key=lambda r: r.interval_time)
                with _os_errors(shard.path, "write"), atomic_write(shard.path) as stream:
                    pq.write_table(_table_of(merged, grid), stream)
                self._remember(shard.path, len(merged))
                changed += differ
        return changed

    def _remember(self, path: Path, rows: int) -> None:
        """A file we just wrote needs no footer read to be trusted by this store."""
        try:
            stat = path.stat()
        except OSError:
            return
        with self._lock:
            self._checked[path] = ((stat.st_size, stat.st_mtime_ns, stat.st_ino), rows)

    @contextmanager
    def _locked(self, part: Path) -> Iterator[None]:
        """An exclusive lock on the asset's directory itself (no lock file for readers
        to trip over), held across processes; unlocked where flock does not exist."""
        try:
            import fcntl
        except ImportError:  # not POSIX: files never overlap within one process still
            with self._lock:
                yield
            return
        with _os_errors(part, "lock"):
            fd = os.open(part, os.O_RDONLY)
        try:
            with _os_errors(part, "lock"):
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


@dataclass(frozen=True, slots=True)
class AssetShelf:
    """One asset's part of a :class:`ShardStore` (the engine's :class:`~kaiko_liq.engine.Shelf`)."""

    store: ShardStore
    asset: str

    def covered(self) -> list[tuple[datetime, datetime]]:
        return self.store.covered(self.asset)

    def read_rows(self, start: datetime, end: datetime) -> list[LiquidationRow]:
        return self.store.read_rows(self.asset, start, end)

    def write(self, start: datetime, end: datetime, rows: list[LiquidationRow]) -> list[Shard]:
        return self.store.write(self.asset, start, end, rows)

    def revise(self, start: datetime, end: datetime, rows: list[LiquidationRow]) -> list[datetime]:
        return self.store.revise(self.asset, start, end, rows)


def _check_rows(rows: Sequence[LiquidationRow], lo: datetime, hi: datetime) -> None:
    previous: datetime | None = None
    for row in rows:
        t = row.interval_time
        if not lo <= t < hi or (previous is not None and t <= previous):
            raise InvalidArgumentError(
                f"rows to store must be ascending, each once, inside [{format_time(lo)}, "
                f"{format_time(hi)}); got {format_time(t)}"
                + (f" after {format_time(previous)}" if previous is not None else "")
            )
        previous = t


def _time_bounds(meta: Any) -> tuple[datetime, datetime] | None:
    """The first and last ``interval_time`` from the footer's statistics, if it has them."""
    if meta.num_rows == 0:
        return None
    index = meta.schema.names.index("interval_time")
    lows, highs = [], []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(index).statistics
        if stats is None or not stats.has_min_max:
            return None
        lows.append(stats.min)
        highs.append(stats.max)
    return _as_datetime(min(lows)), _as_datetime(max(highs))


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, int):  # some pyarrow versions give the raw nanoseconds
        return _EPOCH + timedelta(microseconds=value // 1000)
    if hasattr(value, "to_pydatetime"):  # a pandas Timestamp
        value = value.to_pydatetime()
    result: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return result.astimezone(UTC)


def _interval_text(seconds: int) -> str:
    return f"{seconds // 86_400}d" if seconds % 86_400 == 0 else f"{seconds // 3600}h"


# --- the cache --------------------------------------------------------------------------------

_SAFE_HOST = re.compile(r"[a-z0-9.-]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}


_NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def origin_slug(base_url: str) -> str:
    """``https_us.market-api.kaiko.io_443``: a directory name for a URL's origin.

    Hosts outside ``[a-z0-9.-]`` (IPv6, say) are spelled safely with a short hash of the
    origin appended, so two origins never share a name."""
    parts = urlsplit(base_url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        raise InvalidArgumentError(f"base_url {base_url!r} has an invalid port") from None
    if not scheme or not host:
        raise InvalidArgumentError(f"base_url {base_url!r} has no scheme or host")
    if _SAFE_HOST.fullmatch(host) and not host.startswith("."):
        return f"{scheme}_{host}_{port}"
    digest = hashlib.sha256(f"{scheme}://{host}:{port}".encode()).hexdigest()[:8]
    safe = re.sub(r"[^a-z0-9.-]+", "-", host).strip(".-") or "host"
    return f"{scheme}_{safe}_{port}-{digest}"


def server_slug(base_url: str) -> str:
    """:func:`origin_slug`, plus a short hash of the path prefix when there is one: two
    base URLs on one origin (``http://proxy/a``, ``http://proxy/b``) are two servers."""
    prefix = urlsplit(base_url).path.rstrip("/")
    slug = origin_slug(base_url)
    if not prefix:
        return slug
    return f"{slug}-p{hashlib.sha256(prefix.encode()).hexdigest()[:10]}"


#: The dataset record's name and format (written by :mod:`kaiko_liq.backfill`, and by
#: the cache for the same layout).
MANIFEST_NAME = "_manifest.json"
MANIFEST_FORMAT = "kaiko-liq backfill"
MANIFEST_VERSION = 1


def check_store_dir(directory: Path, *, interval: Interval, server: str | None) -> bool:
    """Refuse (:class:`InvalidArgumentError`, nothing touched) a directory that is not a
    kaiko-liq store, or is one for another interval or server; ``True`` when it holds
    our manifest, ``False`` when it is missing or empty of anything of ours.

    Not ours: a ``_manifest.json`` that reads as JSON but is not kaiko-liq's, or
    Parquet files outside the ``asset=`` partitions (another program's data)."""
    path = directory / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw = None
    except NotADirectoryError:
        return False  # a file, or under one: creating it says so
    except OSError as exc:
        raise StorageError.from_os_error(exc, path, doing="read") from exc
    if raw is not None:
        try:
            loose = json.loads(raw)
        except ValueError:
            loose = None  # ours, torn: rebuilt from the files
        if loose is not None:
            # Ours: our format, or an older or torn record of ours (an interval, no format).
            ours = isinstance(loose, dict) and (
                loose.get("format") == MANIFEST_FORMAT
                or ("format" not in loose and "interval" in loose)
            )
            if not ours:
                shown = loose.get("format") if isinstance(loose, dict) else None
                raise InvalidArgumentError(
                    f"{path} is not a kaiko-liq manifest (format {shown!r}); left it "
                    "untouched: use another directory"
                )
            recorded = loose.get("server")
            if server is not None and isinstance(recorded, str) and recorded != server:
                raise InvalidArgumentError(
                    f"{directory} holds data of {recorded}, not {server}: one store holds "
                    "one server's data; use another directory"
                )
    with _os_errors(directory, "read"):
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            entries = []
        for entry in entries:
            if entry.name.startswith((".", "_")):
                continue
            foreign = entry.name.endswith(".parquet") or (
                entry.is_dir()
                and not entry.name.startswith(PARTITION)
                and any(p.suffix == ".parquet" for p in Path(entry.path).rglob("*.parquet"))
            )
            if foreign:
                raise InvalidArgumentError(
                    f"{directory} holds Parquet files kaiko-liq did not write "
                    f"({entry.name}); left it untouched: use another directory"
                )
    return raw is not None


def write_identity(directory: Path, *, interval: Interval, server: str) -> None:
    """Give a new store root its manifest (interval and server), as a backfill has."""
    body = json.dumps(
        {
            "interval": interval.text,
            "server": server,
            "shards": {},
            "runs": [],
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
        },
        indent=2,
    )
    path = directory / MANIFEST_NAME
    with _os_errors(path, "write"):
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as stream:
            stream.write(body.encode() + b"\n")


def cache_store(
    cache_dir: str | os.PathLike[str],
    base_url: str,
    interval: Interval | str,
    *,
    namespace: str | None = None,
) -> ShardStore:
    """The cache's store for one server and interval. A ``cache_dir`` that is itself a
    dataset (a backfill directory: it has a ``_manifest.json``) is used as it is, its
    manifest and its files, when its interval and server match (else refused); any other
    is a folder of stores, ``cache_dir/<server>/<interval>/``, each laid out as a
    dataset, so one server's data never mixes with another's (``<server>`` is the whole
    base URL: scheme, host, port and path prefix), nor one granularity with another
    (``"24h"`` and ``"1d"`` share one). ``namespace`` names the server's folder instead
    (the built-in emulator, whose port changes from run to run)."""
    grid = parse_interval(interval) if isinstance(interval, str) else interval
    if namespace is not None and _NAMESPACE_RE.fullmatch(namespace) is None:
        raise InvalidArgumentError(
            f"cache namespace {namespace!r} must be letters, digits, '.', '_' or '-'"
        )
    top = Path(cache_dir)
    server = base_url if namespace is None else f"namespace:{namespace}"
    if (top / MANIFEST_NAME).exists():
        check_store_dir(top, interval=grid, server=server)
        _check_dataset_interval(top, grid)
        return ShardStore(top, grid)
    if ShardStore(top, grid).assets():
        raise InvalidArgumentError(
            f"{top} holds asset= partitions but no {MANIFEST_NAME}: not a cache nor a "
            "dataset of kaiko-liq's; use another directory"
        )
    folder = server_slug(base_url) if namespace is None else f"ns_{namespace}"
    root = top / folder / _interval_text(grid.seconds)
    if not check_store_dir(root, interval=grid, server=server):
        write_identity(root, interval=grid, server=server)
    return ShardStore(root, grid)


def _check_dataset_interval(directory: Path, interval: Interval) -> None:
    try:
        raw = json.loads((directory / MANIFEST_NAME).read_bytes())
    except ValueError:
        return  # torn: the files say what they hold
    text = raw.get("interval") if isinstance(raw, dict) else None
    try:
        recorded = parse_interval(text) if isinstance(text, str) else None
    except InvalidArgumentError:
        recorded = None
    if recorded is not None and recorded.seconds != interval.seconds:
        raise InvalidArgumentError(
            f"{directory} is a dataset at interval {text}, not {interval.text}; use "
            f"--interval {text} or another directory"
        )


# --- reading a whole directory as one table -------------------------------------------------


def open_dataset(out_dir: str | os.PathLike[str]) -> pads.Dataset:
    """The backfill at ``out_dir`` as a ``pyarrow.dataset.Dataset``, ``asset`` a string.

    Declaring the partition type matters: left to inference, an asset named ``1000``
    would come back as an integer.
    """
    pa = import_optional("pyarrow", "open_dataset", extra="parquet")
    ds = import_optional("pyarrow.dataset", "open_dataset", extra="parquet")
    schema = arrow_schema("nested", asset=False).append(pa.field("asset", pa.string()))
    partitioning = ds.partitioning(pa.schema([("asset", pa.string())]), flavor="hive")
    return ds.dataset(
        os.fspath(out_dir), format="parquet", partitioning=partitioning, schema=schema
    )


@dataclass(frozen=True, slots=True)
class AssetOnDisk:
    """One asset of a backfill directory, as a reader sees it."""

    asset: str
    files: int
    rows: int
    first: datetime | None  # the earliest interval_time; None when there are no rows
    last: datetime | None


def describe_backfill(
    out_dir: str | os.PathLike[str], *, assets: Sequence[str] | None = None
) -> list[AssetOnDisk]:
    """What the backfill at ``out_dir`` holds per asset: files, rows, first and last
    ``interval_time``. Sorted by asset; with ``assets``, just those, in that order (an
    asset with nothing on disk has 0 files).

    Reads Parquet footers only (row counts and the ``interval_time`` statistics), not the
    data: a backfill's closing summary should not cost a second pass over what it wrote.
    """
    pq = import_optional("pyarrow.parquet", "describe_backfill", extra="parquet")
    root = Path(out_dir)
    found: dict[str, AssetOnDisk] = {}
    with _os_errors(root, "read"):
        parts = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PARTITION))
    for part in parts:
        asset = part.name.removeprefix(PARTITION)
        files = rows = 0
        first: int | None = None
        last: int | None = None
        for path in sorted(part.iterdir()):
            if path.name.startswith(".") or parse_shard_filename(path.name) is None:
                continue
            with _os_errors(path, "read"):
                meta = pq.read_metadata(path)
            files += 1
            rows += meta.num_rows
            column = meta.schema.names.index("interval_time")
            for lo, hi in _time_span(pq, path, meta, column):
                first = lo if first is None else min(first, lo)
                last = hi if last is None else max(last, hi)
        found[asset] = AssetOnDisk(asset, files, rows, _from_ns(first), _from_ns(last))
    if assets is None:  # every asset with a file; an empty partition holds nothing
        wanted = sorted(a for a, d in found.items() if d.files)
    else:
        wanted = [validate_asset(a) for a in assets]
    return [found.get(a) or AssetOnDisk(a, 0, 0, None, None) for a in dict.fromkeys(wanted)]


def _time_span(pq: Any, path: Path, meta: Any, column: int) -> list[tuple[int, int]]:
    """``interval_time``'s (min, max) in ns per row group, from the footer's statistics;
    from the column itself for a file written without them."""
    spans: list[tuple[int, int]] = []
    for group in range(meta.num_row_groups):
        chunk = meta.row_group(group)
        if chunk.num_rows == 0:
            continue
        stats = chunk.column(column).statistics
        if stats is None or not stats.has_min_max:
            times = pq.read_table(path, columns=["interval_time"])["interval_time"]
            values = [v.value for v in times.cast("int64")]
            return [(min(values), max(values))] if values else []
        # The raw int64 nanoseconds: no pandas, no timezone guessing.
        spans.append((int(stats.min_raw), int(stats.max_raw)))
    return spans


def _from_ns(ns: int | None) -> datetime | None:
    if ns is None:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


def _refuse_overlaps(root: Path) -> None:
    """Raise if two files of one partition hold rows of the same bucket: every reader
    would see those buckets twice. From the footers' statistics only."""
    pq = import_optional("pyarrow.parquet", "read_backfill", extra="parquet")
    with _os_errors(root, "read"):
        parts = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PARTITION))
    for part in parts:
        spans: list[tuple[int, int, str]] = []
        with _os_errors(part, "read"):
            paths = sorted(p for p in part.iterdir() if not p.name.startswith("."))
        for path in paths:
            if path.suffix != ".parquet":
                continue
            with _os_errors(path, "read"):
                meta = pq.read_metadata(path)
            column = meta.schema.names.index("interval_time")
            for lo, hi in _time_span(pq, path, meta, column):
                spans.append((lo, hi, path.name))
        spans.sort()
        for (_, a_hi, a), (b_lo, _, b) in itertools.pairwise(spans):
            if b_lo <= a_hi and a != b:
                raise InvalidArgumentError(
                    f"{part}: {a} and {b} hold the same buckets, so every reader would see "
                    "them twice; move one aside (a backfill or fetch --cache run does)"
                )


def read_backfill(
    out_dir: str | os.PathLike[str],
    *,
    shape: Shape = "totals",
    assets: Sequence[str] | None = None,
) -> pa.Table:
    """The backfill at ``out_dir`` as one table, sorted by asset then time.

    ``shape`` as in :mod:`kaiko_liq.export`: ``"totals"``, ``"exchanges"`` (flattened) or
    ``"nested"`` (as stored). ``assets`` keeps only those assets.
    """
    if shape not in SHAPES:
        raise InvalidArgumentError(f"shape {shape!r} is not one of {', '.join(map(repr, SHAPES))}")
    ds = import_optional("pyarrow.dataset", "read_backfill", extra="parquet")
    _refuse_overlaps(Path(out_dir))
    dataset = open_dataset(out_dir)
    where: Any = None
    if assets is not None:
        where = ds.field("asset").isin([validate_asset(a) for a in assets])
    table = dataset.to_table(filter=where)
    columns = ["asset", *(name for name in table.column_names if name != "asset")]
    table = table.select(columns).sort_by([("asset", "ascending"), ("interval_time", "ascending")])
    if shape == "totals":
        return table.drop_columns(["exchanges"])
    if shape == "exchanges":
        return flatten_exchanges(table)
    return table
