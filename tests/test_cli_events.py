"""``kaiko-liq events`` as a subprocess against the emulator: -o writes what the library
fetches (every format), bad arguments are refused in one line before anything is sent,
and --out writes a dataset that resumes and heals as a backfill does."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kaiko_liq.backfill import read_backfill
from kaiko_liq.emulator import DENSE_INSTRUMENT, SPARSE_INSTRUMENT, Instrument, events_for
from kaiko_liq.models import LiquidationEvent
from kaiko_liq.routes.events import event_ms
from tests.conftest import FIXED_NOW, EmulatorFactory
from tests.test_cli import cli, one_error_line

BUSY = datetime(2025, 5, 16, tzinfo=UTC)
WINDOW = ["--start", "2025-05-16", "--end", "2025-05-18"]
DENSE, SPARSE = str(DENSE_INSTRUMENT), str(SPARSE_INSTRUMENT)


def truth(instrument: Instrument) -> list[LiquidationEvent]:
    return events_for(instrument, BUSY, BUSY + timedelta(days=2), now=FIXED_NOW)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".jsonl", ".parquet"])
async def test_events_to_a_file_equal_the_emulators_events(
    make_emulator: EmulatorFactory, tmp_path: Path, suffix: str
) -> None:
    emu = await make_emulator()
    out = tmp_path / f"events{suffix}"
    args = ("events", DENSE, SPARSE, *WINDOW, "--base-url", emu.base_url, "-o", str(out))
    done = await cli(*args, "--page-size", "500")
    assert done.code == 0, done.stderr
    want = [(DENSE, e) for e in truth(DENSE_INSTRUMENT)]
    want += [(SPARSE, e) for e in truth(SPARSE_INSTRUMENT)]
    assert f"2 instruments, {len(want):,} events" in done.stderr
    if suffix == ".parquet":
        table = pq.read_table(out)
        got = list(zip(table["instrument"].to_pylist(), table["trade_id"].to_pylist(), strict=True))
        assert got == [(i.split(":")[2], e.trade_id) for i, e in want]
        assert str(table.schema.field("time").type) == "timestamp[ns, tz=UTC]"
        return
    if suffix == ".jsonl":
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [(x["instrument"], x["trade_id"]) for x in lines] == [
            (i.split(":")[2], e.trade_id) for i, e in want
        ]
        return
    import gzip

    raw = out.read_bytes()
    text = (gzip.decompress(raw) if suffix.endswith(".gz") else raw).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(want)
    for row, (instrument, event) in zip(rows, want, strict=True):
        exchange, klass, code = instrument.split(":")
        assert (row["exchange"], row["instrument_class"], row["instrument"]) == (
            exchange,
            klass,
            code,
        )
        assert row["trade_id"] == event.trade_id
        assert int(row["timestamp"]) == event.timestamp
        assert float(row["amount_usd"]) == event.amount_usd
        assert row["time"].startswith(
            datetime.fromtimestamp(event_ms(event) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        )


async def test_events_descending_to_stdout(make_emulator: EmulatorFactory) -> None:
    emu = await make_emulator()
    args = ("events", SPARSE, *WINDOW, "--base-url", emu.base_url, "-o", "-", "--sort", "desc")
    done = await cli(*args)
    assert done.code == 0, done.stderr
    got = [json.loads(line)["trade_id"] for line in done.stdout.decode().splitlines()]
    assert got == [e.trade_id for e in truth(SPARSE_INSTRUMENT)][::-1]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["binc:perp:btc-usdt", "-o", "x.csv"], "instrument_class 'perp' is not allowed"),
        (["binc-btc", "-o", "x.csv"], "is not EXCHANGE:CLASS:INSTRUMENT"),
        (["binc:future:b/c", "-o", "x.csv"], "instrument 'b/c' must be a code"),
        ([DENSE], "one of the arguments -o/--output --out is required"),
        ([DENSE, "-o", "x.csv", "--out", "ds"], "not allowed with argument"),
        ([DENSE, "--out", "ds", "--format", "csv"], "--format goes with -o"),
        ([DENSE, "-o", "x.txt"], "cannot tell the format"),
    ],
)
async def test_bad_arguments_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], said: str
) -> None:
    fixed = [a if a not in ("x.csv", "x.txt", "ds") else str(tmp_path / a) for a in args]
    done = await cli("events", *fixed, *WINDOW, "--base-url", "http://127.0.0.1:9")
    assert done.code == 2, done.stderr
    assert said in one_error_line(done.stderr)
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240  # a quick look, nothing running


@pytest.mark.realtime
def test_events_dataset_killed_resumes_and_heals(tmp_path: Path) -> None:
    """``events --out`` as a subprocess against a slow emulator: killed (-9) part-way, the
    files on disk are whole and kept; the rerun completes the dataset; a truncated and a
    deleted file are found and fetched again; the dataset equals the emulator's events."""
    from tests.test_cli import (
        CLI,
        environment,
        serve_slow_emulator,
        visible_shards,
        wait_for_shards,
    )

    out = tmp_path / "events"
    days = 6
    with contextlib.contextmanager(serve_slow_emulator)() as url:
        args = [
            "events", DENSE, SPARSE, "--start", "2025-05-14", "--end", "2025-05-20",
            "--out", str(out), "--base-url", url, "--page-size", "1000",
        ]  # fmt: skip
        proc = subprocess.Popen(
            [*CLI, *args, "--max-concurrency", "2"],
            env=environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        done = wait_for_shards(proc, out, at_least=3)
        proc.kill()  # SIGKILL: no cleanup at all
        proc.wait()
        survivors = visible_shards(out)
        assert done <= len(survivors) < 2 * days

        again = subprocess.run([*CLI, *args], env=environment(), capture_output=True, check=False)
        assert again.returncode == 0, again.stderr
        assert f"{len(survivors)} already on disk" in again.stderr.decode()
        files = visible_shards(out)
        assert len(files) == 2 * days
        assert {p: files[p] for p in survivors} == survivors  # kept as they were

        damaged, gone = sorted(files)[0], sorted(files)[-1]
        damaged.write_bytes(damaged.read_bytes()[:100])
        gone.unlink()
        healed = subprocess.run([*CLI, *args], env=environment(), capture_output=True, check=False)
        assert healed.returncode == 0, healed.stderr
        assert "moved" in healed.stderr.decode()  # the damaged file, said in a warning
        assert len(visible_shards(out)) == 2 * days

    table = read_backfill(out)
    lo, hi = datetime(2025, 5, 14, tzinfo=UTC), datetime(2025, 5, 20, tzinfo=UTC)
    want = sorted(
        e.trade_id
        for instrument in (DENSE_INSTRUMENT, SPARSE_INSTRUMENT)
        for e in events_for(instrument, lo, hi, now=FIXED_NOW)
    )
    assert sorted(table["trade_id"].to_pylist()) == want
