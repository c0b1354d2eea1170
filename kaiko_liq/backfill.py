"""Resumable bulk backfills: many targets and long ranges into one Parquet dataset, for
any route: token volumes (:func:`backfill`, assets) and liquidation events
(:func:`backfill_events`, instruments), on a local directory or ``s3://bucket/prefix``.

The dataset is a :class:`~kaiko_liq.store.ShardStore` (the layout, the file format and
the check a file must pass live there), one file per planned shard (token: the shards of
:meth:`LiquidationClient.plan`; events: UTC days), plus a manifest::

    DIR/
      _manifest.json                               the record (see below)
      asset=btc/
        20250108T000000Z_20250217T000000Z.parquet  rows of [2025-01-08, 2025-02-17)
        20250217T000000Z_20250329T000000Z.parquet
      asset=eth/
        ...

An events dataset is partitioned ``exchange=…/instrument_class=…/instrument=…/``, one
file per UTC day.

Read it with :func:`read_backfill`, or any Parquet reader (the README's "Reading the
data" has one-liners for pandas, polars, pyarrow and DuckDB).

What counts as done
    A shard is done iff its file is under its final name and passes the store's check.
    A file gets that name only whole: locally by an atomic rename of a complete temporary
    file whose name starts with ``.`` (readers skip it), on S3 by one PUT; so a kill at
    any moment loses only the shards in flight. An empty shard is a zero-row file:
    "fetched, nothing there" stays distinct from "not fetched yet".

The manifest
    ``_manifest.json`` (readers skip it: leading ``_``) records the interval, every shard
    on disk with its row count, and each run's request and outcome. It is the record, not
    the truth: rewritten atomically at the start of a run, at most every
    :data:`MANIFEST_EVERY` seconds as shards land, and at the end.

Every run checks what it is about to trust
    Before planning, each shard file is checked cheaply (a stat and its Parquet footer;
    the row count against the manifest's): a missing, empty, unreadable or mismatched
    shard is fetched again, the bad file moved aside to a ``.``-name readers skip, with a
    warning (logger ``kaiko_liq``, and :attr:`BackfillSummary.warnings`). A stray
    unreadable ``.parquet`` in a partition is moved aside the same way. A missing or
    corrupt manifest is rebuilt from the files that read cleanly: the files are the
    truth. Leftover temporary files are removed once their writer is gone (its process
    has exited; an older name without a pid, once an hour old).

Only settled rows
    A row is stored only once it is final: its bucket closed (an event happened) the
    client's ``settle`` (:data:`SETTLE`, an hour, by default) ago, on the earlier of our
    clock and the server's as it answers (:func:`~kaiko_liq.settle.settled_horizon`,
    :meth:`~kaiko_liq.client.LiquidationClient.final_before`). The rest of the window is
    not written but reported (:attr:`BackfillSummary.deferred_from`), so running the same
    command later fetches it then. Each run that reaches a target's newest stored rows
    fetches them again first (the client's ``recheck``, about a page) and replaces those
    the server revised since, only as far as the server's clock calls final: a server
    that has fallen behind cannot overwrite settled rows with partial ones.

Failures stay where they happen
    A shard that fails after retries is reported and the others go on. An asset the
    server does not know (404), or whose data it cannot serve consistently, stops that
    asset only, in the recheck as in its shards; so does :data:`GIVE_UP_AFTER` failed
    shards of one asset in a row. What applies to every asset (a wrong key, a bad
    parameter) stops the run and is raised as itself. A filesystem failure (disk full,
    read-only, permission denied) stops the run as one
    :class:`~kaiko_liq.fs.StorageError` saying what was saved. In every case the shards
    written are on disk and recorded, and the same command resumes.

Resuming
    A run fetches only the buckets no file covers: the gaps are planned afresh, which for
    the same command gives back exactly the missing shards. Extending the range or adding
    assets fetches only the new part, and a different ``page_size`` cannot make shards
    overlap. The interval cannot change: a run with another is refused. A writer lock
    (:data:`~kaiko_liq.layout.LOCK_NAME`: ``flock`` locally; on S3 a lock object written
    with ``If-None-Match``, refreshed during the run, expiring ``lock_ttl`` after a killed
    run's last refresh) keeps two runs out of one dataset.

Example::

    async with LiquidationClient() as client:
        summary = await backfill(client, ["btc", "eth"], "2025-01-08", "2026-01-08", "liq")
    table = read_backfill("liq")  # totals of every asset, sorted
"""

from __future__ import annotations

import logging
import os
import time
from bisect import insort
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import msgspec
from anyio.abc import TaskGroup

from .cache import check_store, read_identity
from .datasets import AssetOnDisk, describe_backfill, open_dataset, read_backfill
from .errors import (
    FailedRange,
    InconsistentDataError,
    InvalidArgumentError,
    KaikoLiqError,
    NotFoundError,
    is_fatal,
)
from .fs import Storage, StorageError, WriterLock, open_storage
from .layout import LOCK_NAME, MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION, shard_filename
from .optional import require_optional
from .plan import SubRange
from .progress import empty_reason, format_duration, plural
from .query import (
    DATA_START,
    Interval,
    TimeLike,
    format_time,
    parse_interval,
    parse_time,
    validate_request,
)
from .routes import Grid, Route
from .routes.events import EVENTS, Instrument, parse_instrument_spec
from .routes.token import TOKEN, Token
from .settle import SETTLE
from .spans import gaps_in
from .store import Damaged, Shard, ShardStore, grid_text

if TYPE_CHECKING:
    from .client import LiquidationClient
    from .engine import Request

__all__ = [
    "GIVE_UP_AFTER",
    "MANIFEST_EVERY",
    "MANIFEST_NAME",
    "SETTLE",
    "AssetOnDisk",
    "BackfillIncompleteError",
    "BackfillProgress",
    "BackfillSummary",
    "Manifest",
    "ShardRecord",
    "StorageError",
    "backfill",
    "backfill_events",
    "backfill_targets",
    "describe_backfill",
    "open_dataset",
    "read_backfill",
    "shard_filename",
]

logger = logging.getLogger("kaiko_liq")

#: Seconds between manifest rewrites while shards land (it is also written at the end).
MANIFEST_EVERY = 0.5
#: Threads that store pages at once (Arrow build, Parquet write, fsync): two cores' worth.
WRITE_THREADS = 2
#: Failed shards of one target in a row (after their retries) before the target's other
#: shards are left for the next run: the server is not serving it now.
GIVE_UP_AFTER = 3

Target = TypeVar("Target")
Row = TypeVar("Row")


# --- the record -----------------------------------------------------------------------------


class ShardRecord(msgspec.Struct, frozen=True):
    """One shard file stored: its window (as requested) and its row count."""

    start: datetime
    end: datetime
    rows: int
    file: str  # relative to the dataset's root, '/'-separated


class RunRecord(msgspec.Struct, frozen=True):
    """One run's request and outcome (``complete`` once every requested shard is stored).

    ``assets`` are the run's targets as labelled (asset codes; instruments as
    ``EXCHANGE:CLASS:INSTRUMENT``). ``deferred_from`` is set when ``[deferred_from, end)``
    was not settled yet and so was left for a later run; such a run is not ``complete``.
    ``failed_assets`` names the targets that stopped early, with why.
    """

    assets: list[str]
    start: datetime
    end: datetime
    started: datetime
    finished: datetime | None = None
    complete: bool = False
    deferred_from: datetime | None = None
    failed_assets: dict[str, str] = msgspec.field(default_factory=dict)


class Manifest(msgspec.Struct):
    """``_manifest.json``: what is stored, by partition path (``asset=btc``), and the
    parameters the layout depends on: the route, its interval (token; ``None`` for
    events) and the server whose data this is."""

    interval: str | None = None
    shards: dict[str, list[ShardRecord]] = msgspec.field(default_factory=dict)
    runs: list[RunRecord] = msgspec.field(default_factory=list)
    server: str | None = None  # the base URL whose data this is: one store, one server
    route: str = TOKEN.name
    format: str = MANIFEST_FORMAT
    version: int = MANIFEST_VERSION


_manifest_decoder = msgspec.json.Decoder(Manifest)
_manifest_encoder = msgspec.json.Encoder()


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """Where a run stands; handed to ``on_progress`` after planning (so the first call
    says what is already on disk: a resume) and after each shard."""

    shards_total: int
    shards_done: int
    shards_skipped: int  # already on disk when the run started
    rows: int  # written by this run


@dataclass(frozen=True, slots=True)
class BackfillSummary:
    """What a run did. ``requests`` and ``retries`` are the client's, during the run
    (``recheck_requests`` of them rechecking the newest stored rows).

    ``deferred_from`` is not ``None`` when the window reached past the settled horizon:
    ``[deferred_from, deferred_to)`` was not fetched (not yet complete, or in the future)
    and a later run of the same command fetches it. ``rows_on_disk`` counts the window's
    rows on disk after the run (skipped shards' and written ones'); :attr:`reason_empty`
    says why there are none. ``warnings`` are the repairs the run made (damaged files
    moved aside, a manifest rebuilt).
    """

    out_dir: Path | str  # a local path, or the s3:// URL
    assets: tuple[str, ...]  # the targets' labels: assets, or instruments
    shards_total: int
    shards_skipped: int
    shards_written: int
    rows: int
    requests: int
    retries: int
    seconds: float
    deferred_from: datetime | None = None
    deferred_to: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None
    now: datetime | None = None
    rows_on_disk: int = 0
    warnings: tuple[str, ...] = ()
    noun: str = "asset"  # what a target is called: "asset", "instrument"
    recheck_requests: int = 0  # of ``requests``: fetching the newest stored rows again
    settle: timedelta = SETTLE  # the client's: how long after it closes a row is final

    @property
    def deferred(self) -> str | None:
        """One sentence on the part left for later, or ``None`` if there is none."""
        if self.deferred_from is None or self.deferred_to is None:
            return None
        return (
            f"skipped {format_time(self.deferred_from)} to {format_time(self.deferred_to)}: "
            "not yet complete (it ends in the future or under "
            f"{format_duration(self.settle.total_seconds())} ago); run the same command again "
            "later to fetch it"
        )

    @property
    def reason_empty(self) -> str | None:
        """Why the window has no rows on disk (before the data starts, not settled yet or
        in the future, or no liquidations), or ``None`` when it has some."""
        if self.rows_on_disk or self.start is None or self.end is None or self.now is None:
            return None
        if self.end <= DATA_START or self.start >= self.now:
            return empty_reason(self.start, self.end, self.now)
        settle = format_duration(self.settle.total_seconds())
        if self.deferred_from is not None and self.deferred_from <= self.start:
            return (
                f"the window has not settled yet (its buckets closed under {settle} ago, or "
                "lie in the future); run the same command again later"
            )
        if self.deferred_from is not None:
            return (
                f"no liquidations were recorded up to {format_time(self.deferred_from)}; the "
                f"rest has not settled yet (closed under {settle} ago, or in the future)"
            )
        return empty_reason(self.start, self.end, self.now)

    def __str__(self) -> str:
        skipped = f", {self.shards_skipped} already on disk" if self.shards_skipped else ""
        deferred = f"; {self.deferred}" if self.deferred else ""
        repaired = f"; {'; '.join(self.warnings)}" if self.warnings else ""
        rechecked = f" ({self.recheck_requests} for the recheck)" if self.recheck_requests else ""
        return (
            f"{plural(len(self.assets), self.noun)}, {self.shards_total} shards{skipped}: "
            f"wrote {plural(self.shards_written, 'file')}, {self.rows:,} rows, "
            f"{plural(self.requests, 'request')}{rechecked}, "
            f"{plural(self.retries, 'retry', 'retries')} "
            f"in {self.seconds:.1f}s to {self.out_dir}{deferred}{repaired}"
        )


class BackfillIncompleteError(KaikoLiqError):
    """Some shards or assets failed; everything else is on disk.

    Running the same backfill again fetches only what is missing. ``failed`` maps each
    asset to its failed shards (after retries); ``failed_assets`` maps each asset that
    stopped early (unknown to the server, inconsistent answers, or
    :data:`GIVE_UP_AFTER` failures in a row) to the error that stopped it; ``summary``
    says what the run did write.
    """

    def __init__(
        self,
        failed: dict[str, list[FailedRange]],
        summary: BackfillSummary,
        failed_assets: dict[str, KaikoLiqError] | None = None,
    ) -> None:
        self.failed = failed
        self.failed_assets = dict(failed_assets or {})
        self.summary = summary
        parts: list[str] = []
        flat = [
            (asset, f)
            for asset, ranges in failed.items()
            if asset not in self.failed_assets
            for f in ranges
        ]
        if flat:
            shown = "; ".join(f"{asset} {f}" for asset, f in flat[:3])
            more = f"; and {len(flat) - 3} more" if len(flat) > 3 else ""
            parts.append(f"{len(flat)} of {summary.shards_total} shards failed ({shown}{more})")
        parts += [f"{asset}: {_why(exc)}" for asset, exc in self.failed_assets.items()]
        done = summary.shards_skipped + summary.shards_written
        super().__init__(
            f"backfill incomplete: {'; '.join(parts)}. {done} of {summary.shards_total} "
            f"shards are on disk in {summary.out_dir}; run the same command again to fetch "
            "only what is missing"
        )

    @property
    def assets(self) -> list[str]:
        """Every asset with something missing, in the order reported."""
        return list(dict.fromkeys([*self.failed_assets, *self.failed]))


def _why(exc: BaseException) -> str:
    if isinstance(exc, _GaveUp):
        return str(exc)
    if isinstance(exc, NotFoundError):
        return f"unknown asset ({type(exc).__name__}: {exc})"
    return f"{type(exc).__name__}: {exc}"


class _GaveUp(KaikoLiqError):
    """An asset whose shards kept failing: the last error, and how many were left."""

    def __init__(self, last: BaseException, left: int) -> None:
        self.last = last
        super().__init__(
            f"gave up after {GIVE_UP_AFTER} failed shards in a row, {left} more not tried; "
            f"last: {type(last).__name__}: {last}"
        )


# --- the route's side: plan, fetch, settle ---------------------------------------------------


class _Fetcher(Generic[Target, Row]):
    """How a run plans, fetches and judges one route's targets through the client: the
    same for every route (the route says what differs), ascending, never cached."""

    def __init__(
        self, client: LiquidationClient, route: Route[Target, Row], page_size: int | None
    ) -> None:
        self.client = client
        self.route = route
        self.page_size = page_size

    def _request(self, target: Target, start: datetime, end: datetime) -> Request[Target, Row]:
        return self.client.request(
            self.route, target, start, end, sort="asc", page_size=self.page_size
        )

    def plan(self, target: Target, start: datetime, end: datetime) -> list[SubRange]:
        return list(self._request(target, start, end).shards)

    async def fetch(self, target: Target, shard: SubRange) -> list[Row]:
        return await self.client.fetch_part(self._request(target, shard.start, shard.end), shard)

    def settled_before(self, target: Target) -> datetime:
        """The end of what is final now, on the earlier of our clock and the server's
        (the client's one rule: the settle delay, the margin)."""
        return self.client.final_before(self.route, target)


# --- the dataset ----------------------------------------------------------------------------


def _load_manifest(
    storage: Storage, route: Route[Any, Any], grid: Grid
) -> tuple[Manifest, list[str]]:
    """The dataset's manifest and what was repaired. Whether it is ours, of this route and
    at this interval is :func:`~kaiko_liq.cache.check_store`'s (run before); a missing
    one is replaced by an empty one, an unreadable one too (the files then rebuild it)."""
    fresh = Manifest(interval=grid_text(grid), route=route.name)
    loose = read_identity(storage)  # refuses another program's or version's
    if loose is None:
        return fresh, []
    try:
        manifest = _manifest_decoder.decode(storage.read_bytes(MANIFEST_NAME))
        if isinstance(grid, Interval):
            parse_interval(manifest.interval or "")
    except FileNotFoundError:
        return fresh, []
    except OSError as exc:
        raise StorageError.from_os_error(exc, storage.url_of(MANIFEST_NAME), doing="read") from exc
    except (msgspec.DecodeError, InvalidArgumentError) as exc:
        note = f"{MANIFEST_NAME} was unreadable ({exc}); rebuilt it from the files"
        logger.warning("%s: %s", storage.url, note)
        return fresh, [note]
    return manifest, []


def _reconcile(
    store: ShardStore[Any, Any], manifest: Manifest
) -> tuple[dict[str, list[ShardRecord]], list[Damaged]]:
    """The shards really stored, by partition, each checked (see "Every run checks");
    the files moved aside on the way. The manifest only lends row counts to compare."""
    known = {record.file: record for records in manifest.shards.values() for record in records}
    found: dict[str, list[ShardRecord]] = {}
    before = len(store.damaged)
    for partition in store.partitions():
        records: list[ShardRecord] = []
        for shard in store.shards_in(partition):
            record = known.get(shard.key)
            if record is not None and record.rows != shard.rows:
                store.quarantine(
                    shard.key,
                    f"holds {plural(shard.rows, 'row')}, the manifest recorded {record.rows}",
                )
                continue
            records.append(_record(shard))
        if records:
            found[partition] = records
    return found, store.damaged[before:]


def _record(shard: Shard) -> ShardRecord:
    return ShardRecord(start=shard.start, end=shard.end, rows=shard.rows, file=shard.key)


def _write_manifest(storage: Storage, manifest: Manifest) -> None:
    body = msgspec.json.format(_manifest_encoder.encode(manifest), indent=2) + b"\n"
    try:
        storage.write_atomic(MANIFEST_NAME, body)
    except OSError as exc:
        raise StorageError.from_os_error(exc, storage.url_of(MANIFEST_NAME)) from exc


def _open(out_dir: str | os.PathLike[str], storage_options: Mapping[str, Any] | None) -> Storage:
    """The dataset's storage, options checked; nothing contacted yet."""
    text = out_dir if isinstance(out_dir, str) else os.fspath(out_dir)
    if not text:
        raise InvalidArgumentError("out_dir is empty; name a directory, e.g. 'liq'")
    if not isinstance(out_dir, str) and text.lower().startswith(("s3:/", "s3a:/")):
        # Path("s3://b/p") is "s3:/b/p": the URL was lost on the way; never a local folder.
        raise InvalidArgumentError(
            f"out_dir {text!r} is an s3:// URL turned into a local path; pass it as a string"
        )
    return open_storage(out_dir, storage_options=storage_options)


# --- the runs -------------------------------------------------------------------------------


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
    storage_options: Mapping[str, Any] | None = None,
) -> BackfillSummary:
    """Fetch ``[start, end)`` of every asset into the dataset at ``out_dir``; resumable.

    Args:
        client: the one client every shard goes through (its rate limit is shared).
        assets: asset codes, e.g. ``["btc", "eth"]``; case-insensitive, duplicates ignored.
        start, end: the window, ``start`` inclusive, ``end`` exclusive.
        out_dir: the dataset: a local directory (created if missing) or
            ``s3://bucket/prefix``.
        interval: bucket width; fixed per dataset.
        page_size: rows per page; ``None`` is the client's default.
        concurrency: shards fetched at once; ``None`` is ``client.max_concurrency``, which
            is what keeps the client's request slots busy (a shard pages sequentially).
        on_progress: called with a :class:`BackfillProgress` after planning and after each
            shard; it runs on the event loop, so keep it quick.
        now: the time the run takes as now (aware); ``None`` is the client's clock
            (:meth:`~kaiko_liq.client.LiquidationClient.now`). Buckets ending after
            ``now`` less the client's ``settle`` are not fetched but left for a later run
            (see "Only settled rows" above and ``BackfillSummary.deferred_from``); the
            server's clock, as it answers, may narrow that further.
        storage_options: S3 settings for an ``s3://`` ``out_dir``
            (:data:`kaiko_liq.fs.STORAGE_OPTIONS`); the AWS environment otherwise.

    Returns a :class:`BackfillSummary`. Raises :class:`InvalidArgumentError` before any
    request for bad arguments or a dataset that is not a compatible backfill;
    :class:`~kaiko_liq.fs.StorageUnavailableError` before any request for a location
    that cannot be used (no bucket, access denied, unreachable);
    :class:`~kaiko_liq.fs.StorageError` when the storage refuses later; the error itself
    for what every shard would hit (a wrong key); :class:`BackfillIncompleteError` when
    some shards or assets failed. What did succeed is stored in every case.
    """
    if not assets:
        raise InvalidArgumentError("backfill needs at least one asset, e.g. ['eth']")
    requests = [
        validate_request(a, start, end, interval=interval, page_size=page_size) for a in assets
    ]
    return await backfill_targets(
        client,
        TOKEN,
        [Token(r.asset, r.interval) for r in requests],
        requests[0].start,
        requests[0].end,
        out_dir,
        page_size=page_size,
        concurrency=concurrency,
        on_progress=on_progress,
        now=now,
        storage_options=storage_options,
    )


async def backfill_events(
    client: LiquidationClient,
    instruments: Sequence[Instrument | str],
    start: TimeLike,
    end: TimeLike,
    out_dir: str | os.PathLike[str],
    *,
    page_size: int | None = None,
    concurrency: int | None = None,
    on_progress: Callable[[BackfillProgress], None] | None = None,
    now: datetime | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> BackfillSummary:
    """Fetch the liquidation events of ``[start, end)`` of every instrument into the
    dataset at ``out_dir`` (partitioned ``exchange=/instrument_class=/instrument=``, one
    file per UTC day); resumable, self-healing and settled-only exactly as
    :func:`backfill` is for assets, with the same arguments, results and errors.

    ``instruments`` are :class:`~kaiko_liq.routes.events.Instrument` s or
    ``"EXCHANGE:CLASS:INSTRUMENT"`` strings (``"binc:perpetual-future:btc-usdt"``).
    """
    if not instruments:
        raise InvalidArgumentError(
            "backfill_events needs at least one instrument, e.g. ['binc:perpetual-future:btc-usdt']"
        )
    targets = [parse_instrument_spec(i) for i in instruments]
    return await backfill_targets(
        client,
        EVENTS,
        targets,
        start,
        end,
        out_dir,
        page_size=page_size,
        concurrency=concurrency,
        on_progress=on_progress,
        now=now,
        storage_options=storage_options,
    )


async def backfill_targets(
    client: LiquidationClient,
    route: Route[Target, Any],
    targets: Sequence[Target],
    start: TimeLike,
    end: TimeLike,
    out_dir: str | os.PathLike[str],
    *,
    page_size: int | None = None,
    concurrency: int | None = None,
    on_progress: Callable[[BackfillProgress], None] | None = None,
    now: datetime | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> BackfillSummary:
    """:func:`backfill` for any route: ``targets`` already typed (the route's: a
    :class:`~kaiko_liq.routes.token.Token`, an
    :class:`~kaiko_liq.routes.events.Instrument`), on one grid; duplicates ignored. What
    :func:`backfill` and :func:`backfill_events` (and the CLI, with the values it
    checked) call; a new route needs nothing more here."""
    if not targets:
        raise InvalidArgumentError(f"a backfill needs at least one {route.noun}")
    unique = list(dict.fromkeys(targets))
    # Validated as a fetch is (the window, the page size), before anything is touched.
    window = client.request(route, unique[0], start, end, sort="asc", page_size=page_size).window
    grid = route.grid(unique[0])
    if any(route.grid(t) != grid for t in unique):
        raise InvalidArgumentError(f"the {route.noun}s of one backfill must share one grid")
    return await _backfill(
        _Fetcher(client, route, page_size),
        unique,
        window.start,
        window.end,
        grid,
        out_dir,
        concurrency=concurrency,
        on_progress=on_progress,
        now=now,
        storage_options=storage_options,
    )


async def _backfill(
    fetcher: _Fetcher[Any, Any],
    targets: list[Any],
    start: datetime,
    end: datetime,
    grid: Grid,
    out_dir: str | os.PathLike[str],
    *,
    concurrency: int | None,
    on_progress: Callable[[BackfillProgress], None] | None,
    now: datetime | None,
    storage_options: Mapping[str, Any] | None,
) -> BackfillSummary:
    client = fetcher.client
    clock = client.now() if now is None else parse_time(now, "now")
    workers = client.max_concurrency if concurrency is None else concurrency
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidArgumentError(f"concurrency must be a positive integer, got {concurrency!r}")
    # Found, not imported: pyarrow loads (in a worker thread) when a file is read or written.
    require_optional("pyarrow.parquet", "backfill", extra="parquet")
    storage = _open(out_dir, storage_options)
    route = fetcher.route
    # No bucket, access denied, unreachable: said before anything is fetched. Then
    # another program's data is refused before anything is written in it.
    await anyio.to_thread.run_sync(storage.check)
    await anyio.to_thread.run_sync(
        lambda: check_store(storage, route=route, grid=grid, server=client.server)
    )
    try:
        held = await anyio.to_thread.run_sync(storage.lock, LOCK_NAME)
    except OSError as exc:
        raise StorageError.from_os_error(exc, storage.url_of(LOCK_NAME), doing="lock") from exc
    try:
        # Folder entries synced once per manifest, not per file (the manifest, written
        # last, lists only files made durable before it).
        store = ShardStore(storage.url, route, grid, storage=storage, sync_each=False)
        shown = Path(out_dir) if not isinstance(out_dir, str) or "://" not in out_dir else out_dir
        run = _Run(fetcher, targets, start, end, grid, store, shown, workers, clock, held)
        return await run.run(on_progress)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(held.release)


@dataclass(slots=True)
class _State:
    """One target's state during a run."""

    target: Any
    label: str
    on_disk: list[ShardRecord] = field(default_factory=list)
    failed: list[FailedRange] = field(default_factory=list)
    stopped: KaikoLiqError | None = None  # set when the target's other shards are dropped
    streak: int = 0  # failed shards in a row
    left: int = 0  # planned shards not yet taken


class _Run:
    """One backfill run's state; every mutation happens on the event loop."""

    def __init__(
        self,
        fetcher: _Fetcher[Any, Any],
        targets: list[Any],
        start: datetime,
        end: datetime,
        grid: Grid,
        store: ShardStore[Any, Any],
        shown: Path | str,
        workers: int,
        now: datetime,
        held: WriterLock,
    ) -> None:
        self.fetcher = fetcher
        self.client = fetcher.client
        self.route = fetcher.route
        self.targets = targets
        self.start, self.end = start, end
        self.grid = grid
        self.store = store
        self.shown = shown
        self.workers = workers
        self.now = now
        self.held = held
        # Nothing after it is fetched; narrowed again by the server's clock as it answers.
        self.horizon = self.route.horizon(targets[0], now, self.client.settle)
        self.manifest = Manifest(interval=grid_text(grid), route=self.route.name)
        self.state: dict[str, _State] = {}
        self.runs: list[str] = []  # this run's partitions, in the order asked
        for target in targets:
            partition = self.route.partition(target)
            self.state[partition] = _State(target, self.route.label(target))
            self.runs.append(partition)
        self.warnings: list[str] = []
        self.fatal: BaseException | None = None
        self.total = self.skipped = self.written = self.rows = self.rows_skipped = 0
        self._manifest_lock = anyio.Lock()
        # Page work (Arrow build, Parquet write, fsync) in as many threads as it can use:
        # more would only queue on the GIL and the disk.
        self.writers = anyio.CapacityLimiter(WRITE_THREADS)
        self._manifest_written = 0.0
        self.jobs: list[tuple[str, SubRange]] = []
        self.requests0, self.retries0 = self.client.stats.requests, self.client.stats.retries
        self.recheck_requests = 0
        self.clock0 = time.monotonic()

    @property
    def deferred_from(self) -> datetime | None:
        """Where the unsettled part of the window begins, if it has one."""
        return max(self.start, self.horizon) if self.end > self.horizon else None

    def _plan(self) -> list[tuple[str, SubRange]]:
        """The missing settled shards of every target, interleaved by time so that all
        targets advance together (a kill leaves each with a complete prefix, not some
        with none)."""
        jobs: list[tuple[str, SubRange]] = []
        # The caller's own end when it is before the horizon (the shards are then those of
        # any run); else the horizon, where a later run's gap will start.
        end = min(self.end, self.horizon)
        for partition in self.runs:
            state = self.state[partition]
            inside = [r for r in state.on_disk if r.start < self.end and r.end > self.start]
            self.skipped += len(inside)
            self.rows_skipped += sum(r.rows for r in inside)
            if self.start >= end:
                continue
            spans = [(self.grid.floor(r.start), self.grid.ceil(r.end)) for r in state.on_disk]
            for gap_lo, gap_hi in gaps_in(self.start, end, self.grid, spans):
                shards = self.fetcher.plan(state.target, gap_lo, gap_hi)
                jobs += [(partition, s) for s in shards]
                state.left += len(shards)
        self.total = self.skipped + len(jobs)
        order = {partition: i for i, partition in enumerate(self.runs)}
        return sorted(jobs, key=lambda j: (j[1].start, order[j[0]]))

    def _progress(self) -> BackfillProgress:
        return BackfillProgress(
            shards_total=self.total,
            shards_done=self.skipped + self.written,
            shards_skipped=self.skipped,
            rows=self.rows,
        )

    async def _save_manifest(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and (
            now - self._manifest_written < MANIFEST_EVERY or self._manifest_lock.locked()
        ):
            return  # the next shard or the end writes it; no queue of writes behind a slow disk
        self._manifest_written = now
        self.manifest.shards = {
            p: list(s.on_disk) for p, s in sorted(self.state.items()) if s.on_disk
        }
        snapshot = msgspec.structs.replace(self.manifest)
        async with self._manifest_lock:
            await anyio.to_thread.run_sync(self._sync_and_record, snapshot)

    def _sync_and_record(self, snapshot: Manifest) -> None:
        """The files the snapshot lists made durable (their folders synced: the store
        writes with ``sync_each=False``), then the manifest written."""
        self.store.sync()
        _write_manifest(self.store.storage, snapshot)

    async def _start(self) -> list[tuple[str, SubRange]]:
        storage = self.store.storage
        self.manifest, notes = await anyio.to_thread.run_sync(
            _load_manifest, storage, self.route, self.grid
        )
        if self.manifest.server is None:
            self.manifest.server = self.client.server
        had_records = any(self.manifest.shards.values())
        on_disk, damaged = await anyio.to_thread.run_sync(_reconcile, self.store, self.manifest)
        self.warnings += notes + [str(d) for d in damaged]
        if on_disk and not had_records and not notes:
            note = f"{MANIFEST_NAME} was missing; rebuilt it from the files"
            logger.warning("%s: %s", self.shown, note)
            self.warnings.append(note)
        # Every partition stored stays in the manifest, not only this run's.
        for partition, records in on_disk.items():
            state = self.state.get(partition)
            if state is None:
                state = self.state[partition] = _State(None, partition)
            state.on_disk = records
        jobs = self._plan()
        self.manifest.runs.append(
            RunRecord(
                assets=[self.state[p].label for p in self.runs],
                start=self.start,
                end=self.end,
                started=self.client.now(),
                deferred_from=self.deferred_from,
            )
        )
        await self._save_manifest(force=True)
        return jobs

    async def _recheck(self) -> None:
        """Fetch the newest stored rows of each target again (about a page) and replace
        those the server changed since: figures revised after they were stored. The
        targets at once, as shards are fetched (the client's limits apply); the notes in
        the order the targets were asked. A target's own trouble stops that target only,
        as in :meth:`_one`."""
        notes: dict[str, str] = {}
        fatal: list[Exception] = []
        slots = anyio.CapacityLimiter(self.workers)

        async def one(partition: str, tg: TaskGroup) -> None:
            async with slots:
                try:
                    note = await self._recheck_one(self.state[partition])
                except Exception as exc:  # raised as itself below, not as a group
                    fatal.append(exc)
                    tg.cancel_scope.cancel()
                    return
            if note is not None:
                notes[partition] = note

        async with anyio.create_task_group() as tg:
            for partition in self.runs:
                if self.state[partition].on_disk:
                    tg.start_soon(one, partition, tg)
        if fatal:
            raise fatal[0]
        for partition in self.runs:
            if partition in notes:
                logger.warning("%s: %s", self.shown, notes[partition])
                self.warnings.append(notes[partition])

    async def _recheck_one(self, state: _State) -> str | None:
        """One target's recheck; what it revised, if anything. Only what the server's
        clock, as it just answered, calls final replaces stored rows: a server behind
        ours answers for buckets it has not settled, and taken as revisions they would
        overwrite settled rows with partial ones for ever (as the cache's recheck)."""
        target = state.target
        newest = self.grid.ceil(max(r.end for r in state.on_disk))
        page_size = self.fetcher.page_size or self.client.page_size
        lo = max(
            self.start, self.route.recheck_from(target, newest, self.client.recheck, page_size)
        )
        hi = min(newest, self.end, self.horizon)
        if not lo < hi:
            return None  # off, or this run does not touch the newest rows
        try:
            rows = await self.fetcher.fetch(target, SubRange(lo, hi))
        except KaikoLiqError as exc:
            if not _stops_target(state, exc):
                logger.warning(
                    "%s: %s: recheck failed, next run tries again: %s", self.shown, state.label, exc
                )
            return None
        hi = min(hi, self.fetcher.settled_before(target))  # judged after the answer
        if not lo < hi:
            return None
        time_of = self.route.time_of
        rows = [r for r in rows if time_of(r) < hi]
        changed = await anyio.to_thread.run_sync(
            self.store.revise, target, lo, hi, rows, limiter=self.writers
        )
        if not changed:
            return None
        shards = await anyio.to_thread.run_sync(self.store.shards, target)
        state.on_disk = [_record(shard) for shard in shards]
        return f"{state.label}: {plural(len(changed), self.route.row_name)} revised by the server"

    async def _keep_lock(self) -> None:
        """Refresh a lock that expires (S3's) while the run goes on; a lost one stops it."""
        every = self.held.refresh_every
        if every is None:
            return
        while True:
            await anyio.sleep(every)
            await anyio.to_thread.run_sync(self.held.refresh)

    async def run(self, on_progress: Callable[[BackfillProgress], None] | None) -> BackfillSummary:
        try:
            async with anyio.create_task_group() as keeper:
                keeper.start_soon(self._guard, keeper)
                keeper.start_soon(self._body, on_progress, keeper)
        finally:
            # Also on cancellation (Ctrl-C): record what landed. Shielded, or the
            # cancellation that got us here would cancel the write too.
            with anyio.CancelScope(shield=True):
                await self._finish(len(self.jobs))
        failed = {s.label: s.failed for s in self.state.values() if s.failed}
        stopped = {s.label: s.stopped for s in self.state.values() if s.stopped is not None}
        summary = self._summary()
        if isinstance(self.fatal, StorageError):
            raise self.fatal.with_saved(self._saved(), self.written) from self.fatal.__cause__
        if self.fatal is not None:
            raise self.fatal
        if failed or stopped:
            raise BackfillIncompleteError(failed, summary, stopped)
        return summary

    async def _body(
        self, on_progress: Callable[[BackfillProgress], None] | None, keeper: TaskGroup
    ) -> None:
        try:
            self.jobs = await self._start()
            await self._recheck()
            self.recheck_requests = self.client.stats.requests - self.requests0
            if on_progress is not None:
                on_progress(self._progress())
            await self._work(self.jobs, on_progress)
        except Exception as exc:
            # Raised as itself after the task group (which would wrap it in a group).
            self.fatal = exc
        finally:
            keeper.cancel_scope.cancel()  # the lock keeper too

    async def _guard(self, keeper: TaskGroup) -> None:
        try:
            await self._keep_lock()
        except (KaikoLiqError, OSError) as exc:
            self.fatal = (
                exc
                if not isinstance(exc, OSError)
                else StorageError.from_os_error(exc, self.store.location, doing="lock")
            )
            keeper.cancel_scope.cancel()

    async def _work(
        self,
        jobs: list[tuple[str, SubRange]],
        on_progress: Callable[[BackfillProgress], None] | None,
    ) -> None:
        pending = iter(jobs)

        async def worker(tg: TaskGroup) -> None:
            # Workers share one iterator: next() never awaits, so no job is taken twice.
            for partition, shard in pending:
                if self.fatal is not None:
                    return
                state = self.state[partition]
                state.left -= 1
                if state.stopped is not None:
                    continue
                try:
                    await self._one(state, shard)
                    if on_progress is not None:
                        on_progress(self._progress())
                except Exception as exc:
                    # Recorded, not raised: a task group would wrap it in an
                    # ExceptionGroup. The run raises it (the caller's on_progress
                    # included), as itself, at the end.
                    if isinstance(exc, OSError):
                        exc = StorageError.from_os_error(exc, self.store.location)
                    self.fatal = exc
                    tg.cancel_scope.cancel()
                    return

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.workers, len(jobs))):
                tg.start_soon(worker, tg)

    async def _finish(self, planned: int) -> None:
        """Record the run's outcome in the manifest, written last; a storage that refuses
        even that only loses the record (the files are the truth), unless nothing else
        went wrong."""
        if not self.manifest.runs:
            return  # stopped before it started: nothing to record
        stopped = {s.label: str(s.stopped) for s in self.state.values() if s.stopped is not None}
        complete = (
            self.fatal is None
            and not stopped
            and not any(s.failed for s in self.state.values())
            and self.written == planned
            and self.deferred_from is None
        )
        self.manifest.runs[-1] = msgspec.structs.replace(
            self.manifest.runs[-1],
            finished=self.client.now(),
            complete=complete,
            failed_assets=stopped,
        )
        try:
            await self._save_manifest(force=True)
        except StorageError as exc:
            if self.fatal is None:
                self.fatal = exc
            else:
                # Said by the error already raised, or repaired by the next run.
                logger.debug("could not record the run in %s: %s", MANIFEST_NAME, exc)

    def _saved(self) -> str | None:
        done = self.skipped + self.written
        if self.written == 0:
            return None
        return (
            f"{done} of {self.total} shards are on disk in {self.shown} "
            f"({self.written} written by this run); fix that and run the same command again "
            "to resume"
        )

    def _summary(self) -> BackfillSummary:
        return BackfillSummary(
            out_dir=self.shown,
            assets=tuple(self.state[p].label for p in self.runs),
            shards_total=self.total,
            shards_skipped=self.skipped,
            shards_written=self.written,
            rows=self.rows,
            requests=self.client.stats.requests - self.requests0,
            retries=self.client.stats.retries - self.retries0,
            seconds=time.monotonic() - self.clock0,
            deferred_from=self.deferred_from,
            deferred_to=self.end if self.deferred_from is not None else None,
            start=self.start,
            end=self.end,
            now=self.now,
            rows_on_disk=self.rows_skipped + self.rows,
            warnings=tuple(self.warnings),
            noun=self.route.noun,
            recheck_requests=self.recheck_requests,
            settle=self.client.settle,
        )

    async def _one(self, state: _State, shard: SubRange) -> None:
        """Fetch one shard and store it. Raises what stops the run; records the rest."""
        try:
            rows = await self.fetcher.fetch(state.target, shard)
        except KaikoLiqError as exc:
            if _stops_target(state, exc):
                return
            state.failed.append(FailedRange(shard.start, shard.end, exc))
            state.streak += 1
            if state.streak >= GIVE_UP_AFTER and state.stopped is None:
                state.stopped = _GaveUp(exc, state.left)
            return
        state.streak = 0
        # Rows the server's clock says may still change are not stored: the rest of the
        # shard is left to a later run, like the unsettled tail.
        end = min(shard.end, self.fetcher.settled_before(state.target))
        if end < shard.end:
            self.horizon = min(self.horizon, max(end, self.start))
            time_of = self.route.time_of
            rows = [r for r in rows if time_of(r) < end]
            if end <= shard.start:
                return
        # Not cancellable once started: the file lands whole, or (if killed) not at all.
        written = await anyio.to_thread.run_sync(
            self.store.write, state.target, shard.start, end, rows, limiter=self.writers
        )
        for piece in written:
            insort(state.on_disk, _record(piece), key=lambda r: r.start)
        self.written += 1
        self.rows += len(rows)
        await self._save_manifest(force=False)


def _stops_target(state: _State, exc: KaikoLiqError) -> bool:
    """The one classification of a failed fetch: raised when every target would hit it
    (a wrong key, a bad parameter); ``True`` (the target stopped) when it is the target's
    own trouble (unknown to the server, inconsistent answers), so the others go on;
    ``False`` for what a later try may not hit (the caller records it)."""
    if isinstance(exc, NotFoundError | InconsistentDataError):
        state.stopped = exc
        return True
    if is_fatal(exc):
        raise exc
    return False
