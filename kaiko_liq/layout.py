"""How a store names what it keeps: shard files by window, partitions by target, the
manifest, the lock, and the names readers skip (temporary and moved-aside files).

A store's keys are ``/``-separated and relative to its root (a local directory or an
``s3://`` prefix, :mod:`kaiko_liq.fs`)::

    _manifest.json                                        the record (readers skip ``_``)
    .lock                                                 a run's writer lock
    asset=btc/20250108T000000Z_20250217T000000Z.parquet   the rows of that window
    exchange=binc/instrument_class=future/instrument=btc-usd/
        20250108T000000Z_20250109T000000Z.parquet

A file's name is its window, to the microsecond when it is not a whole second
(``20250108T101112.345000Z``): sortable, and no ``:`` for Windows. Names starting with
``.`` or ``_`` are not data: every reader (ours, pyarrow's, polars', DuckDB's globs on
``*.parquet``) skips them.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from datetime import UTC, datetime

__all__ = [
    "LOCK_NAME",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "aside_name",
    "is_hidden",
    "is_temporary",
    "parse_shard_filename",
    "shard_filename",
    "split_key",
    "stale_temporary",
]

#: The dataset record (written by :mod:`kaiko_liq.backfill`, and by a cache for the same
#: layout), its format and version.
MANIFEST_NAME = "_manifest.json"
MANIFEST_FORMAT = "kaiko-liq backfill"
MANIFEST_VERSION = 1
#: A run's writer lock at the root; a write's lock is ``<partition>/.lock``.
LOCK_NAME = ".lock"

#: A temporary file this old was left by a killed writer; younger ones may be in flight
#: in another process sharing the store.
_STALE_TEMPORARY = 3600.0
_STAMP = "%Y%m%dT%H%M%S"
_STAMP_RE = r"\d{8}T\d{6}(?:\.\d{6})?Z"
_SHARD_RE = re.compile(rf"^({_STAMP_RE})_({_STAMP_RE})\.parquet$")
# atomic.atomic_write's temporary names: ".<final name>.<pid>.<hex>.tmp" (older: no pid)
_TEMP_RE = re.compile(r"^\..+\.[0-9a-f]+\.tmp$")
_TEMP_PID_RE = re.compile(r"\.(\d+)\.[0-9a-f]{12}\.tmp$")


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


def split_key(key: str) -> tuple[str, str]:
    """``("asset=btc", "x.parquet")`` for ``"asset=btc/x.parquet"``: folder and name."""
    folder, _, name = key.rpartition("/")
    return folder, name


def is_hidden(key: str) -> bool:
    """Whether any part of ``key`` starts with ``.`` or ``_``: not data, readers skip it."""
    return any(part.startswith((".", "_")) for part in key.split("/"))


def is_temporary(name: str) -> bool:
    """Whether ``name`` is an :func:`~kaiko_liq.atomic.atomic_write` temporary file."""
    return _TEMP_RE.match(name) is not None


def aside_name(key: str) -> str:
    """Where a damaged file is moved: ``.<name>.damaged-<hex>`` beside it."""
    folder, name = split_key(key)
    moved = f".{name}.damaged-{secrets.token_hex(3)}"
    return f"{folder}/{moved}" if folder else moved


def stale_temporary(name: str, modified: float | None) -> bool:
    """Whether a temporary file was left by a killed writer: its writer (the pid in the
    name) is gone; a name without a pid (an older version's) once it is an hour old."""
    owner = _TEMP_PID_RE.search(name)
    if owner is not None:
        return not _alive(int(owner.group(1)))
    return modified is not None and time.time() - modified >= _STALE_TEMPORARY


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
