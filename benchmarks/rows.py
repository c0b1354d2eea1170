"""Row identity: a count and a checksum that both kinds of client can agree on.

kaiko-liq returns :class:`~kaiko_liq.models.LiquidationRow` structs; the naive clients
return ``json.loads`` dicts. Both are reduced to the same canonical tuple per row (the
timestamp, counts as ``int``, amounts as ``float``, then the exchanges; ``json``
reads a ``0`` amount as ``int`` where msgspec reads ``0.0``), sorted per asset by
timestamp, and hashed. A benchmark whose clients disagree on the data measures nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaiko_liq.models import LiquidationRow

__all__ = ["Canonical", "RowSet", "canonical_dict", "canonical_struct", "summarize"]

Canonical = tuple[Any, ...]

_COUNTS = ("total_trades", "long_trades", "short_trades")
_AMOUNTS = ("total_amount", "long_amount", "short_amount")


def canonical_dict(row: Mapping[str, Any]) -> Canonical:
    """The canonical tuple of a ``json.loads`` row."""
    return (
        int(row["interval_timestamp"]),
        *(int(row[k]) for k in _COUNTS),
        *(float(row[k]) for k in _AMOUNTS),
        tuple(
            (
                str(ex["exchange"]),
                *(int(ex[k]) for k in _COUNTS),
                *(float(ex[k]) for k in _AMOUNTS),
            )
            for ex in row["exchanges"]
        ),
    )


def canonical_struct(row: LiquidationRow) -> Canonical:
    """The canonical tuple of a kaiko-liq row."""
    return (
        row.interval_timestamp,
        row.total_trades,
        row.long_trades,
        row.short_trades,
        float(row.total_amount),
        float(row.long_amount),
        float(row.short_amount),
        tuple(
            (
                ex.exchange,
                ex.total_trades,
                ex.long_trades,
                ex.short_trades,
                float(ex.total_amount),
                float(ex.long_amount),
                float(ex.short_amount),
            )
            for ex in row.exchanges
        ),
    )


@dataclass(frozen=True, slots=True)
class RowSet:
    """What a client returned: rows per asset, duplicates, and one checksum over all."""

    rows: int
    per_asset: dict[str, int]
    duplicates: int
    checksum: str

    def same_data(self, other: RowSet) -> bool:
        return self.checksum == other.checksum and self.rows == other.rows

    def to_json(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "per_asset": self.per_asset,
            "duplicates": self.duplicates,
            "checksum": self.checksum,
        }


def summarize(by_asset: Mapping[str, Iterable[Canonical]]) -> RowSet:
    """Sort each asset's rows by timestamp and hash them all, assets in name order."""
    digest = hashlib.blake2b(digest_size=8)
    per_asset: dict[str, int] = {}
    duplicates = 0
    for asset in sorted(by_asset):
        rows: Sequence[Canonical] = sorted(by_asset[asset])
        per_asset[asset] = len(rows)
        duplicates += len(rows) - len({r[0] for r in rows})
        digest.update(asset.encode())
        for row in rows:
            digest.update(repr(row).encode())
    return RowSet(
        rows=sum(per_asset.values()),
        per_asset=per_asset,
        duplicates=duplicates,
        checksum=digest.hexdigest(),
    )


def read_backfill_rows(directory: Path) -> dict[str, list[Canonical]]:
    """The rows a backfill wrote, read back from its Parquet files, by asset."""
    import pyarrow.dataset as ds

    table = ds.dataset(directory, format="parquet", partitioning="hive").to_table()
    by_asset: dict[str, list[Canonical]] = {}
    for row in table.to_pylist():
        by_asset.setdefault(str(row["asset"]), []).append(canonical_dict(row))
    return by_asset
