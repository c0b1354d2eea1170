"""Resumable bulk backfills: many assets and long ranges into one Parquet dataset.

Layout, hive-style, one file per shard of :meth:`LiquidationClient.plan`::

    DIR/
      _manifest.json                               the record (see below)
      asset=btc/
        20250108T000000Z_20250217T000000Z.parquet  rows of [2025-01-08, 2025-02-17)
        20250217T000000Z_20250329T000000Z.parquet
      asset=eth/
        ...

Read it with :func:`read_backfill` or :func:`open_dataset`, or with any hive-aware
reader: ``pyarrow.dataset.dataset(DIR, partitioning="hive")``, ``pandas.read_parquet(DIR)``,
``polars.scan_parquet(f"{DIR}/**/*.parquet", hive_partitioning=True)``.

A file holds its shard in the ``nested`` shape of :mod:`kaiko_liq.export`: the totals
columns, ascending by ``interval_time``, plus the per-exchange breakdown as an
``exchanges`` list<struct> column; ``asset`` comes from the directory. Totals and
breakdown share one file so that a shard is on disk whole or not at all: two datasets
could disagree after a kill. ``read_backfill(DIR, shape="exchanges")`` flattens it.

What counts as done
    A shard is done iff its file exists under its final name. A file gets that name only
    by ``os.replace`` of a complete, fsynced temporary file whose name starts with ``.``,
    which dataset readers skip. So a resume sees as done exactly what a reader sees as
    data, and a kill at any moment loses only the shards in flight. An empty shard is
    written as a zero-row file with the schema: "fetched, nothing there" must stay
    distinct from "not fetched yet".

The manifest
    ``_manifest.json`` (skipped by readers: leading ``_``) records the interval, every
    shard on disk with its row count, and each run's request and outcome. It is the
    record, not the truth: it is rewritten atomically at the start of a run, at most every
    :data:`MANIFEST_EVERY` seconds as shards land, and at the end; each run first
    reconciles it with the files, so a file that landed just before a kill still counts.

Only settled buckets
    A bucket is fetched only once it has closed and had :data:`SETTLE` (an hour) to
    settle: a bucket still filling, or one in the future, would otherwise be written as a
    short or empty file that counts as done for ever. So a run plans ``[start, end)``
    only up to the *horizon*, the grid time at or before ``now - SETTLE``; the rest is
    not fetched, not written, and reported (:attr:`BackfillSummary.deferred_from`, and the
    run's record in the manifest), so running the same command later fetches it then.

Resuming
    A run fetches only the buckets no file covers yet: the gaps are planned afresh, which
    for the same command gives back exactly the missing shards. Extending the range or
    adding assets fetches only the new part, and a different ``page_size`` cannot make
    shards overlap. The interval cannot change: a directory holds one granularity, and a
    run with another is refused. A ``.lock`` file keeps two runs out of one directory.

Example::

    async with LiquidationClient() as client:
        summary = await backfill(client, ["btc", "eth"], "2025-01-08", "2026-01-08", "liq")
    table = read_backfill("liq")  # totals of every asset, sorted
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from anyio.abc import TaskGroup

from .errors import (
    FailedRange,
    IncompleteFetchError,
    InvalidArgumentError,
    KaikoLiqError,
    is_fatal,
)
from .export import (
    SHAPES,
    Shape,
    arrow_schema,
    atomic_write,
    flatten_exchanges,
    import_optional,
    to_arrow,
)
from .models import LiquidationRow
from .progress import format_duration, plural
from .query import (
    Interval,
    TimeLike,
    format_time,
    parse_interval,
    parse_time,
    validate_asset,
    validate_request,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as pads

    from .client import LiquidationClient

__all__ = [
    "MANIFEST_EVERY",
    "MANIFEST_NAME",
    "SETTLE",
    "AssetOnDisk",
    "BackfillIncompleteError",
    "BackfillProgress",
    "BackfillSummary",
    "Manifest",
    "ShardRecord",
    "backfill",
    "describe_backfill",
    "open_dataset",
    "read_backfill",
    "shard_filename",
]

MANIFEST_NAME = "_manifest.json"
#: Seconds between manifest rewrites while shards land (it is also written at the end).
MANIFEST_EVERY = 0.5
#: How long after a bucket closes before a backfill fetches it: time for the provider to
#: finish aggregating it. Later buckets are left for a later run (see "Only settled").
SETTLE = timedelta(hours=1)
_FORMAT = "kaiko-liq backfill"
_VERSION = 1
_LOCK_NAME = ".lock"
_PARTITION = "asset="
_STAMP = "%Y%m%dT%H%M%S"
_STAMP_RE = r"\d{8}T\d{6}(?:\.\d{6})?Z"
_SHARD_RE = re.compile(rf"^({_STAMP_RE})_({_STAMP_RE})\.parquet$")
# atomic_write's temporary names: ".<final name>.<hex>.tmp"
_TEMP_RE = re.compile(r"^\..+\.parquet\.[0-9a-f]+\.tmp$")


# --- the record -----------------------------------------------------------------------------


class ShardRecord(msgspec.Struct, frozen=True):
    """One shard file on disk: its window (as requested) and its row count."""

    start: datetime
    end: datetime
    rows: int
    file: str  # relative to the dataset directory, '/'-separated


class RunRecord(msgspec.Struct, frozen=True):
    """One run's request and outcome (``complete`` once every requested shard is on disk).

    ``deferred_from`` is set when ``[deferred_from, end)`` was not settled yet and so was
    left for a later run; such a run is not ``complete``.
    """

    assets: list[str]
    start: datetime
    end: datetime
    started: datetime
    finished: datetime | None = None
    complete: bool = False
    deferred_from: datetime | None = None


class Manifest(msgspec.Struct):
    """``_manifest.json``: what is on disk, and the parameters the layout depends on."""

    interval: str
    shards: dict[str, list[ShardRecord]] = msgspec.field(default_factory=dict)
    runs: list[RunRecord] = msgspec.field(default_factory=list)
    format: str = _FORMAT
    version: int = _VERSION


_manifest_decoder = msgspec.json.Decoder(Manifest)
_manifest_encoder = msgspec.json.Encoder()


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


def _parse_shard_filename(name: str) -> tuple[datetime, datetime] | None:
    match = _SHARD_RE.match(name)
    if match is None:
        return None
    return _parse_stamp(match.group(1)), _parse_stamp(match.group(2))


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """Where a run stands; handed to ``on_progress`` after planning and after each shard."""

    shards_total: int
    shards_done: int
    shards_skipped: int  # already on disk when the run started
    rows: int  # written by this run


@dataclass(frozen=True, slots=True)
class BackfillSummary:
    """What a run did. ``requests`` and ``retries`` are the client's, during the run.

    ``deferred_from`` is not ``None`` when the window reached past the settled horizon:
    ``[deferred_from, deferred_to)`` was not fetched (not yet complete, or in the future)
    and a later run of the same command fetches it.
    """

    out_dir: Path
    assets: tuple[str, ...]
    shards_total: int
    shards_skipped: int
    shards_written: int
    rows: int
    requests: int
    retries: int
    seconds: float
    deferred_from: datetime | None = None
    deferred_to: datetime | None = None

    @property
    def deferred(self) -> str | None:
        """One sentence on the part left for later, or ``None`` if there is none."""
        if self.deferred_from is None or self.deferred_to is None:
            return None
        return (
            f"skipped {format_time(self.deferred_from)} to {format_time(self.deferred_to)}: "
            "not yet complete (it ends in the future or under "
            f"{format_duration(SETTLE.total_seconds())} ago); run the same command again "
            "later to fetch it"
        )

    def __str__(self) -> str:
        skipped = f", {self.shards_skipped} already on disk" if self.shards_skipped else ""
        deferred = f"; {self.deferred}" if self.deferred else ""
        return (
            f"{plural(len(self.assets), 'asset')}, {self.shards_total} shards{skipped}: "
            f"wrote {plural(self.shards_written, 'file')}, {self.rows:,} rows, "
            f"{plural(self.requests, 'request')}, {plural(self.retries, 'retry', 'retries')} "
            f"in {self.seconds:.1f}s to {self.out_dir}{deferred}"
        )


class BackfillIncompleteError(KaikoLiqError):
    """Some shards failed after retries; every other shard is on disk.

    Running the same backfill again fetches only what is missing. ``failed`` maps each
    asset to its failed shards; ``summary`` says what the run did write.
    """

    def __init__(self, failed: dict[str, list[FailedRange]], summary: BackfillSummary) -> None:
        self.failed = failed
        self.summary = summary
        flat = [(asset, f) for asset, ranges in failed.items() for f in ranges]
        shown = "; ".join(f"{asset} {f}" for asset, f in flat[:3])
        more = f"; and {len(flat) - 3} more" if len(flat) > 3 else ""
        super().__init__(
            f"backfill incomplete: {len(flat)} of {summary.shards_total} shards failed "
            f"({shown}{more}); the other {summary.shards_total - len(flat)} are on disk in "
            f"{summary.out_dir}; run the same command again to fetch only what is missing"
        )


# --- the directory --------------------------------------------------------------------------


@dataclass(slots=True)
class _Job:
    asset: str
    start: datetime
    end: datetime

    @property
    def relpath(self) -> str:
        return f"{_PARTITION}{self.asset}/{shard_filename(self.start, self.end)}"


def _make_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot create {directory}: {exc.strerror}") from None


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``DIR/.lock`` so two runs never write one directory."""
    try:
        import fcntl
    except ImportError:  # not POSIX: run unlocked rather than not at all
        yield
        return
    with open(directory / _LOCK_NAME, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidArgumentError(
                f"another backfill is writing {directory}; wait for it or use another directory"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_manifest(directory: Path, interval: Interval) -> Manifest:
    """The directory's manifest, checked against this run; a new one if there is none."""
    path = directory / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if any(p.name.startswith(_PARTITION) for p in directory.iterdir()):
            raise InvalidArgumentError(
                f"{directory} has asset= directories but no {MANIFEST_NAME}: it was not made "
                "by kaiko-liq backfill (or its manifest was deleted); use an empty directory"
            ) from None
        return Manifest(interval=interval.text)
    try:
        manifest = _manifest_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidArgumentError(
            f"{path} is not a kaiko-liq backfill manifest ({exc}); use another directory"
        ) from None
    if manifest.format != _FORMAT or manifest.version != _VERSION:
        raise InvalidArgumentError(
            f"{path} is a {manifest.format!r} manifest, version {manifest.version}; this "
            f"kaiko-liq writes {_FORMAT!r} version {_VERSION}; use another directory"
        )
    recorded = parse_interval(manifest.interval)
    if recorded.seconds != interval.seconds:
        raise InvalidArgumentError(
            f"{directory} holds a backfill at interval {manifest.interval}, not {interval}; "
            f"resume it with --interval {manifest.interval} or use another directory"
        )
    return manifest


def _reconcile(directory: Path, manifest: Manifest) -> dict[str, list[ShardRecord]]:
    """The shards really on disk, by asset: files are the truth, the manifest only lends
    row counts. Leftover temporary files of a killed run are removed on the way."""
    known = {record.file: record for records in manifest.shards.values() for record in records}
    found: dict[str, list[ShardRecord]] = {}
    for part in sorted(directory.iterdir()):
        if not (part.is_dir() and part.name.startswith(_PARTITION)):
            continue
        asset = part.name[len(_PARTITION) :]
        records: list[ShardRecord] = []
        for file in sorted(part.iterdir()):
            if _TEMP_RE.match(file.name):
                file.unlink(missing_ok=True)
                continue
            window = _parse_shard_filename(file.name)
            if window is None:
                continue
            rel = f"{part.name}/{file.name}"
            record = known.get(rel)
            if record is None:
                # Landed after the last manifest write: count its rows from the footer.
                pq = import_optional("pyarrow.parquet", "backfill", extra="parquet")
                rows = int(pq.read_metadata(file).num_rows)
                record = ShardRecord(start=window[0], end=window[1], rows=rows, file=rel)
            records.append(record)
        if records:
            found[asset] = sorted(records, key=lambda r: r.start)
    return found


def _gaps(
    start: datetime, end: datetime, interval: Interval, on_disk: Sequence[ShardRecord]
) -> list[tuple[datetime, datetime]]:
    """The parts of ``[start, end)`` whose buckets no file covers yet.

    Works on buckets, because the server snaps a window outward to the grid: a file for
    ``[09:00:01, ...)`` holds the 09:00 bucket, so a gap must not ask for it again.
    """
    lo, hi = interval.floor(start), interval.ceil(end)
    covered = sorted((interval.floor(r.start), interval.ceil(r.end)) for r in on_disk)
    gaps: list[tuple[datetime, datetime]] = []
    cursor = lo
    for c_lo, c_hi in covered:
        if c_hi <= cursor:
            continue
        if c_lo >= hi:
            break
        if c_lo > cursor:
            gaps.append((cursor, c_lo))
        cursor = max(cursor, c_hi)
    if cursor < hi:
        gaps.append((cursor, hi))
    # Ask for the caller's own edges, not the snapped ones: same buckets, same shard names
    # as a run that started with nothing on disk.
    return [(max(a, start), min(b, end)) for a, b in gaps]


def _write_manifest(directory: Path, manifest: Manifest) -> None:
    body = msgspec.json.format(_manifest_encoder.encode(manifest), indent=2) + b"\n"
    with atomic_write(directory / MANIFEST_NAME) as stream:
        stream.write(body)


def _write_shard(path: Path, rows: list[LiquidationRow]) -> None:
    """One shard file, atomically. Runs in a worker thread: conversion and I/O block."""
    pq = import_optional("pyarrow.parquet", "backfill", extra="parquet")
    table = to_arrow(rows, shape="nested")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as stream:
        pq.write_table(table, stream)


def _root_cause(error: KaikoLiqError) -> BaseException:
    """A one-shard fetch that failed reports an IncompleteFetchError of one range."""
    if isinstance(error, IncompleteFetchError) and len(error.failed) == 1:
        return error.failed[0].error
    return error


# --- the run ----------------------------------------------------------------------------


async def backfill(
    client: LiquidationClient,
    assets: Sequence[str],
    start: TimeLike,
    end: TimeLike,
    out_dir: str | os.PathLike[str],
    *,
    interval: str = "1h",
    page_size: int | None = None,
    concurrency: int | None = None,
    on_progress: Callable[[BackfillProgress], None] | None = None,
    now: datetime | None = None,
) -> BackfillSummary:
    """Fetch ``[start, end)`` of every asset into the dataset at ``out_dir``; resumable.

    Args:
        client: the one client every shard goes through (its rate limit is shared).
        assets: asset codes, e.g. ``["btc", "eth"]``; case-insensitive, duplicates ignored.
        start, end: the window, ``start`` inclusive, ``end`` exclusive.
        out_dir: the dataset directory, created if missing.
        interval: bucket width; fixed per directory.
        page_size: rows per page; ``None`` is the client's default.
        concurrency: shards fetched at once; ``None`` is ``client.max_concurrency``, which
            is what keeps the client's request slots busy (a shard pages sequentially).
        on_progress: called with a :class:`BackfillProgress` after planning and after each
            shard; it runs on the event loop, so keep it quick.
        now: the time the run takes as now (aware); ``None`` reads the system clock.
            Buckets ending after ``now - SETTLE`` are not fetched but left for a later
            run (see "Only settled buckets" above and ``BackfillSummary.deferred_from``).

    Returns a :class:`BackfillSummary`. Raises :class:`InvalidArgumentError` before any
    request for bad arguments or a directory that is not a compatible backfill, the
    failure itself for errors every shard would hit (a wrong key, an unknown asset), and
    :class:`BackfillIncompleteError` when some shards failed after retries; what did
    succeed is on disk either way.
    """
    if not assets:
        raise InvalidArgumentError("backfill needs at least one asset, e.g. ['eth']")
    requests = [
        validate_request(a, start, end, interval=interval, page_size=page_size) for a in assets
    ]
    names = list(dict.fromkeys(r.asset for r in requests))
    lo, hi, grid = requests[0].start, requests[0].end, requests[0].interval
    clock = datetime.now(UTC) if now is None else parse_time(now, "now")
    workers = client.max_concurrency if concurrency is None else concurrency
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidArgumentError(f"concurrency must be a positive integer, got {concurrency!r}")
    import_optional("pyarrow.parquet", "backfill", extra="parquet")
    directory = Path(out_dir)
    await anyio.to_thread.run_sync(_make_directory, directory)
    with _locked(directory):
        horizon = _settled_horizon(grid, clock)
        run = _Run(client, names, lo, hi, grid, directory, page_size, workers, horizon)
        return await run.run(on_progress)


def _settled_horizon(interval: Interval, now: datetime) -> datetime:
    """The end of the last bucket that closed at least :data:`SETTLE` before ``now``:
    every bucket before it is final, the one starting at it may still be filling."""
    return interval.floor(now - SETTLE)


class _Run:
    """One backfill run's state; every mutation happens on the event loop."""

    def __init__(
        self,
        client: LiquidationClient,
        assets: list[str],
        start: datetime,
        end: datetime,
        interval: Interval,
        directory: Path,
        page_size: int | None,
        workers: int,
        horizon: datetime,
    ) -> None:
        self.client = client
        self.assets = assets
        self.start, self.end = start, end
        self.interval = interval
        self.directory = directory
        self.page_size = page_size
        self.workers = workers
        self.manifest = Manifest(interval=interval.text)
        self.horizon = horizon  # nothing after it is fetched: see _settled_horizon()
        self.on_disk: dict[str, list[ShardRecord]] = {}
        self.failed: dict[str, list[FailedRange]] = {}
        self.fatal: BaseException | None = None
        self.total = self.skipped = self.written = self.rows = 0
        self._manifest_lock = anyio.Lock()
        self._manifest_written = 0.0

    @property
    def deferred_from(self) -> datetime | None:
        """Where the unsettled part of the window begins, if it has one."""
        return max(self.start, self.horizon) if self.end > self.horizon else None

    def _plan(self) -> list[_Job]:
        """The missing settled shards of every asset, interleaved by time so that all
        assets advance together (a kill leaves each with a complete prefix, not some with
        none)."""
        jobs: list[_Job] = []
        # The caller's own end when it is before the horizon (the shards are then those of
        # any run); else the horizon, where a later run's gap will start.
        end = min(self.end, self.horizon)
        for asset in self.assets:
            have = self.on_disk.get(asset, [])
            self.skipped += sum(1 for r in have if r.start < self.end and r.end > self.start)
            if self.start >= end:
                continue
            for gap_lo, gap_hi in _gaps(self.start, end, self.interval, have):
                shards = self.client.plan(
                    asset, gap_lo, gap_hi, interval=self.interval.text, page_size=self.page_size
                )
                jobs += [_Job(asset, s.start, s.end) for s in shards]
        self.total = self.skipped + len(jobs)
        order = {asset: i for i, asset in enumerate(self.assets)}
        return sorted(jobs, key=lambda j: (j.start, order[j.asset]))

    def _progress(self) -> BackfillProgress:
        return BackfillProgress(
            shards_total=self.total,
            shards_done=self.skipped + self.written,
            shards_skipped=self.skipped,
            rows=self.rows,
        )

    async def _save_manifest(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._manifest_written < MANIFEST_EVERY:
            return
        self._manifest_written = now
        self.manifest.shards = {a: list(r) for a, r in sorted(self.on_disk.items())}
        snapshot = msgspec.structs.replace(self.manifest)
        async with self._manifest_lock:
            await anyio.to_thread.run_sync(_write_manifest, self.directory, snapshot)

    async def run(self, on_progress: Callable[[BackfillProgress], None] | None) -> BackfillSummary:
        self.manifest = await anyio.to_thread.run_sync(
            _load_manifest, self.directory, self.interval
        )
        self.on_disk = await anyio.to_thread.run_sync(_reconcile, self.directory, self.manifest)
        jobs = self._plan()
        started = datetime.now(UTC)
        self.manifest.runs.append(
            RunRecord(
                assets=self.assets,
                start=self.start,
                end=self.end,
                started=started,
                deferred_from=self.deferred_from,
            )
        )
        await self._save_manifest(force=True)
        requests0, retries0 = self.client.stats.requests, self.client.stats.retries
        clock0 = time.monotonic()
        if on_progress is not None:
            on_progress(self._progress())

        pending = iter(jobs)

        async def worker(tg: TaskGroup) -> None:
            # Workers share one iterator: next() never awaits, so no job is taken twice.
            for job in pending:
                if self.fatal is not None:
                    return
                await self._one(job, tg)
                if on_progress is not None:
                    on_progress(self._progress())

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(min(self.workers, len(jobs))):
                    tg.start_soon(worker, tg)
        finally:
            # Also on cancellation (Ctrl-C): record what landed. Shielded, or the
            # cancellation that got us here would cancel the write too.
            with anyio.CancelScope(shield=True):
                complete = (
                    self.fatal is None
                    and not self.failed
                    and self.written == len(jobs)
                    and self.deferred_from is None
                )
                self.manifest.runs[-1] = msgspec.structs.replace(
                    self.manifest.runs[-1], finished=datetime.now(UTC), complete=complete
                )
                await self._save_manifest(force=True)
        summary = BackfillSummary(
            out_dir=self.directory,
            assets=tuple(self.assets),
            shards_total=self.total,
            shards_skipped=self.skipped,
            shards_written=self.written,
            rows=self.rows,
            requests=self.client.stats.requests - requests0,
            retries=self.client.stats.retries - retries0,
            seconds=time.monotonic() - clock0,
            deferred_from=self.deferred_from,
            deferred_to=self.end if self.deferred_from is not None else None,
        )
        if self.fatal is not None:
            raise self.fatal
        if self.failed:
            raise BackfillIncompleteError(self.failed, summary)
        return summary

    async def _one(self, job: _Job, tg: TaskGroup) -> None:
        try:
            rows = await self.client.fetch(
                job.asset,
                job.start,
                job.end,
                interval=self.interval.text,
                sort="asc",
                page_size=self.page_size,
            )
        except KaikoLiqError as exc:
            cause = _root_cause(exc)
            if is_fatal(cause):
                self.fatal = cause
                tg.cancel_scope.cancel()
                return
            self.failed.setdefault(job.asset, []).append(FailedRange(job.start, job.end, cause))
            return
        # Not cancellable once started: the file lands whole, or (if killed) not at all.
        await anyio.to_thread.run_sync(_write_shard, self.directory / job.relpath, rows)
        record = ShardRecord(start=job.start, end=job.end, rows=len(rows), file=job.relpath)
        self.on_disk.setdefault(job.asset, []).append(record)
        self.on_disk[job.asset].sort(key=lambda r: r.start)
        self.written += 1
        self.rows += len(rows)
        await self._save_manifest(force=False)


# --- reading it back -------------------------------------------------------------------------


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
    asset with nothing on disk has 0 files). Reads the ``interval_time`` column only."""
    pa = import_optional("pyarrow", "describe_backfill", extra="parquet")
    dataset = open_dataset(out_dir)
    files = Counter(Path(f).parent.name.removeprefix(_PARTITION) for f in dataset.files)
    times = dataset.to_table(columns=["asset", "interval_time"])
    # Microseconds: as_py() of a nanosecond timestamp is a pandas Timestamp, if pandas is in.
    times = times.set_column(
        1, "interval_time", times["interval_time"].cast(pa.timestamp("us", tz="UTC"))
    )
    spans = {
        g["asset"]: g
        for g in times.group_by("asset")
        .aggregate([("interval_time", "count"), ("interval_time", "min"), ("interval_time", "max")])
        .to_pylist()
    }
    wanted = sorted(files) if assets is None else [validate_asset(a) for a in assets]
    described: list[AssetOnDisk] = []
    for asset in dict.fromkeys(wanted):
        span = spans.get(asset, {})
        described.append(
            AssetOnDisk(
                asset=asset,
                files=files[asset],
                rows=span.get("interval_time_count", 0),
                first=span.get("interval_time_min"),
                last=span.get("interval_time_max"),
            )
        )
    return described


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
