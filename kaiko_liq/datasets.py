"""Reading a store (a backfill dataset) where it lies, a local directory or
``s3://bucket/prefix``, as one table: any route's, detected from the manifest.

Any Parquet reader reads it too (the README's "Reading the data"): files hold the route's
stored shape, the partitions name the keys (``asset=btc``;
``exchange=binc/instrument_class=future/instrument=btc-usd``), and what is not data is
named with a leading ``.`` or ``_``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .cache import read_identity
from .errors import InvalidArgumentError
from .fs import Storage, StorageError, open_storage
from .layout import is_hidden, parse_shard_filename, split_key
from .optional import import_optional
from .routes import DEFAULT_ROUTE, Route, all_routes, route_named
from .tables import datetime_from_ns, reshape, schema

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as pads

__all__ = ["AssetOnDisk", "describe_backfill", "open_dataset", "read_backfill"]


@dataclass(frozen=True, slots=True)
class AssetOnDisk:
    """One partition of a dataset, as a reader sees it: ``asset`` is its label (``btc``;
    ``binc:perpetual-future:btc-usdt`` for events), then its files, rows, and first and
    last time (``None`` when it has no rows)."""

    asset: str
    files: int
    rows: int
    first: datetime | None
    last: datetime | None


def _route_of(storage: Storage, route: Route[Any, Any] | str | None) -> Route[Any, Any]:
    """The route given, else the one the manifest records, else the one whose partitions
    the location holds (a dataset whose manifest was lost), else the token route."""
    if route is not None:
        return route_named(route if isinstance(route, str) else route.name)
    identity = read_identity(storage)
    if identity:
        name = identity.get("route", DEFAULT_ROUTE)
        if isinstance(name, str) and name in all_routes():
            return route_named(name)
    for candidate in all_routes().values():
        if _listing(storage, f"{candidate.table.keys[0]}="):
            return candidate
    return route_named(DEFAULT_ROUTE)


def _listing(storage: Storage, prefix: str) -> list[str]:
    """The data files' keys under ``prefix``, sorted (hidden and other files skipped)."""
    try:
        entries = storage.list(prefix)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError.from_os_error(exc, storage.url, doing="read") from exc
    return [
        e.key
        for e in entries
        if not is_hidden(e.key) and e.key.endswith(".parquet") and "/" in e.key
    ]


def _by_partition(storage: Storage, route: Route[Any, Any]) -> dict[str, list[str]]:
    parts: dict[str, list[str]] = {}
    for key in _listing(storage, f"{route.table.keys[0]}="):
        folder, _ = split_key(key)
        parts.setdefault(folder, []).append(key)
    return parts


def _label(partition: str) -> str:
    """``btc`` for ``asset=btc``; ``binc:future:btc-usd`` for an instrument's."""
    return ":".join(part.partition("=")[2] for part in partition.split("/"))


def open_dataset(
    location: str | os.PathLike[str],
    *,
    route: Route[Any, Any] | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pads.Dataset:
    """The dataset at ``location`` as a ``pyarrow.dataset.Dataset``, its key columns
    (``asset``; ``exchange``, ``instrument_class``, ``instrument``) strings.

    Declaring the partition types matters: left to inference, an asset named ``1000``
    would come back as an integer."""
    storage = open_storage(location, storage_options=storage_options)
    return _dataset(storage, _route_of(storage, route))


def _dataset(storage: Storage, route: Route[Any, Any]) -> pads.Dataset:
    pa = import_optional("pyarrow", "open_dataset", extra="parquet")
    ds = import_optional("pyarrow.dataset", "open_dataset", extra="parquet")
    spec = route.table
    keys = pa.schema([(name, pa.string()) for name in spec.keys])
    full = schema(spec, spec.stored, keys=False)
    for field in keys:
        full = full.append(field)
    filesystem, root = storage.arrow("")
    files = [f"{root}/{key}" for key in _listing(storage, f"{spec.keys[0]}=")]
    return ds.dataset(
        files,
        filesystem=filesystem,
        format="parquet",
        partitioning=ds.partitioning(keys, flavor="hive"),
        partition_base_dir=root,
        schema=full,
    )


def describe_backfill(
    location: str | os.PathLike[str],
    *,
    assets: Sequence[Any] | None = None,
    route: Route[Any, Any] | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[AssetOnDisk]:
    """What the dataset at ``location`` holds per partition: files, rows, first and last
    time. Sorted by label; with ``assets`` (asset codes, or instruments for an events
    dataset), just those, in that order (one with nothing stored has 0 files).

    Reads Parquet footers only (row counts and the time column's statistics), not the
    data: a backfill's closing summary should not cost a second pass over what it wrote.
    """
    storage = open_storage(location, storage_options=storage_options)
    chosen = _route_of(storage, route)
    found: dict[str, AssetOnDisk] = {}
    for partition, keys in sorted(_by_partition(storage, chosen).items()):
        files = rows = 0
        first: int | None = None
        last: int | None = None
        for key in keys:
            if parse_shard_filename(split_key(key)[1]) is None:
                continue
            files += 1
            meta = _footer(storage, key)
            rows += meta.num_rows
            for lo, hi in _time_span(storage, key, meta, chosen.table.time):
                first = lo if first is None else min(first, lo)
                last = hi if last is None else max(last, hi)
        label = _label(partition)
        found[label] = AssetOnDisk(label, files, rows, _from_ns(first), _from_ns(last))
    if assets is None:  # every partition with a file
        wanted = sorted(label for label, d in found.items() if d.files)
    else:
        wanted = [chosen.label_of(a) for a in assets]
    return [found.get(w) or AssetOnDisk(w, 0, 0, None, None) for w in dict.fromkeys(wanted)]


def _footer(storage: Storage, key: str) -> Any:
    pq = import_optional("pyarrow.parquet", "describe_backfill", extra="parquet")
    filesystem, path = storage.arrow(key)
    try:
        with filesystem.open_input_file(path) as handle:
            return pq.read_metadata(handle)
    except OSError as exc:
        raise StorageError(storage.url_of(key), str(exc), doing="read") from exc


def _time_span(storage: Storage, key: str, meta: Any, column: str) -> list[tuple[int, int]]:
    """The time column's (min, max) in ns per row group, from the footer's statistics;
    from the column itself for a file written without them."""
    index = meta.schema.names.index(column)
    spans: list[tuple[int, int]] = []
    for group in range(meta.num_row_groups):
        chunk = meta.row_group(group)
        if chunk.num_rows == 0:
            continue
        stats = chunk.column(index).statistics
        if stats is None or not stats.has_min_max:
            pq = import_optional("pyarrow.parquet", "describe_backfill", extra="parquet")
            filesystem, path = storage.arrow(key)
            times = pq.read_table(path, columns=[column], filesystem=filesystem)[column]
            values = [v.value for v in times.cast("int64")]
            return [(min(values), max(values))] if values else []
        spans.append((int(stats.min_raw), int(stats.max_raw)))  # raw int64 nanoseconds
    return spans


def _from_ns(ns: int | None) -> datetime | None:
    return None if ns is None else datetime_from_ns(ns)


def _refuse_overlaps(storage: Storage, route: Route[Any, Any]) -> None:
    """Raise if two files of one partition hold rows of the same instants: every reader
    would see those rows twice. From the footers' statistics only. (Events files meet at
    a window's edge without sharing an instant: a window is ``[start, end)``.)"""
    for partition, keys in sorted(_by_partition(storage, route).items()):
        spans: list[tuple[int, int, str]] = []
        for key in keys:
            meta = _footer(storage, key)
            for lo, hi in _time_span(storage, key, meta, route.table.time):
                spans.append((lo, hi, split_key(key)[1]))
        spans.sort()
        for (_, a_hi, a), (b_lo, _, b) in itertools.pairwise(spans):
            if b_lo <= a_hi and a != b:
                raise InvalidArgumentError(
                    f"{storage.url_of(partition)}: {a} and {b} hold the same {route.row_name}s, "
                    "so every reader would see them twice; move one aside (a backfill or "
                    "fetch --cache run does)"
                )


def read_backfill(
    location: str | os.PathLike[str],
    *,
    shape: str | None = None,
    assets: Sequence[Any] | None = None,
    route: Route[Any, Any] | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pa.Table:
    """The dataset at ``location`` as one table, sorted by its keys then time.

    ``shape`` one of the route's (token: ``"totals"``, the default, ``"exchanges"``
    flattened, ``"nested"`` as stored; events: ``"events"``); ``assets`` keeps only those
    asset codes (or instruments, ``"binc:future:btc-usd"``, for an events dataset).
    """
    storage = open_storage(location, storage_options=storage_options)
    chosen = _route_of(storage, route)
    spec = chosen.table
    spec.shape(shape)  # an unknown shape is refused before anything is read
    ds = import_optional("pyarrow.dataset", "read_backfill", extra="parquet")
    _refuse_overlaps(storage, chosen)
    where: Any = None
    if assets is not None:
        labels = [chosen.label_of(a) for a in assets]
        for label in labels:
            values = label.split(":")
            match = ds.field(spec.keys[0]) == values[0]
            for name, value in zip(spec.keys[1:], values[1:], strict=True):
                match = match & (ds.field(name) == value)
            where = match if where is None else where | match
        if not labels:
            where = ds.scalar(False)
    table = _dataset(storage, chosen).to_table(filter=where)
    columns = [*spec.keys, *(n for n in table.column_names if n not in spec.keys)]
    order = [(name, "ascending") for name in (*spec.keys, spec.time)]
    table = table.select(columns).sort_by(order)
    return reshape(spec, table, shape)
