"""The resumable backfill: layout, manifest, resume, failures; against a fake client first
(deterministic, no network), then against the emulator through the real client."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.lowlevel
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from kaiko_liq.backfill import (
    GIVE_UP_AFTER,
    MANIFEST_NAME,
    SETTLE,
    AssetOnDisk,
    BackfillIncompleteError,
    backfill,
    describe_backfill,
    read_backfill,
    shard_filename,
)
from kaiko_liq.cache import check_store
from kaiko_liq.client import LiquidationClient
from kaiko_liq.emulator import RunningEmulator
from kaiko_liq.engine import Request as EngineRequest
from kaiko_liq.errors import (
    AuthenticationError,
    InvalidArgumentError,
    NotFoundError,
    ServerError,
)
from kaiko_liq.export import arrow_schema, to_arrow
from kaiko_liq.fs import StorageError, open_storage
from kaiko_liq.models import ExchangeVolume, LiquidationRow
from kaiko_liq.plan import SubRange, plan_subranges
from kaiko_liq.query import Request, Window, parse_interval, parse_time, validate_request
from kaiko_liq.routes.token import TOKEN, Token
from kaiko_liq.settle import CLOCK_MARGIN
from kaiko_liq.spans import gaps_in
from tests.conftest import DEAD_PID

H = timedelta(hours=1)
D = timedelta(days=1)
T0 = datetime(2025, 3, 1, tzinfo=UTC)


# --- a fake client: the plan is the real planner, the rows a pure function of the bucket ------


def synthetic_row(asset: str, t: datetime) -> LiquidationRow | None:
    """Deterministic rows; every 7th bucket is absent, as quiet buckets are on Kaiko."""
    n = int(t.timestamp()) // 3600 + len(asset)
    if n % 7 == 0:
        return None
    volume = ExchangeVolume(
        exchange="bbit" if n % 2 else "okex",
        total_trades=n % 11 + 1,
        total_amount=n * 1.25 + 0.5,
        long_trades=n % 11 + 1,
        long_amount=n * 1.25 + 0.5,
        short_trades=0,
        short_amount=0.0,
    )
    return LiquidationRow(
        interval_time=t,
        interval_timestamp=int(t.timestamp()) * 10**9,
        total_trades=volume.total_trades,
        total_amount=volume.total_amount,
        long_trades=volume.long_trades,
        long_amount=volume.long_amount,
        short_trades=0,
        short_amount=0.0,
        exchanges=[volume],
    )


def expected_rows(asset: str, start: datetime, end: datetime, step: timedelta = H) -> list[Any]:
    out = []
    grid = parse_interval(f"{step // H}h")
    t = grid.floor(start)
    while t < end:
        row = synthetic_row(asset, t)
        if row is not None:
            out.append(row)
        t += step
    return out


@dataclass
class Stats:
    requests: int = 0
    retries: int = 0


class FakeClient:
    """What backfill uses of LiquidationClient: request, fetch_part, final_before, now,
    stats, max_concurrency. ``fetch_shard`` is the fake's own hook (tests override it)."""

    def __init__(
        self,
        *,
        fail_at: set[datetime] | None = None,
        fatal: bool = False,
        unknown: set[str] | None = None,
        broken: set[str] | None = None,
    ) -> None:
        self.max_concurrency = 4
        self.server = "http://127.0.0.1:1"
        self.settle = SETTLE
        self.recheck = timedelta(0)  # tests/test_settled.py has the recheck
        self.stats = Stats()
        self.fetched: list[tuple[str, datetime, datetime]] = []
        self.fail_at = fail_at or set()
        self.fatal = fatal
        self.unknown = unknown or set()  # 404 for every shard
        self.broken = broken or set()  # 503 for every shard, after its retries

    page_size = 1000

    def now(self) -> datetime:
        return datetime.now(UTC)

    def final_before(self, route: Any, target: Token) -> datetime:
        return datetime.max.replace(tzinfo=UTC)  # the run's own ``now`` decides

    def request(
        self, route: Any, target: Token, start: Any, end: Any, *, sort: str, page_size: int | None
    ) -> EngineRequest[Token, LiquidationRow]:
        window = Window(parse_time(start), parse_time(end), sort, page_size or self.page_size)
        shards = plan_subranges(window.start, window.end, target.interval, window.page_size)
        return EngineRequest(route, target, window, shards)

    async def fetch_part(
        self, req: EngineRequest[Token, LiquidationRow], shard: SubRange
    ) -> list[LiquidationRow]:
        target = req.target
        return await self.fetch_shard(
            target.asset,
            shard,
            interval=target.interval.text,
            sort=req.window.sort,
            page_size=req.window.page_size,
        )

    async def fetch_shard(
        self, asset: str, shard: SubRange, *, interval: str, sort: str, page_size: int | None
    ) -> list[LiquidationRow]:
        assert sort == "asc"
        lo, hi = shard.start, shard.end
        self.stats.requests += 1
        self.fetched.append((asset, lo, hi))
        await anyio.lowlevel.checkpoint()
        if self.fatal:
            raise AuthenticationError(401, "bad key", "https://example.test/")
        if asset in self.unknown:
            raise NotFoundError(404, f"unknown token {asset}", f"https://example.test/{asset}")
        if lo in self.fail_at or asset in self.broken:
            raise ServerError(503, "maintenance", "https://example.test/")
        grid = parse_interval(interval)
        return expected_rows(asset, lo, grid.ceil(hi), grid.delta)


#: What the runs below take as now, unless a test says otherwise: long after T0, so that
#: every bucket they ask for has settled.
SETTLED_NOW = T0 + 365 * D


async def run(client: FakeClient, out: Path, *assets: str, **kw: Any) -> Any:
    start = kw.pop("start", T0)
    end = kw.pop("end", T0 + 4 * D)
    kw.setdefault("page_size", 24)  # one day per shard: several shards from a short window
    kw.setdefault("now", SETTLED_NOW)
    return await backfill(cast(LiquidationClient, client), list(assets), start, end, out, **kw)


def shard_files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*.parquet"))


def mtimes(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}


def shard_tables(out: Path) -> list[pa.Table]:
    return [pq.read_table(p) for p in out.rglob("*.parquet")]


def manifest(out: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((out / MANIFEST_NAME).read_text())
    return result


def totals(rows_by_asset: dict[str, list[Any]]) -> list[dict[str, Any]]:
    table = to_arrow(rows_by_asset)
    return cast(list[dict[str, Any]], table.to_pylist())


# --- pure pieces ----------------------------------------------------------------------------------


def test_shard_filenames_sort_by_time_and_have_no_colons() -> None:
    name = shard_filename(T0, T0 + D)
    assert name == "20250301T000000Z_20250302T000000Z.parquet"
    odd = shard_filename(T0 + timedelta(seconds=1, microseconds=5), T0 + D)
    assert odd == "20250301T000001.000005Z_20250302T000000Z.parquet"


def test_gaps_of_an_empty_directory_is_the_whole_window() -> None:
    assert gaps_in(T0, T0 + D, parse_interval("1h"), []) == [(T0, T0 + D)]


def test_gaps_skip_covered_buckets_and_keep_the_callers_edges() -> None:
    grid = parse_interval("1h")
    # Spans as the store gives them: on the grid (a file ending 01:30 holds 01:00-02:00).
    on_disk = [(T0 + 3 * D, T0 + 3 * D + 2 * H), (T0 + D, T0 + 2 * D)]
    start = T0 + timedelta(minutes=30)  # off the grid: the first gap keeps it as is
    end = T0 + 5 * D
    assert gaps_in(start, end, grid, on_disk) == [
        (start, T0 + D),
        (T0 + 2 * D, T0 + 3 * D),
        # A file ending at 01:30 holds the 01:00 bucket: the next gap starts at 02:00.
        (T0 + 3 * D + 2 * H, end),
    ]


def test_gaps_of_a_fully_covered_window_are_none() -> None:
    grid = parse_interval("1h")
    assert gaps_in(T0 + H, T0 + 2 * H, grid, [(T0, T0 + D)]) == []


def test_validate_request_checks_everything_and_hands_back_the_parsed_query() -> None:
    request = validate_request(
        "ETH", "2025-03-01", T0 + D, interval="4h", sort="desc", page_size=24
    )
    assert request == Request("eth", T0, T0 + D, parse_interval("4h"), "desc", 24)
    assert validate_request("btc", T0, T0 + D, interval="1h") == Request(
        "btc", T0, T0 + D, parse_interval("1h"), None, None
    )
    for kw, match in [
        ({"asset": "e/th"}, "asset 'e/th' has characters"),
        ({"start": "soon"}, "--start 'soon' is not an ISO 8601 time"),
        ({"end": T0}, "not before end"),
        ({"interval": "90m"}, "not of the form"),
        ({"sort": "up"}, "sort 'up' is not allowed"),
        ({"page_size": 0}, "page_size 0 is out of range"),
    ]:
        args: dict[str, Any] = {"asset": "eth", "start": T0, "end": T0 + D, "interval": "1h"}
        args |= kw
        with pytest.raises(InvalidArgumentError, match=match):
            validate_request(
                args.pop("asset"), args.pop("start"), args.pop("end"), start_name="--start", **args
            )


# --- a run, then the same run again ------------------------------------------------------------


async def test_fresh_backfill_writes_one_file_per_shard_and_a_manifest(tmp_path: Path) -> None:
    client = FakeClient()
    progress: list[Any] = []
    summary = await run(client, tmp_path, "ETH", "btc", "eth", on_progress=progress.append)

    assert shard_files(tmp_path) == [
        f"asset={a}/{shard_filename(T0 + i * D, T0 + (i + 1) * D)}"
        for a in ("btc", "eth")
        for i in range(4)
    ]
    # Interleaved by time: both assets advance together.
    assert [(a, lo.day) for a, lo, _ in client.fetched][:4] == [
        ("eth", 1),
        ("btc", 1),
        ("eth", 2),
        ("btc", 2),
    ]
    assert (summary.shards_total, summary.shards_written, summary.shards_skipped) == (8, 8, 0)
    want = {a: expected_rows(a, T0, T0 + 4 * D) for a in ("eth", "btc")}
    assert summary.rows == sum(len(r) for r in want.values())
    assert summary.requests == 8
    assert progress[0].shards_done == 0 and progress[-1].shards_done == 8

    m = manifest(tmp_path)
    assert m["interval"] == "1h" and m["format"] == "kaiko-liq backfill"
    assert [s["file"] for s in m["shards"]["asset=eth"]] == shard_files(tmp_path)[4:]
    assert sum(s["rows"] for s in m["shards"]["asset=eth"]) == len(want["eth"])
    [run_record] = m["runs"]
    assert run_record["complete"] is True and run_record["assets"] == ["eth", "btc"]

    # The dataset reads back as exactly the rows, with any hive reader.
    table = read_backfill(tmp_path)
    assert table.to_pylist() == totals({"btc": want["btc"], "eth": want["eth"]})
    plain = pads.dataset(tmp_path, partitioning="hive").to_table()
    assert plain.num_rows == table.num_rows
    breakdown = read_backfill(tmp_path, shape="exchanges", assets=["eth"])
    assert breakdown.to_pylist() == to_arrow({"eth": want["eth"]}, shape="exchanges").to_pylist()


async def test_the_manifest_lists_only_files_whose_folder_was_synced_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Durability without a folder fsync per file: each manifest write comes after one
    sync of every folder a file it lists was written to."""
    import kaiko_liq.atomic
    from kaiko_liq.fs import LocalStorage

    events: list[tuple[str, str]] = []
    deferred: list[bool] = []
    real_sync, real_write = kaiko_liq.atomic.fsync_directory, LocalStorage.write_atomic

    def sync(directory: Path) -> None:
        events.append(("sync", Path(directory).name))
        real_sync(directory)

    def write_atomic(self: LocalStorage, key: str, data: Any, **how: Any) -> None:
        real_write(self, key, data, **how)
        events.append(("write", key))
        if key != MANIFEST_NAME:
            deferred.append(how.get("durable") is False)

    monkeypatch.setattr(kaiko_liq.atomic, "fsync_directory", sync)
    monkeypatch.setattr(LocalStorage, "write_atomic", write_atomic)
    await run(FakeClient(), tmp_path, "eth", "btc", end=T0 + 6 * D)

    unsynced: set[str] = set()
    for kind, what in events:
        if kind == "write" and what != MANIFEST_NAME:
            unsynced.add(what.split("/")[0])
        elif kind == "sync":
            unsynced.discard(what)
        elif kind == "write":
            assert not unsynced, f"{MANIFEST_NAME} written before syncing {unsynced}"
    files = [w for k, w in events if k == "write" and w != MANIFEST_NAME]
    assert len(files) == 12
    assert events[-1] == ("write", MANIFEST_NAME)
    assert deferred == [True] * 12  # no folder fsync per file: one per manifest


async def test_running_it_again_fetches_nothing(tmp_path: Path) -> None:
    await run(FakeClient(), tmp_path, "eth")
    before = mtimes(tmp_path)
    again = FakeClient()
    summary = await run(again, tmp_path, "eth")
    assert again.fetched == []
    assert (summary.shards_total, summary.shards_skipped, summary.shards_written) == (4, 4, 0)
    assert mtimes(tmp_path) == before
    assert [r["complete"] for r in manifest(tmp_path)["runs"]] == [True, True]


async def test_a_missing_file_is_fetched_again_and_only_it(tmp_path: Path) -> None:
    await run(FakeClient(), tmp_path, "eth")
    lost = tmp_path / "asset=eth" / shard_filename(T0 + D, T0 + 2 * D)
    lost.unlink()
    again = FakeClient()
    await run(again, tmp_path, "eth")
    assert again.fetched == [("eth", T0 + D, T0 + 2 * D)]
    assert read_backfill(tmp_path).num_rows == len(expected_rows("eth", T0, T0 + 4 * D))


async def test_a_file_the_manifest_never_heard_of_still_counts(tmp_path: Path) -> None:
    """A kill between a file's rename and the next manifest write loses nothing."""
    await run(FakeClient(), tmp_path, "eth")
    m = manifest(tmp_path)
    m["shards"]["asset=eth"] = m["shards"]["asset=eth"][:1]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(m))
    again = FakeClient()
    await run(again, tmp_path, "eth")
    assert again.fetched == []
    rows = [s["rows"] for s in manifest(tmp_path)["shards"]["asset=eth"]]
    assert rows == [len(expected_rows("eth", T0 + i * D, T0 + (i + 1) * D)) for i in range(4)]


async def test_leftover_temporary_files_are_ignored_by_readers_and_removed(tmp_path: Path) -> None:
    await run(FakeClient(), tmp_path, "eth", end=T0 + D)
    junk = (
        tmp_path
        / "asset=eth"
        / f".{shard_filename(T0 + D, T0 + 2 * D)}.{DEAD_PID}.0123abcdef01.tmp"
    )
    junk.write_bytes(b"PAR1 half a file")
    assert read_backfill(tmp_path).num_rows > 0  # a reader skips it
    await run(FakeClient(), tmp_path, "eth", end=T0 + 2 * D)
    assert not junk.exists()


async def test_extending_the_range_fetches_only_the_new_buckets(tmp_path: Path) -> None:
    # An end off the grid: the first run's last file holds the 10:00 bucket.
    first_end = T0 + D + timedelta(hours=10, minutes=30)
    await run(FakeClient(), tmp_path, "eth", end=first_end)
    again = FakeClient()
    await run(again, tmp_path, "eth", "btc", end=T0 + 3 * D)
    eth = [(lo, hi) for a, lo, hi in again.fetched if a == "eth"]
    # The gap is planned afresh: whole pages (24 buckets) from its first bucket.
    gap = T0 + D + 11 * H
    assert eth == [(gap, gap + D), (gap + D, T0 + 3 * D)]
    table = read_backfill(tmp_path)
    want = {a: expected_rows(a, T0, T0 + 3 * D) for a in ("btc", "eth")}
    assert table.to_pylist() == totals(want)  # no bucket twice, none missing


async def test_a_different_page_size_cannot_duplicate_rows(tmp_path: Path) -> None:
    await run(FakeClient(), tmp_path, "eth", end=T0 + 2 * D)
    await run(FakeClient(), tmp_path, "eth", end=T0 + 6 * D, page_size=1000)
    assert read_backfill(tmp_path).to_pylist() == totals(
        {"eth": expected_rows("eth", T0, T0 + 6 * D)}
    )


async def test_empty_shards_are_written_as_typed_empty_files(tmp_path: Path) -> None:
    class Quiet(FakeClient):
        async def fetch_shard(self, *args: Any, **kw: Any) -> list[LiquidationRow]:
            await super().fetch_shard(*args, **kw)
            return []

    summary = await run(Quiet(), tmp_path, "eth", end=T0 + 2 * D)
    assert summary.rows == 0 and summary.shards_written == 2
    for table in shard_tables(tmp_path):
        assert table.num_rows == 0
        assert table.schema.equals(arrow_schema("nested", asset=False))
    again = FakeClient()
    await run(again, tmp_path, "eth", end=T0 + 2 * D)
    assert again.fetched == []  # empty shards count as done


# --- only settled buckets ----------------------------------------------------------------------


async def test_buckets_not_yet_settled_are_left_for_a_later_run(tmp_path: Path) -> None:
    """A window reaching past now: the settled part is written, the rest neither fetched
    nor written (so it cannot count as done), and a later run fetches exactly the rest."""
    now = T0 + 2 * D + timedelta(minutes=30)  # day 3 is filling, day 4 is in the future
    horizon = T0 + D + 23 * H  # the 22:00 bucket of day 2 closed over an hour before now
    client = FakeClient()
    summary = await run(client, tmp_path, "eth", "btc", now=now)

    assert sorted(client.fetched) == [
        (a, lo, hi) for a in ("btc", "eth") for lo, hi in [(T0, T0 + D), (T0 + D, horizon)]
    ]
    assert shard_files(tmp_path) == [
        f"asset={a}/{shard_filename(lo, hi)}"
        for a in ("btc", "eth")
        for lo, hi in [(T0, T0 + D), (T0 + D, horizon)]
    ]
    assert (summary.deferred_from, summary.deferred_to) == (horizon, T0 + 4 * D)
    assert (summary.shards_total, summary.shards_written) == (4, 4)
    assert "skipped 2025-03-02T23:00:00Z to 2025-03-05T00:00:00Z: not yet complete" in str(summary)
    assert "run the same command again later" in str(summary)
    [first] = manifest(tmp_path)["runs"]
    assert first["complete"] is False and first["deferred_from"] == "2025-03-02T23:00:00Z"

    later = FakeClient()
    summary = await run(later, tmp_path, "eth", "btc", now=T0 + 30 * D)
    assert sorted(later.fetched) == [
        (a, lo, hi)
        for a in ("btc", "eth")
        for lo, hi in [
            (horizon, horizon + D),
            (horizon + D, horizon + 2 * D),
            (horizon + 2 * D, T0 + 4 * D),
        ]
    ]
    assert summary.deferred_from is None and summary.deferred is None
    assert "not yet complete" not in str(summary)
    assert manifest(tmp_path)["runs"][-1]["complete"] is True
    want = {a: expected_rows(a, T0, T0 + 4 * D) for a in ("btc", "eth")}
    assert read_backfill(tmp_path).to_pylist() == totals(want)


@pytest.mark.parametrize(
    ("now", "fetched_to"),
    [
        # The day's last bucket closed exactly SETTLE (and the clock margin) ago.
        (T0 + D + SETTLE + CLOCK_MARGIN, T0 + D),
        (T0 + D + SETTLE + CLOCK_MARGIN - timedelta(seconds=1), T0 + 23 * H),  # not quite
    ],
)
async def test_a_bucket_is_fetched_once_it_closed_settle_ago(
    tmp_path: Path, now: datetime, fetched_to: datetime
) -> None:
    client = FakeClient()
    summary = await run(client, tmp_path, "eth", end=T0 + 2 * D, now=now)
    assert client.fetched == [("eth", T0, fetched_to)]
    assert summary.deferred_from == fetched_to


async def test_a_window_wholly_in_the_future_writes_nothing(tmp_path: Path) -> None:
    client = FakeClient()
    summary = await run(client, tmp_path, "eth", start=T0 + 10 * D, end=T0 + 20 * D, now=T0)
    assert client.fetched == [] and shard_files(tmp_path) == []
    assert (summary.shards_total, summary.deferred_from) == (0, T0 + 10 * D)
    # Mid-bucket: the 09:00 bucket holding the start ends at 10:00, after the horizon.
    start = T0 + 9 * H + timedelta(minutes=30)
    summary = await run(client, tmp_path, "eth", start=start, end=T0 + D, now=T0 + 10 * H)
    assert client.fetched == [] and summary.deferred_from == start


async def test_now_defaults_to_the_system_clock(tmp_path: Path) -> None:
    client = FakeClient()
    start = datetime(2099, 1, 1, tzinfo=UTC)
    summary = await backfill(
        cast(LiquidationClient, client), ["eth"], start, start + D, tmp_path, page_size=24
    )
    assert client.fetched == [] and summary.deferred_from == start


# --- what is on disk --------------------------------------------------------------------------


async def test_describe_backfill_counts_files_rows_and_the_span_per_asset(tmp_path: Path) -> None:
    await run(FakeClient(), tmp_path, "eth", "btc", end=T0 + 3 * D)
    await run(FakeClient(), tmp_path, "sol", end=T0 + D)

    def expect(asset: str, days: int) -> AssetOnDisk:
        rows = expected_rows(asset, T0, T0 + days * D)
        first, last = rows[0].interval_time, rows[-1].interval_time
        return AssetOnDisk(asset, files=days, rows=len(rows), first=first, last=last)

    assert describe_backfill(tmp_path) == [expect("btc", 3), expect("eth", 3), expect("sol", 1)]
    assert describe_backfill(tmp_path, assets=["SOL", "doge"]) == [
        expect("sol", 1),
        AssetOnDisk("doge", files=0, rows=0, first=None, last=None),
    ]


async def test_describe_backfill_of_empty_files_has_no_span(tmp_path: Path) -> None:
    class Quiet(FakeClient):
        async def fetch_shard(self, *args: Any, **kw: Any) -> list[LiquidationRow]:
            await super().fetch_shard(*args, **kw)
            return []

    await run(Quiet(), tmp_path, "eth", end=T0 + 2 * D)
    assert describe_backfill(tmp_path) == [AssetOnDisk("eth", 2, 0, None, None)]


# --- refusals ---------------------------------------------------------------------------------


async def test_resuming_with_another_interval_is_refused(tmp_path: Path) -> None:
    await run(FakeClient(), tmp_path, "eth", end=T0 + D)
    with pytest.raises(InvalidArgumentError, match=r"interval 1h, not 4h.*--interval 1h"):
        await run(FakeClient(), tmp_path, "eth", end=T0 + D, interval="4h")


async def test_the_same_width_spelled_differently_is_the_same_grid(tmp_path: Path) -> None:
    await run(FakeClient(), tmp_path, "eth", end=T0 + 2 * D, interval="24h")
    again = FakeClient()
    await run(again, tmp_path, "eth", end=T0 + 2 * D, interval="1d")
    assert again.fetched == []


@pytest.mark.parametrize("cache", [False, True])
async def test_a_manifest_of_another_version_is_refused_by_a_backfill_and_a_cache(
    tmp_path: Path, cache: bool
) -> None:
    body = '{"format": "kaiko-liq backfill", "version": 99, "interval": "1h"}'
    (tmp_path / MANIFEST_NAME).write_text(body)
    with pytest.raises(InvalidArgumentError, match="version 99; this kaiko-liq writes version 1"):
        if cache:
            check_store(open_storage(tmp_path), route=TOKEN, grid=parse_interval("1h"), server=None)
        else:
            await run(FakeClient(), tmp_path, "eth")
    assert (tmp_path / MANIFEST_NAME).read_text() == body


async def test_another_programs_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text('{"format": "something else", "version": 3}')
    with pytest.raises(
        InvalidArgumentError, match=r"not a kaiko-liq manifest \(format 'something else'\)"
    ):
        await run(FakeClient(), tmp_path, "eth")
    assert (tmp_path / MANIFEST_NAME).read_text().startswith('{"format": "something')


async def test_two_runs_cannot_share_a_directory(tmp_path: Path) -> None:
    from kaiko_liq.fs import StorageLockedError, open_storage

    with open_storage(tmp_path).lock(), pytest.raises(StorageLockedError, match="another writer"):
        await run(FakeClient(), tmp_path, "eth")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"interval": "2d"}, "longer than one day"),
        ({"start": T0 + D, "end": T0}, "not before end"),
        ({"page_size": 0}, "out of range"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
async def test_bad_arguments_cost_nothing(tmp_path: Path, kw: dict[str, Any], match: str) -> None:
    client = FakeClient()
    with pytest.raises(InvalidArgumentError, match=match):
        await run(client, tmp_path / "new", "eth", **kw)
    assert client.fetched == []
    assert not (tmp_path / "new").exists()


async def test_no_assets_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="at least one asset"):
        await run(FakeClient(), tmp_path)


# --- failures ---------------------------------------------------------------------------------


async def test_a_failed_shard_leaves_the_others_on_disk_and_a_rerun_finishes(
    tmp_path: Path,
) -> None:
    client = FakeClient(fail_at={T0 + 2 * D})
    with pytest.raises(BackfillIncompleteError) as info:
        await run(client, tmp_path, "eth", "btc")
    err = info.value
    assert set(err.failed) == {"eth", "btc"}
    assert err.summary.shards_written == 6
    assert "2 of 8 shards failed" in str(err) and "run the same command again" in str(err)
    assert len(shard_files(tmp_path)) == 6
    assert manifest(tmp_path)["runs"][-1]["complete"] is False

    again = FakeClient()
    await run(again, tmp_path, "eth", "btc")
    assert sorted(again.fetched) == [
        ("btc", T0 + 2 * D, T0 + 3 * D),
        ("eth", T0 + 2 * D, T0 + 3 * D),
    ]
    assert manifest(tmp_path)["runs"][-1]["complete"] is True


async def test_an_error_every_shard_would_hit_stops_the_run(tmp_path: Path) -> None:
    client = FakeClient(fatal=True)
    with pytest.raises(AuthenticationError):
        await run(client, tmp_path, "eth", "btc", end=T0 + 30 * D, concurrency=2)
    assert len(client.fetched) <= 2  # the workers in flight, not one per shard
    assert shard_files(tmp_path) == []
    assert manifest(tmp_path)["runs"][-1]["complete"] is False


async def test_cancelling_keeps_what_landed_and_records_it(tmp_path: Path) -> None:
    class Slow(FakeClient):
        async def fetch_shard(self, *args: Any, **kw: Any) -> list[LiquidationRow]:
            if len(self.fetched) >= 3:
                await anyio.sleep(60)  # the rest hang until cancelled
            return await super().fetch_shard(*args, **kw)

    with anyio.move_on_after(0.5):
        await run(Slow(), tmp_path, "eth", concurrency=1)
    files = shard_files(tmp_path)
    assert len(files) == 3
    m = manifest(tmp_path)
    assert [s["file"] for s in m["shards"]["asset=eth"]] == files
    assert m["runs"][-1]["complete"] is False and m["runs"][-1]["finished"] is not None


async def test_an_unknown_asset_among_good_ones_stops_only_itself(tmp_path: Path) -> None:
    client = FakeClient(unknown={"zzz"})
    with pytest.raises(BackfillIncompleteError) as info:
        await run(client, tmp_path, "btc", "zzz", "eth")
    err = info.value
    assert set(err.failed_assets) == {"zzz"} and err.failed == {}
    assert isinstance(err.failed_assets["zzz"], NotFoundError)
    assert err.assets == ["zzz"]
    assert "zzz: unknown asset (NotFoundError" in str(err)
    assert "8 of 12 shards are on disk" in str(err)
    assert len([f for f in client.fetched if f[0] == "zzz"]) <= client.max_concurrency
    # btc and eth are whole; the run is recorded as incomplete, naming why.
    want = {a: expected_rows(a, T0, T0 + 4 * D) for a in ("btc", "eth")}
    assert read_backfill(tmp_path).to_pylist() == totals(want)
    last = manifest(tmp_path)["runs"][-1]
    assert last["complete"] is False and "zzz" in last["failed_assets"]


async def test_an_asset_delisted_since_stops_only_itself_in_the_recheck(tmp_path: Path) -> None:
    await run(FakeClient(), tmp_path, "btc", "eth")
    client = FakeClient(unknown={"btc"})
    client.recheck = timedelta(hours=24)  # the rerun fetches the newest stored day again
    with pytest.raises(BackfillIncompleteError) as info:
        await run(client, tmp_path, "btc", "eth", end=T0 + 5 * D)
    err = info.value
    assert set(err.failed_assets) == {"btc"}
    assert isinstance(err.failed_assets["btc"], NotFoundError)
    # eth goes on: its recheck and its new day; btc's new day is not even tried.
    assert [f for f in client.fetched if f[0] == "eth"] == [
        ("eth", T0 + 3 * D, T0 + 4 * D),
        ("eth", T0 + 4 * D, T0 + 5 * D),
    ]
    assert [f[0] for f in client.fetched].count("btc") == 1
    assert manifest(tmp_path)["runs"][-1]["failed_assets"].keys() == {"btc"}


async def test_the_recheck_requests_are_counted_in_the_summary(tmp_path: Path) -> None:
    await run(FakeClient(), tmp_path, "btc", "eth")
    client = FakeClient()
    client.recheck = timedelta(hours=24)
    summary = await run(client, tmp_path, "btc", "eth")
    assert summary.shards_written == 0 and len(client.fetched) == 2  # one page per asset
    assert summary.requests == 2 and summary.recheck_requests == 2
    assert "2 requests (2 for the recheck)" in str(summary)


async def test_an_asset_whose_shards_keep_failing_is_left_after_a_few(tmp_path: Path) -> None:
    client = FakeClient(broken={"eth"})
    with pytest.raises(BackfillIncompleteError) as info:
        await run(client, tmp_path, "btc", "eth", end=T0 + 10 * D, concurrency=1)
    err = info.value
    assert len(err.failed["eth"]) == GIVE_UP_AFTER
    assert len([f for f in client.fetched if f[0] == "eth"]) == GIVE_UP_AFTER
    assert "eth: gave up after 3 failed shards in a row, 7 more not tried" in str(err)
    assert err.summary.shards_written == 10  # every btc shard
    again = FakeClient()
    await run(again, tmp_path, "btc", "eth", end=T0 + 10 * D)
    assert {a for a, _, _ in again.fetched} == {"eth"} and len(again.fetched) == 10


# --- filesystem faults: one StorageError, never an ExceptionGroup ---------------------------------


def fail_writes_after(monkeypatch: pytest.MonkeyPatch, n: int, error: OSError) -> None:
    """Shard writes succeed ``n`` times, then fail with ``error`` (at the storage seam)."""
    from kaiko_liq.fs import LocalStorage

    real = LocalStorage.write_atomic
    calls = [0]

    def write_atomic(self: LocalStorage, key: str, data: Any, **how: Any) -> None:
        if key.endswith(".parquet"):
            calls[0] += 1
            if calls[0] > n:
                raise error
        real(self, key, data, **how)

    monkeypatch.setattr(LocalStorage, "write_atomic", write_atomic)


@pytest.mark.parametrize(
    "error",
    [OSError(28, "No space left on device"), PermissionError(13, "Permission denied")],
)
async def test_a_write_failure_mid_run_is_one_line_saying_what_was_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError
) -> None:
    fail_writes_after(monkeypatch, 3, error)
    with pytest.raises(StorageError) as info:
        await run(FakeClient(), tmp_path, "eth", "btc", end=T0 + 10 * D, concurrency=1)
    err = info.value
    assert err.reason == error.strerror and err.written == 3
    assert (
        Path(err.location).parent == tmp_path / "asset=btc"
        and Path(err.location).suffix == ".parquet"
    )
    assert str(err).startswith(f"cannot write {Path(err.location)}: {error.strerror}; ")
    assert f"3 of 20 shards are on disk in {tmp_path} (3 written by this run)" in str(err)
    assert len(shard_files(tmp_path)) == 3
    monkeypatch.undo()
    again = FakeClient()
    await run(again, tmp_path, "eth", "btc", end=T0 + 10 * D)
    assert len(again.fetched) == 17


async def test_a_write_failure_before_anything_landed_says_nothing_was_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_writes_after(monkeypatch, 0, OSError(28, "No space left on device"))
    with pytest.raises(StorageError) as info:
        await run(FakeClient(), tmp_path, "eth", concurrency=4)
    assert info.value.written == 0 and info.value.saved is None
    assert str(info.value).endswith("No space left on device; nothing fetched was saved")


async def test_an_out_dir_that_is_a_file_is_refused_before_any_request(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")
    client = FakeClient()
    with pytest.raises(StorageError, match=r"cannot use .*out: it exists and is not a directory"):
        await run(client, tmp_path / "out", "eth")
    with pytest.raises(StorageError, match=r"cannot use .*out/sub: Not a directory"):
        await run(client, tmp_path / "out" / "sub", "eth")
    assert client.fetched == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 200 kB tmpfs, mounted for the test (needs root and mount; skipped otherwise)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def test_a_full_disk_is_one_storage_error_and_the_saved_shards_resume(
    small_disk: Path,
) -> None:
    out = small_disk / "ds"
    with pytest.raises(StorageError) as info:
        await run(FakeClient(), out, "eth", "btc", end=T0 + 60 * D)
    err = info.value
    assert err.reason == "No space left on device" and err.written
    assert f"shards are on disk in {out} ({err.written} written by this run)" in str(err)
    on_disk = shard_files(out)
    assert len(on_disk) >= err.written  # every reported shard reads whole
    for path in out.rglob("*.parquet"):
        pq.read_table(path)


async def test_a_read_only_directory_is_one_storage_error(small_disk: Path) -> None:
    out = small_disk / "ds"
    await run(FakeClient(), out, "eth", end=T0 + D)
    await anyio.run_process(["mount", "-o", "remount,ro", str(small_disk)])
    client = FakeClient()
    with pytest.raises(StorageError, match=r"cannot use .*ds: the directory is not writable"):
        await run(client, out, "eth", end=T0 + 2 * D)
    assert client.fetched == []


# --- what a run says: resuming, and why nothing came back ----------------------------------------


async def test_the_first_progress_report_says_what_is_already_on_disk(tmp_path: Path) -> None:
    await run(FakeClient(), tmp_path, "eth", end=T0 + 2 * D)
    progress: list[Any] = []
    await run(FakeClient(), tmp_path, "eth", end=T0 + 5 * D, on_progress=progress.append)
    first = progress[0]
    assert (first.shards_skipped, first.shards_total, first.shards_done) == (2, 5, 2)


@pytest.mark.parametrize(
    ("start", "end", "now", "reason"),
    [
        (datetime(2024, 12, 1, tzinfo=UTC), datetime(2024, 12, 8, tzinfo=UTC), SETTLED_NOW,
         "ends before the data starts (2025-01-08T00:00:00Z)"),
        (T0 + 10 * D, T0 + 11 * D, T0, "lies in the future"),
        (T0, T0 + D, T0 + timedelta(minutes=30), "the window has not settled yet"),
        (T0, T0 + D, T0 + D + timedelta(minutes=30),
         "no liquidations were recorded up to 2025-03-01T23:00:00Z; the rest has not settled"),
        (T0, T0 + D, SETTLED_NOW, "no liquidations"),
    ],
)  # fmt: skip
async def test_an_empty_result_says_why(
    tmp_path: Path, start: datetime, end: datetime, now: datetime, reason: str
) -> None:
    class Quiet(FakeClient):
        async def fetch_shard(self, *args: Any, **kw: Any) -> list[LiquidationRow]:
            await super().fetch_shard(*args, **kw)
            return []

    summary = await run(Quiet(), tmp_path, "eth", start=start, end=end, now=now)
    assert summary.rows_on_disk == 0
    assert summary.reason_empty is not None and reason in summary.reason_empty


async def test_a_result_with_rows_on_disk_has_no_empty_reason(tmp_path: Path) -> None:
    await run(FakeClient(), tmp_path, "eth", end=T0 + D)
    summary = await run(FakeClient(), tmp_path, "eth", end=T0 + D)  # all skipped
    assert summary.rows == 0 and summary.rows_on_disk == len(expected_rows("eth", T0, T0 + D))
    assert summary.reason_empty is None


# --- against the emulator, through the real client ------------------------------------------


async def test_backfill_through_the_client_equals_fetch(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    start, end = "2025-02-01T05:00:00Z", "2025-02-09T00:00:00Z"
    async with LiquidationClient(base_url=emulator.base_url, page_size=50) as client:
        summary = await backfill(client, ["eth", "btc"], start, end, tmp_path, interval="1h")
        want = {
            a: await client.fetch(a, start, end, interval="1h", sort="asc") for a in ("btc", "eth")
        }
    assert summary.shards_total == len(shard_files(tmp_path))
    assert read_backfill(tmp_path).to_pylist() == totals(want)
    assert read_backfill(tmp_path, shape="exchanges").equals(to_arrow(want, shape="exchanges"))
    assert pa.types.is_timestamp(read_backfill(tmp_path).schema.field("interval_time").type)


async def test_an_unknown_asset_through_the_client_stops_only_itself(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    start, end = "2025-02-01T00:00:00Z", "2025-02-04T00:00:00Z"
    async with LiquidationClient(base_url=emulator.base_url, page_size=24) as client:
        with pytest.raises(BackfillIncompleteError) as info:
            await backfill(client, ["btc", "zzz"], start, end, tmp_path)
        want = {"btc": await client.fetch("btc", start, end, sort="asc")}
    assert list(info.value.failed_assets) == ["zzz"]
    assert isinstance(info.value.failed_assets["zzz"], NotFoundError)
    assert "zzz: unknown asset" in str(info.value)
    assert read_backfill(tmp_path).to_pylist() == totals(want)


async def test_an_on_progress_callback_that_raises_is_raised_as_itself(tmp_path: Path) -> None:
    def boom(_: object) -> None:
        raise ValueError("the caller's callback failed")

    with pytest.raises(ValueError, match="callback failed"):
        await run(FakeClient(), tmp_path, "eth", on_progress=boom)


async def test_the_summary_says_the_clients_settle_delay(tmp_path: Path) -> None:
    client = FakeClient()
    client.settle = timedelta(hours=3)
    summary = await run(client, tmp_path, "eth", end=T0 + D, now=T0 + D + timedelta(hours=2))
    assert summary.settle == timedelta(hours=3)
    assert summary.deferred is not None and "under 3h00m ago" in summary.deferred
    assert summary.deferred_from == T0 + D - 2 * timedelta(hours=1)  # 3h (+ margin) back
