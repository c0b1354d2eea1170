"""The resumable backfill: layout, manifest, resume, failures; against a fake client first
(deterministic, no network), then against the emulator through the real client."""

from __future__ import annotations

import json
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
    MANIFEST_NAME,
    SETTLE,
    AssetOnDisk,
    BackfillIncompleteError,
    ShardRecord,
    _gaps,
    _locked,
    backfill,
    describe_backfill,
    read_backfill,
    shard_filename,
)
from kaiko_liq.client import LiquidationClient
from kaiko_liq.emulator import RunningEmulator
from kaiko_liq.errors import AuthenticationError, InvalidArgumentError, ServerError
from kaiko_liq.export import arrow_schema, to_arrow
from kaiko_liq.models import ExchangeVolume, LiquidationRow
from kaiko_liq.plan import SubRange, plan_subranges
from kaiko_liq.query import Request, parse_interval, parse_time, validate_request

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
    """What backfill uses of LiquidationClient: plan, fetch, stats, max_concurrency."""

    def __init__(self, *, fail_at: set[datetime] | None = None, fatal: bool = False) -> None:
        self.max_concurrency = 4
        self.stats = Stats()
        self.fetched: list[tuple[str, datetime, datetime]] = []
        self.fail_at = fail_at or set()
        self.fatal = fatal

    def plan(
        self, asset: str, start: Any, end: Any, *, interval: str, page_size: int | None
    ) -> list[SubRange]:
        return plan_subranges(
            parse_time(start), parse_time(end), parse_interval(interval), page_size or 1000
        )

    async def fetch(
        self, asset: str, start: Any, end: Any, *, interval: str, sort: str, page_size: int | None
    ) -> list[LiquidationRow]:
        assert sort == "asc"
        lo, hi = parse_time(start), parse_time(end)
        self.stats.requests += 1
        self.fetched.append((asset, lo, hi))
        await anyio.lowlevel.checkpoint()
        if self.fatal:
            raise AuthenticationError(401, "bad key", "https://example.test/")
        if lo in self.fail_at:
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


def record(start: datetime, end: datetime) -> ShardRecord:
    return ShardRecord(start=start, end=end, rows=0, file="x")


def test_gaps_of_an_empty_directory_is_the_whole_window() -> None:
    assert _gaps(T0, T0 + D, parse_interval("1h"), []) == [(T0, T0 + D)]


def test_gaps_skip_covered_buckets_and_keep_the_callers_edges() -> None:
    grid = parse_interval("1h")
    on_disk = [record(T0 + D, T0 + 2 * D), record(T0 + 3 * D, T0 + 3 * D + timedelta(minutes=90))]
    start = T0 + timedelta(minutes=30)  # off the grid: the first gap keeps it as is
    end = T0 + 5 * D
    assert _gaps(start, end, grid, on_disk) == [
        (start, T0 + D),
        (T0 + 2 * D, T0 + 3 * D),
        # A file ending at 01:30 holds the 01:00 bucket: the next gap starts at 02:00.
        (T0 + 3 * D + 2 * H, end),
    ]


def test_gaps_of_a_fully_covered_window_are_none() -> None:
    grid = parse_interval("1h")
    assert _gaps(T0 + H, T0 + 2 * H, grid, [record(T0, T0 + D)]) == []


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
    assert [s["file"] for s in m["shards"]["eth"]] == shard_files(tmp_path)[4:]
    assert sum(s["rows"] for s in m["shards"]["eth"]) == len(want["eth"])
    [run_record] = m["runs"]
    assert run_record["complete"] is True and run_record["assets"] == ["eth", "btc"]

    # The dataset reads back as exactly the rows, with any hive reader.
    table = read_backfill(tmp_path)
    assert table.to_pylist() == totals({"btc": want["btc"], "eth": want["eth"]})
    plain = pads.dataset(tmp_path, partitioning="hive").to_table()
    assert plain.num_rows == table.num_rows
    breakdown = read_backfill(tmp_path, shape="exchanges", assets=["eth"])
    assert breakdown.to_pylist() == to_arrow({"eth": want["eth"]}, shape="exchanges").to_pylist()


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
    m["shards"]["eth"] = m["shards"]["eth"][:1]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(m))
    again = FakeClient()
    await run(again, tmp_path, "eth")
    assert again.fetched == []
    rows = [s["rows"] for s in manifest(tmp_path)["shards"]["eth"]]
    assert rows == [len(expected_rows("eth", T0 + i * D, T0 + (i + 1) * D)) for i in range(4)]


async def test_leftover_temporary_files_are_ignored_by_readers_and_removed(tmp_path: Path) -> None:
    await run(FakeClient(), tmp_path, "eth", end=T0 + D)
    junk = tmp_path / "asset=eth" / f".{shard_filename(T0 + D, T0 + 2 * D)}.0123abcd.tmp"
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
    assert eth == [(T0 + D + 11 * H, T0 + 2 * D), (T0 + 2 * D, T0 + 3 * D)]
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
        async def fetch(self, *args: Any, **kw: Any) -> list[LiquidationRow]:
            await super().fetch(*args, **kw)
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
        for lo, hi in [(horizon, T0 + 2 * D), (T0 + 2 * D, T0 + 3 * D), (T0 + 3 * D, T0 + 4 * D)]
    ]
    assert summary.deferred_from is None and summary.deferred is None
    assert "not yet complete" not in str(summary)
    assert manifest(tmp_path)["runs"][-1]["complete"] is True
    want = {a: expected_rows(a, T0, T0 + 4 * D) for a in ("btc", "eth")}
    assert read_backfill(tmp_path).to_pylist() == totals(want)


@pytest.mark.parametrize(
    ("now", "fetched_to"),
    [
        (T0 + D + SETTLE, T0 + D),  # the day's last bucket closed exactly SETTLE ago
        (T0 + D + SETTLE - timedelta(seconds=1), T0 + 23 * H),  # not quite
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
        async def fetch(self, *args: Any, **kw: Any) -> list[LiquidationRow]:
            await super().fetch(*args, **kw)
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


async def test_a_directory_with_data_but_no_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "asset=eth").mkdir()
    with pytest.raises(InvalidArgumentError, match="no _manifest.json"):
        await run(FakeClient(), tmp_path, "eth")


async def test_a_foreign_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text('{"something": "else"}')
    with pytest.raises(InvalidArgumentError, match="not a kaiko-liq backfill manifest"):
        await run(FakeClient(), tmp_path, "eth")


async def test_two_runs_cannot_share_a_directory(tmp_path: Path) -> None:
    with _locked(tmp_path), pytest.raises(InvalidArgumentError, match="another backfill"):
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
        async def fetch(self, *args: Any, **kw: Any) -> list[LiquidationRow]:
            if len(self.fetched) >= 3:
                await anyio.sleep(60)  # the rest hang until cancelled
            return await super().fetch(*args, **kw)

    with anyio.move_on_after(0.5):
        await run(Slow(), tmp_path, "eth", concurrency=1)
    files = shard_files(tmp_path)
    assert len(files) == 3
    m = manifest(tmp_path)
    assert [s["file"] for s in m["shards"]["eth"]] == files
    assert m["runs"][-1]["complete"] is False and m["runs"][-1]["finished"] is not None


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
