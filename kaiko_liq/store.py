"""A store of settled shards for one route at one grid: the one home of how a cache and
a backfill dataset keep rows (a backfill directory is a cache with a manifest).

Layout (names: :mod:`kaiko_liq.layout`), hive-style, one Parquet file per fetched
window, under a local directory or an ``s3://`` prefix (:mod:`kaiko_liq.fs`)::

    ROOT/
      asset=btc/
        20250108T000000Z_20250217T000000Z.parquet  the rows of [2025-01-08, 2025-02-17)
      exchange=binc/instrument_class=future/instrument=btc-usd/
        20250108T000000Z_20250109T000000Z.parquet  the events of that day

A file holds its window's rows in the route's stored shape (``route.table.stored``,
without the key columns, which the partition names), ascending by the route's time, so a
window is stored whole or not at all. :meth:`ShardStore.read_rows` gives back exactly the
rows written. A window with no rows is a zero-row file: "fetched, nothing there" stays
distinct from "not fetched".

Only settled rows belong here (:mod:`kaiko_liq.settle`): deciding what is settled is the
caller's job; the store keeps whatever it is given.

What counts as stored
    A file under its final name whose footer reads, whose columns are the stored shape's
    and whose rows lie inside the window its name says. Final names appear only whole
    (:meth:`~kaiko_liq.fs.Storage.write_atomic`: a renamed temporary file locally, one
    PUT on S3). A final-named file failing the check (empty, torn, truncated, another
    program's) and a ``.parquet`` not named as a window (a stray copy) are moved aside to
    ``.<name>.damaged-<hex>``, which every reader skips, with a warning on the
    ``kaiko_liq`` logger: the window becomes a gap, fetched again.

Two writers, one store
    :meth:`ShardStore.write` and :meth:`~ShardStore.revise` hold the partition's writer
    lock (``<partition>/.lock``: ``flock`` locally, a conditional-write lock object on
    S3) while they look at what is there and write. A window another writer stored
    meanwhile is not written again: only the parts no file covers yet are, each under its
    own name. So files never overlap and no reader sees a row twice. What a write saw
    and wrote is trusted by the next one without listing again while the lock's stamp
    (:attr:`~kaiko_liq.fs.WriterLock.stamp`: the last writer's token and the folder's
    state) is unchanged; an S3 lock has none, so each write there lists again. Should a partition
    hold overlapping files anyway (copied by hand), :meth:`~ShardStore.read_rows` takes
    each instant from one file only, the earliest-starting one.

The methods block (storage I/O, Parquet); call them from a worker thread in async code.
One store may be used from several threads at once.

Example::

    store = ShardStore("liq", TOKEN, parse_interval("1h"))
    btc = Token("btc", parse_interval("1h"))
    for lo, hi in store.gaps(btc, start, end):
        store.write(btc, lo, hi, rows_of_that_window)  # settled windows only
    rows = store.read_rows(btc, start, end)
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from .errors import InvalidArgumentError, KaikoLiqError
from .fs import Entry, Storage, StorageError, WriterLock, open_storage
from .layout import (
    LOCK_NAME,
    aside_name,
    is_hidden,
    is_temporary,
    parse_shard_filename,
    shard_filename,
    split_key,
    stale_temporary,
)
from .optional import import_optional
from .query import Interval, format_time, interval_name
from .routes import Grid, Route
from .spans import gaps_in, merge_spans
from .tables import footer_time_bounds, rows_from_arrow, schema, to_arrow

__all__ = [
    "Damaged",
    "NotStoredError",
    "Shard",
    "ShardStore",
    "StorageError",
    "TargetShelf",
    "check_rows",
    "grid_text",
]

logger = logging.getLogger("kaiko_liq")

Target = TypeVar("Target")
Row = TypeVar("Row")

#: The footer's key-value entry recording the route and grid a file was written for, so
#: that a store whose manifest is lost still knows what it holds.
_META_KEY = b"kaiko_liq"
#: How long a write waits for another writer of the same partition (a concurrent cache
#: or backfill) before it gives up.
_WRITE_LOCK_WAIT = 30.0


class NotStoredError(KaikoLiqError, LookupError):
    """:meth:`ShardStore.read_rows` was asked for a span no file holds (``gaps``)."""

    def __init__(self, label: str, gaps: Sequence[tuple[datetime, datetime]]) -> None:
        self.label = label
        self.gaps = list(gaps)
        shown = ", ".join(f"[{format_time(a)}, {format_time(b)})" for a, b in self.gaps[:3])
        more = f" and {len(self.gaps) - 3} more" if len(self.gaps) > 3 else ""
        super().__init__(
            f"{label}: not in the store: {shown}{more}; fetch and write them first "
            "(ShardStore.gaps says what is missing)"
        )


@dataclass(frozen=True, slots=True)
class Shard:
    """One stored file that passed the check: its partition, its window (as named), its
    row count, its key under the store's root (the manifest's ``file``) and its path or
    URL."""

    partition: str
    start: datetime
    end: datetime
    rows: int
    key: str
    url: str


@dataclass(frozen=True, slots=True)
class Damaged:
    """A file that failed the check and was moved aside (``moved_to``), and why."""

    url: str
    moved_to: str
    reason: str

    def __str__(self) -> str:
        return f"moved {self.url} aside to {split_key(self.moved_to)[1]}: {self.reason}"


class _Unreadable(Exception):
    """Why a file fails the check (internal: it becomes a :class:`Damaged`)."""


def grid_text(grid: Grid) -> str | None:
    """A bucketed grid's interval as a manifest records it (``"1h"``, ``"1d"``), or
    ``None`` for a grid of instants (events)."""
    return grid.name if isinstance(grid, Interval) else None


def refuse_other_interval(where: str, seconds: int | None, grid: Grid, *, what: str) -> None:
    """Refuse a store whose data is at another interval than ``grid`` (``seconds``, as
    its manifest or a file records it; ``None``: nothing recorded). ``what`` says which
    record: ``"a backfill at interval {}"``, ``"{} buckets"``. The one home of this rule:
    a store holds one interval."""
    if seconds is None or not isinstance(grid, Interval) or seconds == grid.seconds:
        return
    theirs = interval_name(seconds)
    raise InvalidArgumentError(
        f"{where} holds {what.format(theirs)}, not {grid.name} (a store is at one "
        f"interval); use --interval {theirs} or another directory"
    )


def check_rows(
    route: Route[Any, Row], grid: Grid, rows: Sequence[Row], lo: datetime, hi: datetime
) -> None:
    """Refuse rows to store that are not ascending inside ``[lo, hi)``: on a grid of
    buckets each instant once, events ties allowed (the one home of this check)."""
    strict = isinstance(grid, Interval)
    previous: datetime | None = None
    for row in rows:
        t = route.time_of(row)
        if not lo <= t < hi or (
            previous is not None and (t <= previous if strict else t < previous)
        ):
            raise InvalidArgumentError(
                f"rows to store must be ascending{', each once' if strict else ''}, inside "
                f"[{format_time(lo)}, {format_time(hi)}); got {format_time(t)}"
                + (f" after {format_time(previous)}" if previous is not None else "")
            )
        previous = t


class ShardStore(Generic[Target, Row]):
    """A store of one route's settled shards on one grid (see the module docstring).

    Args:
        location: the root: a local directory (created on the first write) or
            ``s3://bucket/prefix``.
        route: what the rows are (its table is the file format, its time the order).
        grid: where windows snap (a token route's interval; events' milliseconds).
        storage_options: S3 settings (:data:`kaiko_liq.fs.STORAGE_OPTIONS`); the AWS
            environment otherwise.
        storage: an opened :class:`~kaiko_liq.fs.Storage` instead of ``location``.
        sync_each: make each write durable (its folder entry too) before it returns;
            ``False`` leaves folder entries to :meth:`sync`, once for many writes (a
            backfill syncs before its manifest lists them). A file's bytes are synced
            before it appears either way, so a crash never leaves a torn shard.
    """

    def __init__(
        self,
        location: str | os.PathLike[str],
        route: Route[Target, Row],
        grid: Grid,
        *,
        storage_options: Mapping[str, Any] | None = None,
        storage: Storage | None = None,
        sync_each: bool = True,
    ) -> None:
        self.storage = storage or open_storage(location, storage_options=storage_options)
        self.sync_each = sync_each
        #: The root as a path or URL, for messages.
        self.location = self.storage.url
        self.route = route
        self.grid = grid
        self.spec = route.table
        #: Every file this store moved aside, in order (also logged on ``kaiko_liq``).
        self.damaged: list[Damaged] = []
        # Checks are remembered by key and (size, version): a file is read once.
        self._checked: dict[str, tuple[tuple[int, str], int]] = {}
        self._lock = threading.Lock()
        self._writers: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        # Partitions whose dead writers' temporary files this store has removed.
        self._swept: set[str] = set()
        # What a write saw and wrote in each partition, and the lock's stamp then: the next
        # write trusts it without listing while the stamp says nobody changed the folder.
        self._views: dict[str, tuple[str, list[Shard]]] = {}
        # Bumped when this store moves a file aside: a view taken before is not kept.
        self._moved: defaultdict[str, int] = defaultdict(int)
        # Partitions written with their folder entry not yet synced (``sync_each=False``).
        self._unsynced: set[str] = set()
        self._meta = json.dumps({"route": route.name, **_grid_meta(grid)}, sort_keys=True).encode()

    def __repr__(self) -> str:
        return f"ShardStore({self.location!r}, {self.route.name!r}, {grid_text(self.grid)!r})"

    # -- what is there ----------------------------------------------------------------

    def partitions(self) -> list[str]:
        """Every partition holding a shard file or a stray ``.parquet`` of this route's
        layout (``asset=btc``, ``exchange=binc/instrument_class=future/instrument=x``),
        sorted."""
        first = f"{self.spec.keys[0]}="
        found: set[str] = set()
        with _storage_errors(self.location, "read"):
            entries = self.storage.list(first)
        for entry in entries:
            folder, name = split_key(entry.key)
            if folder and not is_hidden(entry.key) and name.endswith(".parquet"):
                found.add(folder)
        return sorted(found)

    def shards(self, target: Target) -> list[Shard]:
        """``target``'s files that pass the check, by start; one that fails it is moved
        aside (:attr:`damaged`) and so no longer covers anything."""
        return self.shards_in(self.route.partition(target))

    def shards_in(self, partition: str) -> list[Shard]:
        """:meth:`shards` of a partition path (a backfill's sweep over all of them)."""
        with _storage_errors(self.location, "read"):
            entries = self.storage.list(f"{partition}/")
        found: list[Shard] = []
        if partition not in self._swept:
            self.remove_temporary(partition, entries)
        for entry in entries:
            folder, name = split_key(entry.key)
            if folder != partition or name.startswith("."):
                continue  # deeper (another partition's), temporary, moved aside, hidden
            window = parse_shard_filename(name)
            if window is None:
                if name.endswith(".parquet"):
                    self.quarantine(
                        entry.key, "not a shard of this store (its name is not a window)"
                    )
                continue
            try:
                rows = self._check(entry.key, (entry.size, entry.version), window)
            except _Unreadable as why:
                self.quarantine(entry.key, str(why))
                continue
            except FileNotFoundError:
                continue  # moved aside by another process since the listing
            found.append(
                Shard(
                    partition, window[0], window[1], rows, entry.key, self.storage.url_of(entry.key)
                )
            )
        return found

    def remove_temporary(self, partition: str, entries: Sequence[Entry] | None = None) -> None:
        """Remove the partition's temporary files left by killed writers: those whose
        writer (the pid in the name) is gone; never a live writer's, in this process or
        another sharing the store (a cache beside a backfill). Once per partition and
        store, on its first listing (an object store has none: its writes are one PUT)."""
        self._swept.add(partition)
        if entries is None:
            with _storage_errors(self.location, "read"):
                entries = self.storage.list(f"{partition}/")
        for entry in entries:
            folder, name = split_key(entry.key)
            if folder == partition and is_temporary(name) and stale_temporary(name, entry.modified):
                with _storage_errors(self.storage.url_of(entry.key), "clean up"):
                    self.storage.delete(entry.key)

    def _check(
        self, key: str, signature: tuple[int, str], window: tuple[datetime, datetime]
    ) -> int:
        """The file's row count, or :class:`_Unreadable` saying why it cannot be trusted."""
        with self._lock:
            known = self._checked.get(key)
        if known is not None and known[0] == signature:
            return known[1]
        if signature[0] == 0:
            raise _Unreadable("empty (0 bytes)")
        pq = import_optional("pyarrow.parquet", "reading a shard store", extra="parquet")
        try:
            handle = self.storage.open_read(key)  # a local file: only its footer is read
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageError.from_os_error(exc, self.storage.url_of(key), doing="read") from exc
        try:
            with handle:
                meta = pq.read_metadata(handle)
            file_schema = meta.schema.to_arrow_schema()
        except (OSError, ValueError, KeyError, IndexError) as exc:  # ArrowInvalid among them
            raise _Unreadable(f"not a readable Parquet file ({exc})") from None
        if not file_schema.equals(schema(self.spec, self.spec.stored, keys=False)):
            raise _Unreadable("not a kaiko-liq shard of this kind (its columns differ)")
        self._check_meta(key, meta.metadata)
        rows = int(meta.num_rows)
        bounds = footer_time_bounds(meta, self.spec.time)
        if bounds is not None:
            lo, hi = self.grid.floor(window[0]), self.grid.ceil(window[1])
            first, last = bounds
            if first < lo or last >= hi:
                raise _Unreadable(
                    f"holds rows from {format_time(first)} to {format_time(last)}, outside "
                    "the window its name says"
                )
        with self._lock:
            self._checked[key] = (signature, rows)
        return rows

    def _check_meta(self, key: str, metadata: dict[bytes, bytes] | None) -> None:
        raw = (metadata or {}).get(_META_KEY)
        if raw is None:
            return  # written before files recorded what they hold
        try:
            recorded = json.loads(raw)
            route = recorded.get("route", "token")
            seconds = recorded.get("interval_seconds")
        except (ValueError, AttributeError):
            return
        if route != self.route.name:
            raise InvalidArgumentError(
                f"{self.storage.url_of(key)} holds {route} rows, not {self.route.name}: "
                f"{self.location} is another kind of store; use another directory"
            )
        recorded = seconds if isinstance(seconds, int) else None
        refuse_other_interval(self.storage.url_of(key), recorded, self.grid, what="{} buckets")

    def quarantine(self, key: str, reason: str) -> Damaged | None:
        """Move ``key`` aside to a dot-name readers skip, and say so (logged, and in
        :attr:`damaged`). ``None`` if it had gone already (another process moved it)."""
        moved = aside_name(key)
        url = self.storage.url_of(key)
        with _storage_errors(url, "move aside damaged"):
            if not self.storage.move_aside(key, moved):
                return None
        damaged = Damaged(url, self.storage.url_of(moved), reason)
        logger.warning("%s; it will be fetched again", damaged)
        partition = split_key(key)[0]
        with self._lock:
            self.damaged.append(damaged)
            self._checked.pop(key, None)
            self._views.pop(partition, None)
            self._moved[partition] += 1
        return damaged

    def covered(self, target: Target) -> list[tuple[datetime, datetime]]:
        """The stored spans as merged ``[start, end)`` runs on the grid, ascending."""
        return merge_spans(self._spans(self.shards(target)))

    def _spans(self, shards: Sequence[Shard]) -> list[tuple[datetime, datetime]]:
        return [(self.grid.floor(s.start), self.grid.ceil(s.end)) for s in shards]

    def gaps(
        self, target: Target, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime]]:
        """The parts of ``[start, end)`` no file holds yet, ascending. On the grid,
        because the server snaps a window outward to it; the first and last gap keep the
        caller's own edges, so a query plans the same shards as with nothing stored."""
        return gaps_in(start, end, self.grid, self.covered(target))

    def read_rows(self, target: Target, start: datetime, end: datetime) -> list[Row]:
        """The stored rows of the span ``[start, end)`` touches (snapped to the grid),
        ascending, exactly as written. Raises :class:`NotStoredError` if part of it is
        not stored, :class:`StorageError` if a file turns out damaged (moved aside)."""
        shards = self.shards(target)
        missing = gaps_in(start, end, self.grid, merge_spans(self._spans(shards)))
        if missing:
            raise NotStoredError(self.route.label(target), missing)
        want_lo, want_hi = self.grid.floor(start), self.grid.ceil(end)
        time_of = self.route.time_of
        rows: list[Row] = []
        cursor = want_lo
        for shard in shards:
            # Each instant from one file: the earliest-starting one that holds it.
            s_lo, s_hi = self.grid.floor(shard.start), self.grid.ceil(shard.end)
            seg_lo, seg_hi = max(s_lo, cursor), min(s_hi, want_hi)
            if seg_lo >= seg_hi:
                continue
            cursor = seg_hi
            if shard.rows == 0:
                continue
            rows += [r for r in self._read(shard) if seg_lo <= time_of(r) < seg_hi]
        return rows

    def _read(self, shard: Shard) -> list[Row]:
        """A file's rows; a file whose data turns out torn is moved aside and raised as a
        :class:`StorageError` (the caller fetches it again)."""
        pa = import_optional("pyarrow", "reading a shard store", extra="parquet")
        pq = import_optional("pyarrow.parquet", "reading a shard store", extra="parquet")
        try:
            data = self._read_bytes(shard.key)
        except FileNotFoundError:
            raise StorageError(
                shard.url, "gone since it was listed (moved aside by another process)", doing="read"
            ) from None
        try:
            table = pq.read_table(pa.BufferReader(data))
            return rows_from_arrow(self.spec, table)
        except (OSError, ValueError, KeyError, IndexError) as exc:  # footer fine, data torn
            self.quarantine(shard.key, f"unreadable data ({exc})")
            raise StorageError(
                shard.url,
                f"damaged ({exc}); moved aside, run again to fetch it again",
                doing="read",
            ) from None

    def _read_bytes(self, key: str) -> bytes:
        try:
            return self.storage.read_bytes(key)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageError.from_os_error(exc, self.storage.url_of(key), doing="read") from exc

    # -- writing ----------------------------------------------------------------------

    def write(
        self, target: Target, start: datetime, end: datetime, rows: Sequence[Row]
    ) -> list[Shard]:
        """Store the rows of ``[start, end)`` (all of that window's rows, ascending), and
        return the files written: one normally; only the parts no file held yet when
        another writer stored some of the window meanwhile; none if it stored all of it.

        Each file whole or not at all. Raises :class:`StorageError` when the storage
        refuses, :class:`InvalidArgumentError` for rows out of order or window."""
        if not start < end:
            raise InvalidArgumentError(
                f"start {format_time(start)} is not before end {format_time(end)}"
            )
        grid, time_of = self.grid, self.route.time_of
        check_rows(self.route, grid, rows, grid.floor(start), grid.ceil(end))
        partition = self.route.partition(target)
        body = self._encode(rows)  # before the lock: only the look and the write wait
        written: list[Shard] = []
        with self._writing(partition) as held:
            moved = self._moved[partition]
            stored = self._seen(partition, held)
            covered = merge_spans(self._spans(stored))
            for seg_lo, seg_hi in gaps_in(start, end, grid, covered):
                if (seg_lo, seg_hi) == (start, end):
                    part_rows, part_body = list(rows), body
                else:
                    b_lo, b_hi = grid.floor(seg_lo), grid.ceil(seg_hi)
                    part_rows = [r for r in rows if b_lo <= time_of(r) < b_hi]
                    part_body = self._encode(part_rows)
                key = f"{partition}/{shard_filename(seg_lo, seg_hi)}"
                self._put(key, part_body)
                url = self.storage.url_of(key)
                written.append(Shard(partition, seg_lo, seg_hi, len(part_rows), key, url))
            if written:
                held.mark()
            with self._lock:
                if held.stamp is not None and self._moved[partition] == moved:
                    view = sorted([*stored, *written], key=lambda s: (s.start, s.key))
                    self._views[partition] = (held.stamp, view)
        return written

    def _seen(self, partition: str, held: WriterLock) -> list[Shard]:
        """The partition's checked shards as this store last saw and wrote them, while the
        lock's stamp says nobody changed the folder since; else listed afresh."""
        with self._lock:
            known = self._views.pop(partition, None)  # kept again only if the write ends well
        if known is not None and held.stamp is not None and known[0] == held.stamp:
            return known[1]
        return self.shards_in(partition)

    def revise(
        self, target: Target, start: datetime, end: datetime, rows: Sequence[Row]
    ) -> list[datetime]:
        """Make the stored span ``[start, end)`` hold ``rows`` (its rows as the server
        gives them now, ascending), and return the instants whose rows changed.

        Each file holding a changed instant is rewritten whole under its own name (one
        atomic write), so a reader sees it before or after, never half; spans no file
        holds are left alone (:meth:`write` is for those)."""
        grid, time_of = self.grid, self.route.time_of
        lo, hi = grid.floor(start), grid.ceil(end)
        check_rows(self.route, grid, rows, lo, hi)
        fresh = _by_instant(rows, time_of)
        changed: list[datetime] = []
        partition = self.route.partition(target)
        with self._writing(partition) as held:
            for shard in self.shards(target):
                s_lo, s_hi = grid.floor(shard.start), grid.ceil(shard.end)
                seg_lo, seg_hi = max(s_lo, lo), min(s_hi, hi)
                if seg_lo >= seg_hi:
                    continue
                old = self._read(shard) if shard.rows else []
                inside = _by_instant([r for r in old if seg_lo <= time_of(r) < seg_hi], time_of)
                new = {t: r for t, r in fresh.items() if seg_lo <= t < seg_hi}
                differ = sorted(
                    t for t in inside.keys() | new.keys() if inside.get(t) != new.get(t)
                )
                if not differ:
                    continue
                merged = [r for r in old if time_of(r) < seg_lo]
                merged += [r for t in sorted(new) for r in new[t]]
                merged += [r for r in old if time_of(r) >= seg_hi]
                self._put(shard.key, self._encode(merged))
                changed += differ
            if changed:
                held.mark()
            with self._lock:
                self._views.pop(partition, None)  # row counts changed: listed again
        return changed

    def _encode(self, rows: Sequence[Row]) -> bytes:
        """A file's bytes: the rows in the stored shape, the route and grid in the footer."""
        pa = import_optional("pyarrow", "writing a shard store", extra="parquet")
        pq = import_optional("pyarrow.parquet", "writing a shard store", extra="parquet")
        table = to_arrow(self.spec, {"": rows}, self.spec.stored, keys=False)
        table = table.replace_schema_metadata({_META_KEY: self._meta})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return bytes(sink.getvalue().to_pybytes())

    def _put(self, key: str, body: bytes) -> None:
        with _storage_errors(self.storage.url_of(key), "write"):
            self.storage.write_atomic(key, body, durable=self.sync_each)
        with self._lock:
            self._checked.pop(key, None)  # checked again when next listed, as any file
            if not self.sync_each:
                self._unsynced.add(split_key(key)[0])

    def sync(self) -> None:
        """Make every file written so far durable, folder entries included (one sync per
        folder written since the last call; nothing to do with ``sync_each``)."""
        with self._lock:
            folders, self._unsynced = self._unsynced, set()
        if folders:
            with _storage_errors(self.location, "sync"):
                self.storage.sync_folders(folders)

    @contextmanager
    def _writing(self, partition: str) -> Iterator[WriterLock]:
        """The partition's writer lock: this process's threads queue on a thread lock,
        other processes on the storage's lock (flock, or an S3 lock object)."""
        with self._writers[partition]:
            with _storage_errors(self.location, "lock"):
                held = self.storage.lock(f"{partition}/{LOCK_NAME}", wait=_WRITE_LOCK_WAIT)
            with held:
                yield held

    def shelf(self, target: Target) -> TargetShelf[Target, Row]:
        """The store as ``target``'s shelf (what the fetch engine reads and fills)."""
        return TargetShelf(self, target)


@dataclass(frozen=True, slots=True)
class TargetShelf(Generic[Target, Row]):
    """One target's part of a :class:`ShardStore` (the engine's
    :class:`~kaiko_liq.engine.Shelf`)."""

    store: ShardStore[Target, Row]
    target: Target

    def covered(self) -> list[tuple[datetime, datetime]]:
        return self.store.covered(self.target)

    def read_rows(self, start: datetime, end: datetime) -> list[Row]:
        return self.store.read_rows(self.target, start, end)

    def write(self, start: datetime, end: datetime, rows: list[Row]) -> list[Shard]:
        return self.store.write(self.target, start, end, rows)

    def revise(self, start: datetime, end: datetime, rows: list[Row]) -> list[datetime]:
        return self.store.revise(self.target, start, end, rows)


def _by_instant(rows: Sequence[Row], time_of: Any) -> dict[datetime, list[Row]]:
    grouped: dict[datetime, list[Row]] = {}
    for row in rows:
        grouped.setdefault(time_of(row), []).append(row)
    return grouped


def _grid_meta(grid: Grid) -> dict[str, int]:
    return {"interval_seconds": grid.seconds} if isinstance(grid, Interval) else {}


@contextmanager
def _storage_errors(location: str, doing: str) -> Iterator[None]:
    """An ``OSError`` from the storage as one :class:`StorageError` naming what and why."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise StorageError.from_os_error(exc, location, doing=doing) from exc
