"""Backfills on S3 (a real S3 server: moto, tests/s3.py) and of events: the same dataset
as a local backfill (file by file and through pyarrow.dataset), a re-run makes no
request, deleted and truncated objects are healed, a flaky store never shows a partial
object and the next run completes, and a run killed with -9 mid-upload resumes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kaiko_liq import LiquidationClient
from kaiko_liq.backfill import backfill, backfill_events, describe_backfill, read_backfill
from kaiko_liq.datasets import open_dataset
from kaiko_liq.emulator import DENSE_INSTRUMENT, SPARSE_INSTRUMENT, RunningEmulator, events_for
from kaiko_liq.fs import StorageError, StorageLockedError, open_storage
from tests.conftest import FIXED_NOW
from tests.s3 import FaultyProxy, S3Spot, client

ASSETS = ["btc", "eth", "pepe"]
START, END = datetime(2025, 1, 8, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)
E0 = datetime(2025, 5, 13, tzinfo=UTC)
E1 = E0 + timedelta(days=5)
INSTRUMENTS = [str(DENSE_INSTRUMENT), str(SPARSE_INSTRUMENT)]


def make_client(emu: RunningEmulator) -> LiquidationClient:
    # No recheck: "a re-run makes no request" counts every request.
    return LiquidationClient(base_url=emu.base_url, now=lambda: FIXED_NOW, recheck="0")


async def run_tokens(emu: RunningEmulator, out: str | Path, options: Any = None) -> Any:
    async with make_client(emu) as c:
        summary = await backfill(
            c, ASSETS, START, END, out, page_size=240, storage_options=options, now=FIXED_NOW
        )
        assert c.stats.requests == summary.requests
        return summary


def objects(spot: S3Spot, prefix: str) -> dict[str, bytes]:
    """Every data object under ``prefix`` (not the manifest, lock or moved-aside ones)."""
    s3 = client(spot.endpoint)
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=spot.bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            key = item["Key"][len(prefix) + 1 :]
            if any(part.startswith((".", "_")) for part in key.split("/")):
                continue
            body = s3.get_object(Bucket=spot.bucket, Key=item["Key"])["Body"].read()
            found[key] = body
    return found


def local_files(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*.parquet"))
        if not any(part.startswith((".", "_")) for part in p.relative_to(out).parts)
    }


def tables(files: dict[str, bytes]) -> dict[str, pa.Table]:
    return {k: pq.read_table(pa.BufferReader(v)) for k, v in files.items()}


@pytest.fixture
async def reference(emulator: RunningEmulator, tmp_path: Path) -> Path:
    out = tmp_path / "local"
    await run_tokens(emulator, out)
    return out


async def test_a_backfill_to_s3_equals_the_local_one_and_heals(
    emulator: RunningEmulator, s3: S3Spot, reference: Path
) -> None:
    url = s3.url("lake")
    first = await run_tokens(emulator, url, s3.options)
    assert first.shards_written == first.shards_total > 0 and first.out_dir == url
    want = tables(local_files(reference))
    assert tables(objects(s3, "lake")) == want  # file by file
    order = [("asset", "ascending"), ("interval_time", "ascending")]
    local = open_dataset(reference).to_table().sort_by(order)
    remote = open_dataset(url, storage_options=s3.options).to_table().sort_by(order)
    assert remote.equals(local)
    assert read_backfill(url, storage_options=s3.options).equals(read_backfill(reference))
    assert describe_backfill(url, storage_options=s3.options) == describe_backfill(reference)
    # A re-run makes no request.
    again = await run_tokens(emulator, url, s3.options)
    assert again.requests == 0 and again.shards_written == 0
    # A deleted object and a truncated one are fetched again.
    keys = sorted(objects(s3, "lake"))
    bucket = client(s3.endpoint)
    bucket.delete_object(Bucket=s3.bucket, Key=f"lake/{keys[0]}")
    body = bucket.get_object(Bucket=s3.bucket, Key=f"lake/{keys[5]}")["Body"].read()
    bucket.put_object(Bucket=s3.bucket, Key=f"lake/{keys[5]}", Body=body[: len(body) // 2])
    healed = await run_tokens(emulator, url, s3.options)
    assert healed.shards_written == 2 and healed.requests == 2
    assert any("not a readable Parquet file" in w for w in healed.warnings), healed.warnings
    assert tables(objects(s3, "lake")) == want


async def test_a_flaky_store_never_shows_a_partial_object_and_the_next_run_completes(
    emulator: RunningEmulator, faulty_s3: tuple[S3Spot, FaultyProxy], reference: Path
) -> None:
    spot, proxy = faulty_s3
    url = spot.url("lake")
    runs = failures = 0
    while True:
        runs += 1
        try:
            await run_tokens(emulator, url, spot.options)
            break
        except (StorageError, OSError):
            failures += 1
        # Whatever a failed run left, every visible object is whole.
        for body in objects(spot, "lake").values():
            pq.read_table(pa.BufferReader(body)).validate(full=True)
        assert runs < 30, "the flaky store never let a run complete"
    assert proxy.dropped > 0 and failures > 0  # the faults did hit
    assert tables(objects(spot, "lake")) == tables(local_files(reference))


# --- kill -9 mid-upload, then resume ------------------------------------------------------


class StallingProxy(FaultyProxy):
    """Holds the ``nth`` shard upload: the client has sent it and waits for an answer
    that never comes (the server has none of it), until the client is killed."""

    def __init__(self, upstream: str, nth: int) -> None:
        super().__init__(upstream, one_in=0)
        self.nth = nth
        self.stalled = threading.Event()
        self._shards = 0

    def _drop(self, method: str) -> bool:
        return False

    def _handle(self, conn: Any) -> None:
        head = conn.recv(65536, 2)  # MSG_PEEK: the request line, left for the parent
        if head.startswith(b"PUT ") and b".parquet" in head.split(b"\r\n", 1)[0]:
            self._shards += 1
            if self._shards == self.nth:
                self.stalled.set()
                time.sleep(20)  # the upload hangs here; the client gets killed meanwhile
                conn.close()
                return
        with contextlib.suppress(OSError):  # the client may be killed mid-answer
            super()._handle(conn)


_KILLED_RUN = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import datetime
    from kaiko_liq import LiquidationClient
    from kaiko_liq.backfill import backfill

    async def main():
        now = datetime.fromisoformat(sys.argv[2])
        async with LiquidationClient(base_url=sys.argv[1], now=lambda: now, recheck="0") as c:
            await backfill(c, ["btc", "eth", "pepe"], "2025-01-08", "2025-03-01", sys.argv[3],
                           page_size=240, concurrency=2, now=now,
                           storage_options={"lock_ttl": 1})

    asyncio.run(main())
    """
)


@pytest.mark.realtime
async def test_a_run_killed_mid_upload_resumes_to_the_same_dataset(
    emulator: RunningEmulator, s3: S3Spot, reference: Path
) -> None:
    proxy = StallingProxy(s3.endpoint, nth=4)
    url = s3.url("lake")
    # The subprocess finds S3 through the standard AWS environment.
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": proxy.endpoint,
        "AWS_ACCESS_KEY_ID": s3.options["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": s3.options["aws_secret_access_key"],
        "AWS_REGION": "us-east-1",
    }
    args = [sys.executable, "-c", _KILLED_RUN, emulator.base_url, FIXED_NOW.isoformat(), url]
    with subprocess.Popen(args, env=env, stderr=subprocess.PIPE) as proc:  # noqa: ASYNC220
        try:
            # Waited for in a thread: the emulator serving the subprocess runs on this loop.
            stalled = await anyio.to_thread.run_sync(proxy.stalled.wait, 60)
            assert stalled, proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        proxy.close()
    partial = objects(s3, "lake")
    assert 0 < len(partial) < len(local_files(reference))
    for body in partial.values():  # no partial object is visible
        pq.read_table(pa.BufferReader(body)).validate(full=True)
    deadline = time.monotonic() + 30
    while True:  # the killed run's lock expires lock_ttl after its last write
        try:
            summary = await run_tokens(emulator, url, {**s3.options, "lock_ttl": 1})
            break
        except StorageLockedError:
            assert time.monotonic() < deadline
            await anyio.sleep(0.5)
    assert summary.shards_skipped == len(partial)
    assert tables(objects(s3, "lake")) == tables(local_files(reference))
    assert open_storage(url, storage_options=s3.options).exists("_manifest.json")


# --- events ---------------------------------------------------------------------------------


async def run_events(emu: RunningEmulator, out: str | Path, options: Any = None) -> Any:
    async with make_client(emu) as c:
        return await backfill_events(
            c, INSTRUMENTS, E0, E1, out, page_size=1000, storage_options=options, now=FIXED_NOW
        )


async def test_an_events_backfill_is_the_emulators_events_resumable_and_healed(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    out = tmp_path / "events"
    first = await run_events(emulator, out)
    assert first.shards_written == first.shards_total == 10 and first.noun == "instrument"
    table = read_backfill(out)
    assert table.column_names[:3] == ["exchange", "instrument_class", "instrument"]
    for name in INSTRUMENTS:
        ex, _, ins = name.split(":")
        mine = table.filter(
            (pa.compute.field("exchange") == ex) & (pa.compute.field("instrument") == ins)
        )
        want = events_for(name, E0, E1, now=FIXED_NOW)
        assert mine.column("trade_id").to_pylist() == [e.trade_id for e in want]
        assert mine.column("amount_usd").to_pylist() == [e.amount_usd for e in want]
    days = sorted((out / "exchange=binc").rglob("*.parquet"))
    assert days[0].name == "20250513T000000Z_20250514T000000Z.parquet"
    described = describe_backfill(out)
    assert [d.asset for d in described] == sorted(INSTRUMENTS)
    assert sum(d.rows for d in described) == table.num_rows
    before = local_files(out)
    again = await run_events(emulator, out)
    assert again.requests == 0 and again.shards_skipped == 10
    days[0].unlink()
    days[1].write_bytes(days[1].read_bytes()[:100])
    healed = await run_events(emulator, out)
    assert healed.shards_written == 2
    assert tables(local_files(out)) == tables(before)


_KILLED_EVENTS = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import datetime
    from kaiko_liq import LiquidationClient
    from kaiko_liq.backfill import backfill_events

    async def main():
        now = datetime.fromisoformat(sys.argv[2])
        async with LiquidationClient(base_url=sys.argv[1], now=lambda: now, recheck="0",
                                     max_concurrency=1) as c:
            await backfill_events(c, sys.argv[4].split(","), "2025-05-13", "2025-05-18",
                                  sys.argv[3], page_size=100, now=now, concurrency=1)

    asyncio.run(main())
    """
)


@pytest.mark.realtime
async def test_an_events_backfill_killed_mid_run_resumes(
    make_emulator: Any, emulator: RunningEmulator, tmp_path: Path
) -> None:
    slow = await make_emulator(latency=0.02, now=FIXED_NOW)
    out = tmp_path / "events"
    args = [
        sys.executable, "-c", _KILLED_EVENTS, slow.base_url, FIXED_NOW.isoformat(), str(out),
        ",".join(INSTRUMENTS),
    ]  # fmt: skip
    with subprocess.Popen(args, stderr=subprocess.PIPE) as proc:  # noqa: ASYNC220
        try:
            deadline = time.monotonic() + 60
            while not list(out.rglob("*.parquet")):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline
                await anyio.sleep(0.02)  # watching another process: no fake clock applies
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
    kept = local_files(out)
    assert 0 < len(kept) < 10
    for body in kept.values():
        pq.read_table(pa.BufferReader(body))
    resumed = await run_events(slow, out)  # the same server: a store holds one's data
    assert resumed.shards_skipped == len(kept)
    reference = tmp_path / "ref"
    await run_events(emulator, reference)
    assert tables(local_files(out)) == tables(local_files(reference))
