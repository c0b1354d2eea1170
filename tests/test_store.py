"""The shard store: exact round trips, gaps on the bucket grid, atomic writes, damaged
files moved aside, the cache's per-origin layout, and two processes filling one store."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiko_liq.cache import origin_slug
from kaiko_liq.errors import InvalidArgumentError
from kaiko_liq.export import to_arrow
from kaiko_liq.fs import StorageError
from kaiko_liq.layout import parse_shard_filename, shard_filename
from kaiko_liq.models import ExchangeVolume, LiquidationRow
from kaiko_liq.query import parse_interval
from kaiko_liq.settle import CLOCK_MARGIN, SETTLE, settled_horizon
from kaiko_liq.store import NotStoredError
from tests.stores import tok, token_cache, token_store

H = timedelta(hours=1)
D = timedelta(days=1)
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def row(t: datetime, n: int = 1, exchanges: list[ExchangeVolume] | None = None) -> LiquidationRow:
    exchanges = (
        exchanges
        if exchanges is not None
        else [
            ExchangeVolume("okex", n, n * 0.1, n, n * 0.1, 0, 0.0),
            ExchangeVolume("bbit", 2, 1e-300, 0, 0.0, 2, 1e-300),
        ]
    )
    return LiquidationRow(
        interval_time=t,
        # As sent, which need not agree with interval_time to the digit: kept as is.
        interval_timestamp=int(t.timestamp()) * 10**9 + 7,
        total_trades=n + 2,
        total_amount=n * 0.1 + 1e-300,
        long_trades=n,
        long_amount=n * 0.1,
        short_trades=2,
        short_amount=1e-300,
        exchanges=exchanges,
    )


def hourly(start: datetime, hours: int, skip: int = 5) -> list[LiquidationRow]:
    """Rows of ``hours`` buckets from ``start``, every ``skip``-th one absent (quiet)."""
    return [row(start + i * H, i) for i in range(hours) if i % skip != skip - 1]


# --- names, horizon, slugs (pure) ------------------------------------------------------------


def test_shard_names_round_trip_and_other_names_are_not_shards() -> None:
    odd = T0 + timedelta(seconds=1, microseconds=5)
    assert parse_shard_filename(shard_filename(odd, T0 + D)) == (odd, T0 + D)
    for name in ["x.parquet", ".20250301T000000Z_20250302T000000Z.parquet.abc.tmp",
                 "20250302T000000Z_20250301T000000Z.parquet"]:  # fmt: skip
        assert parse_shard_filename(name) is None


def test_the_settled_horizon_is_an_hour_and_a_margin_behind_on_the_grid() -> None:
    assert SETTLE == H and timedelta(seconds=30) == CLOCK_MARGIN
    assert settled_horizon(parse_interval("1h"), T0 + 5 * H + timedelta(minutes=59)) == T0 + 4 * H
    assert settled_horizon(parse_interval("4h"), T0 + 5 * H + CLOCK_MARGIN) == T0 + 4 * H
    # A clock up to the margin ahead of the server's does not take a bucket for settled.
    assert settled_horizon(parse_interval("4h"), T0 + 5 * H) == T0
    assert settled_horizon(parse_interval("1h"), T0 + 5 * H + timedelta(seconds=29)) == T0 + 3 * H
    assert settled_horizon(parse_interval("1d"), T0 + D + H + CLOCK_MARGIN) == T0 + D


def test_origin_slugs_keep_origins_apart_and_are_safe_names() -> None:
    assert origin_slug("https://us.market-api.kaiko.io") == "https_us.market-api.kaiko.io_443"
    assert origin_slug("http://127.0.0.1:8080/v2") == "http_127.0.0.1_8080"
    assert origin_slug("http://127.0.0.1:8080") != origin_slug("http://127.0.0.1:8081")
    assert origin_slug("https://EU.market-api.kaiko.io:443/") == origin_slug(
        "https://eu.market-api.kaiko.io"
    )
    v6 = origin_slug("http://[::1]:9000")
    assert "/" not in v6 and ":" not in v6 and v6.startswith("http_") and "_9000-" in v6


def test_the_cache_has_one_store_per_origin_and_grid(tmp_path: Path) -> None:
    a = token_cache(tmp_path, "http://127.0.0.1:8080", "1h")
    b = token_cache(tmp_path, "https://us.market-api.kaiko.io", "1h")
    assert Path(a.location) == tmp_path / "http_127.0.0.1_8080" / "1h"
    assert b.location != a.location
    assert token_cache(tmp_path, "http://127.0.0.1:8080", "24h").location == (
        token_cache(tmp_path, "http://127.0.0.1:8080", "1d").location
    )
    assert token_cache(tmp_path, "http://127.0.0.1:8080", "4h").location.endswith("/4h")


# --- round trip -----------------------------------------------------------------------------------


def test_rows_read_back_exactly_as_written(tmp_path: Path) -> None:
    store = token_store(tmp_path, "1h")
    rows = hourly(T0, 24)
    # Odd corners: no exchanges, one exchange, a sub-second time, extreme floats.
    rows[0] = row(T0, 0, exchanges=[])
    rows[1] = row(T0 + H, 1, exchanges=[ExchangeVolume("krkn", 1, 5e300, 1, 5e300, 0, -0.0)])
    [shard] = store.write(tok("btc"), T0, T0 + D, rows)
    assert (shard.start, shard.end, shard.rows) == (T0, T0 + D, len(rows))
    assert Path(shard.url) == tmp_path / "asset=btc" / shard_filename(T0, T0 + D)
    back = store.read_rows(tok("btc"), T0, T0 + D)
    assert back == rows
    for got, want in zip(back, rows, strict=True):
        assert got.interval_timestamp == want.interval_timestamp
        assert [e.exchange for e in got.exchanges] == [e.exchange for e in want.exchanges]
        assert got.interval_time.tzinfo is UTC
    # The file is the nested shape (asset from the directory), as every reader sees it.
    assert (
        pq.ParquetFile(Path(shard.url)).read().equals(to_arrow(rows, asset=False, shape="nested"))
    )


@settings(max_examples=25, deadline=None)
@given(
    hours=st.lists(st.integers(0, 47), unique=True, max_size=20),
    lo=st.integers(0, 47),
    span=st.integers(1, 48),
)
def test_a_read_is_the_rows_of_the_buckets_the_window_touches(
    tmp_path_factory: pytest.TempPathFactory, hours: list[int], lo: int, span: int
) -> None:
    store = token_store(tmp_path_factory.mktemp("s"), "1h")
    rows = [row(T0 + h * H, h) for h in sorted(hours)]
    store.write(tok("eth"), T0, T0 + 24 * H, [r for r in rows if r.interval_time < T0 + D])
    store.write(tok("eth"), T0 + D, T0 + 2 * D, [r for r in rows if r.interval_time >= T0 + D])
    start = T0 + lo * H + timedelta(minutes=30)  # mid-bucket: its bucket is included
    end = min(start + span * H, T0 + 2 * D)
    if start >= end:
        return
    want = [r for r in rows if start - timedelta(minutes=30) <= r.interval_time < end]
    assert store.read_rows(tok("eth"), start, end) == want


def test_reading_what_is_not_stored_says_what_is_missing(tmp_path: Path) -> None:
    store = token_store(tmp_path, "1h")
    store.write(tok("btc"), T0, T0 + D, hourly(T0, 24))
    with pytest.raises(NotStoredError, match=r"btc: not in the store: \[2025-03-02T00:00:00Z"):
        store.read_rows(tok("btc"), T0, T0 + 2 * D)
    with pytest.raises(NotStoredError):
        store.read_rows(tok("eth"), T0, T0 + H)


def test_an_empty_window_is_stored_as_fetched_and_empty(tmp_path: Path) -> None:
    store = token_store(tmp_path, "1h")
    [shard] = store.write(tok("btc"), T0, T0 + D, [])
    assert shard.rows == 0 and Path(shard.url).stat().st_size > 0
    assert store.gaps(tok("btc"), T0, T0 + D) == []
    assert store.read_rows(tok("btc"), T0, T0 + D) == []


def test_rows_outside_the_window_or_out_of_order_are_refused(tmp_path: Path) -> None:
    store = token_store(tmp_path, "1h")
    with pytest.raises(InvalidArgumentError, match="inside"):
        store.write(tok("btc"), T0, T0 + H, [row(T0 + H)])
    with pytest.raises(InvalidArgumentError, match="ascending"):
        store.write(tok("btc"), T0, T0 + D, [row(T0 + H), row(T0)])
    assert not (tmp_path / "asset=btc").exists() or not list((tmp_path / "asset=btc").iterdir())


# --- gaps -----------------------------------------------------------------------------------------


def test_gaps_and_covered_work_on_buckets(tmp_path: Path) -> None:
    store = token_store(tmp_path, "1h")
    assert store.gaps(tok("btc"), T0, T0 + D) == [(T0, T0 + D)]
    store.write(tok("btc"), T0 + timedelta(minutes=30), T0 + 5 * H, hourly(T0, 5))
    store.write(tok("btc"), T0 + 10 * H, T0 + 12 * H + timedelta(minutes=1), [])
    assert store.covered(tok("btc")) == [(T0, T0 + 5 * H), (T0 + 10 * H, T0 + 13 * H)]
    end = T0 + D + timedelta(minutes=5)
    assert store.gaps(tok("btc"), T0, end) == [(T0 + 5 * H, T0 + 10 * H), (T0 + 13 * H, end)]
    assert store.gaps(tok("btc"), T0 + H, T0 + 4 * H) == []
    assert store.partitions() == ["asset=btc"]


def test_a_file_moved_away_between_listing_and_checking_is_a_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process moved it aside after we listed the directory: not there, no error.
    store = token_store(tmp_path, "1h")
    store.write(tok("btc"), T0, T0 + 5 * H, hourly(T0, 5))
    listed = store.storage.list("asset=btc/")
    for entry in listed:
        os.unlink(tmp_path / entry.key)
    monkeypatch.setattr(store.storage, "list", lambda _prefix="": listed)
    assert store.gaps(tok("btc"), T0, T0 + 5 * H) == [(T0, T0 + 5 * H)]


def test_a_write_over_stored_buckets_adds_only_the_missing_parts(tmp_path: Path) -> None:
    """What a second process does when another one stored part of its window first."""
    store = token_store(tmp_path, "1h")
    store.write(tok("btc"), T0 + 6 * H, T0 + 12 * H, hourly(T0 + 6 * H, 6))
    rows = hourly(T0, 24)
    written = store.write(tok("btc"), T0, T0 + D, rows)
    assert [(s.start, s.end) for s in written] == [(T0, T0 + 6 * H), (T0 + 12 * H, T0 + D)]
    assert store.read_rows(tok("btc"), T0, T0 + D) == [
        *[r for r in rows if r.interval_time < T0 + 6 * H],
        *hourly(T0 + 6 * H, 6),
        *[r for r in rows if r.interval_time >= T0 + 12 * H],
    ]
    assert store.write(tok("btc"), T0, T0 + D, rows) == []  # all there: nothing written


def test_overlapping_files_copied_in_by_hand_give_each_bucket_once(tmp_path: Path) -> None:
    a, b = token_store(tmp_path / "a", "1h"), token_store(tmp_path / "b", "1h")
    rows = hourly(T0, 48)
    a.write(tok("btc"), T0, T0 + 30 * H, rows[: sum(r.interval_time < T0 + 30 * H for r in rows)])
    b.write(tok("btc"), T0 + D, T0 + 2 * D, [r for r in rows if r.interval_time >= T0 + D])
    for path in (tmp_path / "b" / "asset=btc").glob("*.parquet"):
        path.rename(tmp_path / "a" / "asset=btc" / path.name)
    assert a.read_rows(tok("btc"), T0, T0 + 2 * D) == rows


# --- atomic writes and damage -------------------------------------------------------------------


def test_a_failed_write_leaves_nothing_and_says_which_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = token_store(tmp_path, "1h")

    def full(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)  # the rename that would publish the file
    with pytest.raises(StorageError) as info:
        store.write(tok("btc"), T0, T0 + D, hourly(T0, 24))
    err = info.value
    assert Path(err.location) == tmp_path / "asset=btc" / shard_filename(T0, T0 + D)
    assert err.reason == "No space left on device" and err.errno == 28
    assert str(err) == f"cannot write {Path(err.location)}: No space left on device"
    # No temporary file left behind (the writer lock file stays, as flock needs).
    assert os.listdir(tmp_path / "asset=btc") == [".lock"]


def test_a_file_where_the_store_should_be_is_one_storage_error(tmp_path: Path) -> None:
    (tmp_path / "store").write_text("not a directory")
    store = token_store(tmp_path / "store", "1h")
    with pytest.raises(StorageError, match=r"cannot lock .*store/asset=btc: Not a directory"):
        store.write(tok("btc"), T0, T0 + D, [])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.write_bytes(b""), "empty (0 bytes)"),
        (lambda p: p.write_bytes(p.read_bytes()[:-20]), "not a readable Parquet file"),
        (lambda p: pq.write_table(to_arrow([row(T0)], asset=False), p), "columns differ"),
    ],
)
def test_a_damaged_file_is_moved_aside_and_becomes_a_gap(
    tmp_path: Path, damage: object, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = token_store(tmp_path, "1h")
    [shard] = store.write(tok("btc"), T0, T0 + D, hourly(T0, 24))
    store.write(tok("btc"), T0 + D, T0 + 2 * D, hourly(T0 + D, 24))
    damage(Path(shard.url))  # type: ignore[operator]
    again = token_store(tmp_path, "1h")
    with caplog.at_level("WARNING", logger="kaiko_liq"):
        assert again.gaps(tok("btc"), T0, T0 + 2 * D) == [(T0, T0 + D)]
    [moved] = again.damaged
    assert reason in moved.reason and Path(moved.url) == Path(shard.url)
    assert not Path(shard.url).exists() and Path(moved.moved_to).name.startswith(".")
    assert reason in caplog.text
    # Healed by the next write; readers never saw the bad file once it was moved.
    again.write(tok("btc"), T0, T0 + D, hourly(T0, 24))
    assert again.read_rows(tok("btc"), T0, T0 + 2 * D) == hourly(T0, 24) + hourly(T0 + D, 24)


def test_a_file_of_another_grid_is_refused(tmp_path: Path) -> None:
    token_store(tmp_path, "4h").write(tok("btc"), T0, T0 + D, [])
    with pytest.raises(InvalidArgumentError, match=r"holds 4h buckets, not 1h"):
        token_store(tmp_path, "1h").gaps(tok("btc"), T0, T0 + D)


# --- two processes --------------------------------------------------------------------------------

_ROWS = textwrap.dedent(
    """
    from datetime import UTC, datetime, timedelta
    from kaiko_liq.models import ExchangeVolume, LiquidationRow

    T0, H = datetime(2025, 3, 1, tzinfo=UTC), timedelta(hours=1)

    def rows_of(hours):
        ex = [ExchangeVolume("okex", 1, 0.5, 1, 0.5, 0, 0.0)]
        return [
            LiquidationRow(T0 + h * H, h * 3_600 * 10**9, 1, 0.5, 1, 0.5, 0, 0.0, ex)
            for h in range(hours) if h % 5 != 4
        ]
    """
)
_WRITER = _ROWS + textwrap.dedent(
    """
    import sys
    from tests.stores import tok, token_store

    directory, offset, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = token_store(directory, "1h")
    every = rows_of(240)
    # Windows of `step` hours from `offset`: the two writers' windows straddle each other.
    written, t = 0, T0 + offset * H
    while t < T0 + 240 * H:
        hi = min(t + step * H, T0 + 240 * H)
        rows = [r for r in every if t <= r.interval_time < hi]
        written += len(store.write(tok("btc"), t, hi, rows))
        t = hi
    print(written)
    """
)


def test_two_processes_filling_one_store_at_once_never_duplicate_a_bucket(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(offset), str(step)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=root,
            text=True,
        )
        for offset, step in [(0, 24), (7, 17)]
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    store = token_store(tmp_path, "1h")
    space: dict[str, Any] = {}
    exec(_ROWS, space)
    want = space["rows_of"](240)
    assert store.read_rows(tok("btc"), T0, T0 + 10 * D) == want
    # No overlapping files: a plain dataset reader sees each bucket once too.
    spans = sorted((s.start, s.end) for s in store.shards(tok("btc")))
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    table = pq.read_table(tmp_path / "asset=btc")
    assert table.num_rows == len(want)
    # No temporary file left (the partition's writer lock file stays, as flock needs).
    assert not [p for p in (tmp_path / "asset=btc").iterdir() if p.name.startswith(".")
                and p.name != ".lock"]  # fmt: skip
    assert sum(int(out) for out, _ in outputs) == len(spans)  # each file written once


# --- what a write costs -------------------------------------------------------------------------


def test_writes_list_a_partition_once_yet_see_another_writers_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = token_store(tmp_path, "1h"), token_store(tmp_path, "1h")
    listed: list[str] = []
    real = store.storage.list
    monkeypatch.setattr(store.storage, "list", lambda p="": listed.append(p) or real(p))
    for day in range(3):
        store.write(tok("btc"), T0 + day * D, T0 + (day + 1) * D, hourly(T0 + day * D, 24))
    assert listed == ["asset=btc/"]  # what it wrote, it knows
    # Another writer (its own lock stamp) stores day 3: the next write looks again.
    other.write(tok("btc"), T0 + 3 * D, T0 + 4 * D, hourly(T0 + 3 * D, 24))
    written = store.write(tok("btc"), T0 + 3 * D, T0 + 5 * D, hourly(T0 + 3 * D, 48))
    assert [(s.start, s.end) for s in written] == [(T0 + 4 * D, T0 + 5 * D)]
    assert listed == ["asset=btc/", "asset=btc/"]
    days = [r for day in range(4) for r in hourly(T0 + day * D, 24)]
    tail = [r for r in hourly(T0 + 3 * D, 48) if r.interval_time >= T0 + 4 * D]
    assert store.read_rows(tok("btc"), T0, T0 + 5 * D) == days + tail


def test_a_local_file_is_checked_from_its_footer_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_store(tmp_path, "1h").write(tok("btc"), T0, T0 + D, hourly(T0, 24))
    fresh = token_store(tmp_path, "1h")

    def whole(key: str) -> bytes:
        raise AssertionError(f"read {key} whole")

    monkeypatch.setattr(fresh.storage, "read_bytes", whole)
    assert [(s.start, s.rows) for s in fresh.shards(tok("btc"))] == [(T0, len(hourly(T0, 24)))]


def test_folder_entries_are_synced_once_per_sync_when_not_each_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kaiko_liq.atomic

    synced: list[Path] = []
    monkeypatch.setattr(kaiko_liq.atomic, "fsync_directory", synced.append)
    store = token_store(tmp_path, "1h", sync_each=False)
    for day in range(3):
        store.write(tok("btc"), T0 + day * D, T0 + (day + 1) * D, hourly(T0 + day * D, 24))
    store.write(tok("eth"), T0, T0 + D, hourly(T0, 24))
    assert synced == []
    store.sync()
    assert sorted(synced) == [tmp_path / "asset=btc", tmp_path / "asset=eth"]
    store.sync()
    assert len(synced) == 2  # nothing written since
    token_store(tmp_path, "1h").write(tok("sol"), T0, T0 + D, hourly(T0, 24))
    assert synced[2:] == [tmp_path / "asset=sol"]  # by default each write is durable
