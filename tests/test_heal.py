"""A damaged dataset heals on the next run: each kind of damage, then the same command.

Every case ends the same way: the run succeeds, refetches exactly the damaged shards (and
nothing when only the manifest was hurt), readers see every row once, and the summary
says what was repaired without crashing."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from kaiko_liq.backfill import MANIFEST_NAME, describe_backfill, read_backfill, shard_filename
from kaiko_liq.errors import InvalidArgumentError
from kaiko_liq.export import to_arrow
from tests.conftest import DEAD_PID
from tests.test_backfill import T0, D, FakeClient, expected_rows, manifest, run, shard_files, totals

SHARD = f"asset=eth/{shard_filename(T0 + D, T0 + 2 * D)}"
WANT = {"btc": expected_rows("btc", T0, T0 + 4 * D), "eth": expected_rows("eth", T0, T0 + 4 * D)}


async def healed(out: Path, caplog: pytest.LogCaptureFixture) -> tuple[Any, FakeClient]:
    """Run the same command again; check the dataset is whole; return what the run did."""
    client = FakeClient()
    with caplog.at_level(logging.WARNING, logger="kaiko_liq"):
        summary = await run(client, out, "eth", "btc")
    assert read_backfill(out).to_pylist() == totals(WANT)
    assert read_backfill(out, shape="exchanges").equals(
        to_arrow({"btc": WANT["btc"], "eth": WANT["eth"]}, shape="exchanges")
    )
    assert str(summary)  # the summary renders, whatever was repaired
    assert [d.files for d in describe_backfill(out)] == [4, 4]
    m = manifest(out)
    assert m["runs"][-1]["complete"] is True
    assert sorted(s["file"] for shards in m["shards"].values() for s in shards) == sorted(
        shard_files(out)
    )
    return summary, client


@pytest.fixture
async def dataset(tmp_path: Path) -> Path:
    await run(FakeClient(), tmp_path, "eth", "btc")
    return tmp_path


def temporary_files(out: Path) -> list[Path]:
    return list(out.rglob("*.tmp"))


def moved_aside(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("asset=*/.*.damaged-*"))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.write_bytes(b""), "empty (0 bytes)"),
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "not a readable"),
        (lambda p: p.write_bytes(b"PAR1" + b"\0" * 100 + b"PAR1"), "not a readable"),
        (lambda p: pq.write_table(to_arrow(WANT["eth"][:3], asset=False), p), "columns differ"),
    ],
    ids=["empty", "truncated", "garbage", "foreign"],
)
async def test_a_damaged_shard_is_moved_aside_and_fetched_again(
    dataset: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], object],
    reason: str,
) -> None:
    damage(dataset / SHARD)
    summary, client = await healed(dataset, caplog)
    assert client.fetched == [("eth", T0 + D, T0 + 2 * D)]
    assert moved_aside(dataset) and moved_aside(dataset)[0].startswith(f".{Path(SHARD).name}.")
    assert reason in caplog.text and reason in str(summary)
    assert (summary.shards_skipped, summary.shards_written) == (7, 1)


async def test_a_shard_whose_rows_disagree_with_the_manifest_is_fetched_again(
    dataset: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A readable file, but not the one the manifest recorded (one row short).
    path = dataset / SHARD
    table = pq.read_table(path, partitioning=None)
    pq.write_table(table.slice(1), path)
    summary, client = await healed(dataset, caplog)
    assert client.fetched == [("eth", T0 + D, T0 + 2 * D)]
    assert "the manifest recorded" in caplog.text and "the manifest recorded" in str(summary)


async def test_a_missing_shard_is_fetched_again(
    dataset: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (dataset / SHARD).unlink()
    summary, client = await healed(dataset, caplog)
    assert client.fetched == [("eth", T0 + D, T0 + 2 * D)]
    assert summary.warnings == ()


async def test_a_stray_unreadable_parquet_is_moved_aside(
    dataset: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stray = dataset / "asset=btc" / "notes.parquet"
    stray.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="magic bytes"):  # what it did to every reader
        read_backfill(dataset)
    summary, client = await healed(dataset, caplog)
    assert client.fetched == []
    assert not stray.exists() and moved_aside(dataset)[0].startswith(".notes.parquet.damaged-")
    assert "notes.parquet" in caplog.text and "notes.parquet" in str(summary)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"\x00\xff{garbage"),
        lambda p: p.write_text('{"interval": "1h", "shards": {"eth": [{"start": 5}]}}'),
        lambda p: p.write_bytes(b""),
        lambda p: p.write_text('{"interval": "90m"}'),
    ],
    ids=["garbage", "wrong-shape", "empty", "bad-interval"],
)
async def test_a_corrupt_manifest_is_rebuilt_from_the_files(
    dataset: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[Path], object]
) -> None:
    damage(dataset / MANIFEST_NAME)
    summary, client = await healed(dataset, caplog)
    assert client.fetched == []  # every intact file is resumed, none refetched
    assert "rebuilt it from the files" in caplog.text and "rebuilt" in str(summary)
    rows = {s["file"]: s["rows"] for shards in manifest(dataset)["shards"].values() for s in shards}
    assert rows[SHARD] == len(expected_rows("eth", T0 + D, T0 + 2 * D))


async def test_a_missing_manifest_is_rebuilt_from_the_files(
    dataset: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (dataset / MANIFEST_NAME).unlink()
    summary, client = await healed(dataset, caplog)
    assert client.fetched == []
    assert f"{MANIFEST_NAME} was missing; rebuilt it" in str(summary)


async def test_a_missing_manifest_and_a_damaged_shard_heal_together(
    dataset: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (dataset / MANIFEST_NAME).unlink()
    (dataset / SHARD).write_bytes(b"")
    _, client = await healed(dataset, caplog)
    assert client.fetched == [("eth", T0 + D, T0 + 2 * D)]


async def test_without_a_manifest_the_files_still_guard_the_interval(dataset: Path) -> None:
    """The files record their grid, so a lost manifest cannot let another interval in."""
    (dataset / MANIFEST_NAME).unlink()
    client = FakeClient()
    with pytest.raises(InvalidArgumentError, match="holds 1h buckets, not 4h"):
        await run(client, dataset, "eth", interval="4h")
    assert client.fetched == []


async def test_an_empty_partition_and_leftovers_do_not_disturb_a_run(
    dataset: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (dataset / "asset=sol").mkdir()
    (dataset / "asset=eth" / f".{Path(SHARD).name}.{DEAD_PID}.0123abcdef01.tmp").write_bytes(
        b"PAR1 half"
    )
    m = manifest(dataset)
    m["shards"]["ghost"] = [
        {"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z", "rows": 3,
         "file": "asset=ghost/20250301T000000Z_20250302T000000Z.parquet"}
    ]  # fmt: skip
    (dataset / MANIFEST_NAME).write_text(json.dumps(m))
    summary, client = await healed(dataset, caplog)
    assert client.fetched == [] and summary.warnings == ()
    assert "ghost" not in manifest(dataset)["shards"]  # a record without its file is dropped
    assert not temporary_files(dataset)
