"""The command line: every format end to end in a subprocess, a backfill killed and
resumed, every bad input as one line and an exit code, and the progress line."""

from __future__ import annotations

import argparse
import csv
import errno
import io
import json
import os
import pty
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from kaiko_liq.backfill import MANIFEST_NAME, SETTLE, AssetOnDisk, read_backfill
from kaiko_liq.cli import _disk_table, _max_concurrency, main
from kaiko_liq.client import LiquidationClient
from kaiko_liq.emulator import EmulatorConfig, RunningEmulator, running_emulator
from kaiko_liq.errors import (
    AuthenticationError,
    FailedRange,
    IncompleteFetchError,
    InvalidArgumentError,
    ServerError,
)
from kaiko_liq.export import TOTAL_COLUMNS, to_arrow
from kaiko_liq.models import LiquidationRow
from kaiko_liq.plan import SubRange
from kaiko_liq.progress import ProgressLine, backfill_line, fetch_line, format_duration
from kaiko_liq.query import format_time
from kaiko_liq.sharding import GridShards

CLI = [sys.executable, "-m", "kaiko_liq.cli"]
START, END = "2025-02-01T00:00:00Z", "2025-02-04T00:00:00Z"
FIGURES = TOTAL_COLUMNS[3:]


@dataclass
class Result:
    code: int
    stdout: bytes
    stderr: str


def environment(key: str | None = "test") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KAIKO_API_KEY"}
    if key is not None:
        env["KAIKO_API_KEY"] = key
    return env


async def cli(*args: str, key: str | None = "test") -> Result:
    """The CLI in a subprocess; awaited, so an in-loop emulator keeps serving it."""
    done = await anyio.run_process([*CLI, *args], check=False, env=environment(key))
    return Result(done.returncode, done.stdout, done.stderr.decode())


async def library_fetch(
    base_url: str, assets: list[str], *, interval: str = "1h", sort: str = "asc"
) -> dict[str, list[LiquidationRow]]:
    async with LiquidationClient(base_url=base_url) as client:
        return {a: await client.fetch(a, START, END, interval=interval, sort=sort) for a in assets}


def check_totals_csv(text: str, want: dict[str, list[LiquidationRow]]) -> None:
    lines = list(csv.DictReader(io.StringIO(text)))
    expected = [(a, r) for a, rows in want.items() for r in rows]
    assert len(lines) == len(expected) > 0
    for line, (asset, r) in zip(lines, expected, strict=True):
        assert line["asset"] == asset
        assert line["interval_time"] == format_time(r.interval_time)
        assert int(line["interval_timestamp"]) == r.interval_timestamp
        for f in FIGURES:
            assert (int if f.endswith("trades") else float)(line[f]) == getattr(r, f)


def one_error_line(stderr: str) -> str:
    """The whole of stderr must be a single ``kaiko-liq: error:`` line, no traceback."""
    lines = [line for line in stderr.splitlines() if "SYNTHETIC" not in line]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("kaiko-liq: error: "), stderr
    return lines[0]


# --- fetch, end to end, each format -----------------------------------------------------------


async def test_fetch_csv_writes_totals_and_breakdown_equal_to_the_library(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    out = tmp_path / "liq.csv"
    result = await cli(
        "fetch", "eth", "btc", "--start", START, "--end", END,
        "--base-url", emulator.base_url, "-o", str(out),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.stdout == b""
    assert "\r" not in result.stderr  # stderr is not a terminal: no progress line
    assert re.search(r"2 assets, [\d,]+ rows, 2 requests", result.stderr)
    want = await library_fetch(emulator.base_url, ["eth", "btc"])
    check_totals_csv(out.read_text(), want)
    breakdown = list(csv.DictReader(io.StringIO((tmp_path / "liq.exchanges.csv").read_text())))
    assert [(b["asset"], b["interval_time"], b["exchange"]) for b in breakdown] == [
        (a, format_time(r.interval_time), e.exchange)
        for a, rows in want.items()
        for r in rows
        for e in r.exchanges
    ]
    assert [float(b["short_amount"]) for b in breakdown] == [
        e.short_amount for rows in want.values() for r in rows for e in r.exchanges
    ]


async def test_fetch_parquet_has_real_types_and_equals_the_library(
    make_emulator: Any, tmp_path: Path
) -> None:
    # On the real clock, as the CLI in its subprocess is: their clocks agree, so --quiet
    # leaves nothing to say (the fixed-clock fixture would be warned about, rightly).
    emulator = await make_emulator(now=None, latency=0.0, rate_limit=None)
    out = tmp_path / "liq.parquet"
    result = await cli(
        "fetch", "eth", "sol", "--start", START, "--end", END, "--interval", "4h",
        "--base-url", emulator.base_url, "-o", str(out), "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.stderr == ""  # --quiet
    want = await library_fetch(emulator.base_url, ["eth", "sol"], interval="4h")
    assert pq.read_table(out).equals(to_arrow(want))
    assert pq.read_table(tmp_path / "liq.exchanges.parquet").equals(
        to_arrow(want, shape="exchanges")
    )
    assert str(pq.read_schema(out).field("interval_time").type) == "timestamp[ns, tz=UTC]"


async def test_fetch_jsonl_file_keeps_the_nesting(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    out = tmp_path / "liq.data"  # an extension that says nothing: --format decides
    result = await cli(
        "fetch", "btc", "--start", START, "--end", END, "--sort", "desc",
        "--base-url", emulator.base_url, "-o", str(out), "--format", "jsonl",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    want = await library_fetch(emulator.base_url, ["btc"], sort="desc")
    lines = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert lines == [{"asset": "btc"} | json.loads(msgspec.json.encode(r)) for r in want["btc"]]


async def test_fetch_to_stdout_is_jsonl_by_default_and_csv_on_request(
    emulator: RunningEmulator,
) -> None:
    args = ("fetch", "eth", "--start", START, "--end", END, "--base-url", emulator.base_url)
    want = await library_fetch(emulator.base_url, ["eth"])
    jsonl = await cli(*args)
    assert jsonl.code == 0, jsonl.stderr
    assert [json.loads(line)["interval_timestamp"] for line in jsonl.stdout.splitlines()] == [
        r.interval_timestamp for r in want["eth"]
    ]
    as_csv = await cli(*args, "--format", "csv")
    assert as_csv.code == 0, as_csv.stderr
    check_totals_csv(as_csv.stdout.decode(), want)
    assert "totals only" in as_csv.stderr


@pytest.mark.parametrize("sort", ["asc", "desc"])
async def test_fetch_of_many_shards_equals_one_library_fetch(
    emulator: RunningEmulator, sort: str
) -> None:
    """The CLI fetches shard by shard (to count them); the rows must not show it."""
    result = await cli(
        "fetch", "eth", "btc", "--start", "2025-02-01T05:00:00Z", "--end", END,
        "--page-size", "24", "--sort", sort, "--base-url", emulator.base_url,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    async with LiquidationClient(base_url=emulator.base_url) as client:
        want = {
            a: await client.fetch(a, "2025-02-01T05:00:00Z", END, sort=sort) for a in ("eth", "btc")
        }
    assert result.stdout == b"".join(
        b'{"asset":"%s",' % a.encode() + msgspec.json.encode(r)[1:] + b"\n"
        for a, rows in want.items()
        for r in rows
    )
    assert "3 requests" not in result.stderr and "6 requests" in result.stderr  # 3 per asset


def test_fetch_with_the_builtin_emulator_says_the_data_is_synthetic(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "fetch", "eth", "--start", START, "--end", END, "--emulator", "--quiet"],
        capture_output=True,
        env=environment(key=None),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"SYNTHETIC" in done.stderr  # said even with --quiet

    async def reference() -> list[LiquidationRow]:
        async with (
            running_emulator(EmulatorConfig()) as emu,
            LiquidationClient(base_url=emu.base_url) as client,
        ):
            return await client.fetch("eth", START, END, sort="asc")

    want = anyio.run(reference)
    assert done.stdout == b"".join(
        b'{"asset":"eth",' + msgspec.json.encode(r)[1:] + b"\n" for r in want
    )


# --- backfill, killed and resumed ----------------------------------------------------------


@pytest.fixture
def slow_emulator() -> Iterator[str]:
    yield from serve_slow_emulator()


def serve_slow_emulator() -> Iterator[str]:
    """An emulator in its own process with 0.2 s latency: a backfill in another process
    is then slow enough to be killed part-way, reliably."""
    with subprocess.Popen(
        [sys.executable, "-m", "kaiko_liq.emulator", "--port", "0", "--latency", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), url
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def shards_in_manifest(out: Path) -> int:
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text())
    except FileNotFoundError:
        return 0
    return sum(len(shards) for shards in manifest["shards"].values())


def wait_for_shards(proc: subprocess.Popen[bytes], out: Path, at_least: int) -> int:
    deadline = time.monotonic() + 30
    while (done := shards_in_manifest(out)) < at_least:
        assert proc.poll() is None, "the backfill ended before it could be interrupted"
        assert time.monotonic() < deadline, "no progress in the manifest"
        time.sleep(0.02)
    return done


def visible_shards(out: Path) -> dict[Path, int]:
    """Every file a reader would take as data; each must read in full."""
    files = {
        p: p.stat().st_mtime_ns
        for p in out.rglob("*.parquet")
        if not any(part.startswith((".", "_")) for part in p.relative_to(out).parts)
    }
    for path in files:
        pq.read_table(path)
    return files


def backfill_args(url: str, out: Path) -> list[str]:
    # page size 24 at 1h: one shard per day, 2 assets x 20 days = 40 shards.
    return [
        "backfill", "eth", "btc", "--start", "2025-03-01", "--end", "2025-03-21",
        "--out", str(out), "--base-url", url, "--page-size", "24",
    ]  # fmt: skip


@pytest.mark.realtime
def test_a_killed_backfill_loses_nothing_and_resumes_without_refetching(
    slow_emulator: str, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    args = backfill_args(slow_emulator, out)
    proc = subprocess.Popen(
        [*CLI, *args, "--max-concurrency", "2"],
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    done_at_kill = wait_for_shards(proc, out, at_least=4)
    proc.kill()  # SIGKILL: no cleanup at all
    proc.wait()
    assert done_at_kill < 40

    survivors = visible_shards(out)
    assert len(survivors) >= done_at_kill  # files are the truth; the manifest may lag
    assert len(survivors) < 40

    second = subprocess.run([*CLI, *args], env=environment(), capture_output=True, check=False)
    assert second.returncode == 0, second.stderr
    summary = second.stderr.decode()
    match = re.search(
        r"40 shards, (\d+) already on disk: wrote (\d+) files?, [\d,]+ rows, (\d+) requests "
        r"\((\d+) for the recheck\)",
        summary,
    )
    assert match, summary
    skipped, written, requests, rechecked = map(int, match.groups())
    assert skipped == len(survivors)
    assert rechecked == 2  # the newest stored day of each asset, one page each
    assert written == requests - rechecked == 40 - skipped  # one per missing shard, no more

    after = visible_shards(out)
    assert len(after) == 40
    assert {p: after[p] for p in survivors} == survivors  # untouched: same files, same mtimes
    assert not [p for p in out.rglob("*.tmp")]

    async def reference() -> dict[str, list[LiquidationRow]]:
        async with LiquidationClient(base_url=slow_emulator, api_key="test") as client:
            return {
                a: await client.fetch(a, "2025-03-01", "2025-03-21", sort="asc")
                for a in ("btc", "eth")
            }

    want = anyio.run(reference)
    assert read_backfill(out).equals(to_arrow(want))
    assert read_backfill(out, shape="exchanges").equals(to_arrow(want, shape="exchanges"))
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["runs"][-1]["complete"] is True


# --- bad input: one line, exit 2, nothing fetched -------------------------------------------------

WINDOW = ["--start", START, "--end", END]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fetch", "eth", *WINDOW, "--interval", "90m"], "not of the form '<n>h' or '<n>d'"),
        (["fetch", "eth", *WINDOW, "--interval", "2d"], "longer than one day"),
        (["fetch", "eth", "--start", END, "--end", START], "is not before --end"),
        (["fetch", "eth", "--start", START, "--end", START], "is not before --end"),
        (["fetch", "eth", "--start", "yesterday", "--end", END], "--start 'yesterday' is not"),
        (["fetch", "eth", "--start", START, "--end", "2025-13-01"], "--end '2025-13-01' is not"),
        (["fetch", "eth", *WINDOW, "--sort", "up"], "argument --sort: invalid choice: 'up'"),
        (["fetch", "eth", *WINDOW, "--page-size", "0"], "page_size 0 is out of range"),
        (["fetch", "eth", *WINDOW, "--page-size", "1001"], "page_size 1001 is out of range"),
        (["fetch", "eth", *WINDOW, "--page-size", "ten"], "invalid int value: 'ten'"),
        (["fetch", "e/th", *WINDOW], "asset 'e/th' has characters"),
        (["fetch", "eth", *WINDOW, "--format", "xml"], "--format: invalid choice: 'xml'"),
        (["fetch", "eth", *WINDOW, "-o", "out.xlsx"], "cannot tell the format of 'out.xlsx'"),
        (["fetch", "eth", *WINDOW, "--format", "parquet"], "Parquet is not written to standard"),
        (["fetch", "eth", *WINDOW, "-o", "-", "--format", "parquet"], "Parquet is not written"),
        (["fetch", "eth", *WINDOW, "-o", "no/such/dir/x.csv"], "directory no/such/dir does not"),
        (["fetch", "eth", *WINDOW, "--base-url", "http://x"], "exclude each other"),
        (["fetch", "eth", *WINDOW, "--rate-limit", "0"], "--rate-limit '0' is out of range"),
        (["fetch", "eth", "--end", END], "required: --start"),
        (["backfill", "eth", *WINDOW], "the following arguments are required: --out"),
        (["backfill", *WINDOW, "--out", "x"], "required: ASSET"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required: COMMAND"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths in argv land in the test's directory
    # --emulator: a key is not what these are about (and no request may be sent anyway).
    code = main([*argv, "--emulator"] if argv[:1] in (["fetch"], ["backfill"]) else argv)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert message in one_error_line(captured.err)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--rate-limit", "0"], "--rate-limit '0' is out of range; use requests per second"),
        (["--rate-limit", "20000/s"], "--rate-limit '20000/s' is out of range"),
        (["--rate-limit", "nan"], "--rate-limit 'nan' is not requests per second"),
        (["--rate-limit", "-5"], "--rate-limit '-5' is not requests per second"),
        (["--rate-limit", "fast"], "--rate-limit 'fast' is not requests per second"),
        (["--rate-limit", "100/fortnight"], "such as '6000/min' or '100/s'"),
        (["--max-concurrency", "0"], "argument --max-concurrency: max_concurrency 0 is out"),
        (["--max-concurrency", "-1"], "argument --max-concurrency: max_concurrency -1 is out"),
        (["--max-concurrency", "2.5"], "argument --max-concurrency: '2.5' is not an integer"),
    ],
)
@pytest.mark.parametrize("command", ["fetch", "backfill"])
def test_bad_connection_flags_are_refused_before_the_emulator_starts(
    command: str,
    flags: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    out = ["--out", str(tmp_path / "ds")] if command == "backfill" else []
    assert main([command, "eth", *WINDOW, *out, "--emulator", *flags]) == 2
    err = capsys.readouterr().err
    assert "SYNTHETIC" not in err  # refused before the emulator started
    assert message in one_error_line(err)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("value", ["0", "1", "256", "257"])
def test_the_cli_accepts_the_concurrency_the_client_accepts(value: str) -> None:
    try:
        LiquidationClient("k", base_url="http://127.0.0.1:1", max_concurrency=int(value))
        client_ok = True
    except InvalidArgumentError:
        client_ok = False
    try:
        _max_concurrency(value)
        cli_ok = True
    except argparse.ArgumentTypeError:
        cli_ok = False
    assert cli_ok == client_ok


@pytest.mark.parametrize("target", ["/proc/out.csv", "/sys/out.csv", "/proc/self/out.jsonl"])
def test_an_output_nobody_can_write_is_refused_before_fetching(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """As root, access() says yes even here: the check creates a file to be sure."""
    assert main(["fetch", "eth", *WINDOW, "--emulator", "-o", target]) == 2
    err = capsys.readouterr().err
    assert "SYNTHETIC" not in err
    assert f"cannot write {target}: " in one_error_line(err)


def test_a_directory_access_refuses_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a non-root user meets in a chmod 0o500 directory (root may write anywhere,
    so the refusal is the one creating the probe file would raise)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real = tempfile.TemporaryFile

    def refuse(*args: Any, dir: Any = None, **kw: Any) -> Any:
        if Path(dir) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(locked))
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    assert main(["fetch", "eth", *WINDOW, "--emulator", "-o", str(locked / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "SYNTHETIC" not in err
    assert f"cannot write {locked / 'x.csv'}: Permission denied" in one_error_line(err)


def test_an_output_that_is_a_directory_is_refused_before_fetching(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "d.csv").mkdir()
    assert main(["fetch", "eth", *WINDOW, "--emulator", "-o", str(tmp_path / "d.csv")]) == 2
    err = capsys.readouterr().err
    assert "SYNTHETIC" not in err
    assert f"cannot write {tmp_path / 'd.csv'}: it is a directory" in one_error_line(err)


def test_a_write_failing_after_the_fetch_names_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "liq.csv"
    assert main(["fetch", "eth", *WINDOW, "--emulator", "-o", str(out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    # Both files are written before either is renamed, the totals first: it fails first.
    assert line.endswith(f"cannot write {tmp_path / 'liq.csv'}: No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_parquet_without_pyarrow_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if not installed
    assert main(["fetch", "eth", *WINDOW, "--emulator", "-o", str(tmp_path / "x.parquet")]) == 2
    assert "pip install 'kaiko-liq[parquet]'" in one_error_line(capsys.readouterr().err)


def test_no_key_says_how_to_set_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KAIKO_API_KEY", raising=False)
    assert main(["fetch", "eth", *WINDOW]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "export KAIKO_API_KEY=" in line
    assert "--api-key-file" in line and "--emulator" in line


@pytest.mark.parametrize(("content", "message"), [(None, "cannot read"), ("  \n", "is empty")])
def test_a_bad_key_file_is_refused(
    tmp_path: Path, content: str | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "key"
    if content is not None:
        key_file.write_text(content)
    assert main(["fetch", "eth", *WINDOW, "--api-key-file", str(key_file)]) == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_resuming_with_another_interval_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["backfill", "eth", *WINDOW, "--out", str(tmp_path / "ds"), "--emulator"]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--interval", "4h"]) == 2
    assert "holds a backfill at interval 1h, not 4h" in one_error_line(capsys.readouterr().err)


def test_backfill_into_a_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_text("")
    assert main(["backfill", "eth", *WINDOW, "--out", str(tmp_path / "f"), "--emulator"]) == 2
    assert "is not a directory" in one_error_line(capsys.readouterr().err)


# --- failures: one line, exit 1 ---------------------------------------------------------------


async def test_a_rejected_key_fails_with_exit_1(make_emulator: Any) -> None:
    guarded = await make_emulator(api_key="the-right-key")
    result = await cli(
        "fetch", "eth", *WINDOW, "--base-url", guarded.base_url, key="not-the-key-42"
    )
    assert result.code == 1
    line = one_error_line(result.stderr)
    assert "HTTP 401" in line and "check KAIKO_API_KEY" in line and "not-the-key-42" not in line


def test_an_incomplete_fetch_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lo, hi = datetime(2025, 2, 2, tzinfo=UTC), datetime(2025, 2, 3, tzinfo=UTC)

    async def failing(self: LiquidationClient, reqs: list[Any], **kw: Any) -> Any:
        error = ServerError(503, "maintenance", "http://127.0.0.1/x")
        raise IncompleteFetchError(reqs[0].label, [FailedRange(lo, hi, error)], [(lo, lo)])

    monkeypatch.setattr(LiquidationClient, "fetch_requests", failing)
    out = tmp_path / "x.csv"
    assert main(["fetch", "eth", *WINDOW, "--emulator", "-o", str(out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "Missing: [2025-02-02T00:00:00+00:00, 2025-02-03T00:00:00+00:00)" in line
    assert not out.exists()  # all or nothing: no file short of rows


def test_an_incomplete_backfill_says_to_run_it_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    real = LiquidationClient.fetch_part

    async def flaky(self: LiquidationClient, req: Any, shard: SubRange, **kw: Any) -> Any:
        if shard.start == datetime(2025, 2, 2, tzinfo=UTC):
            raise ServerError(503, "maintenance", "http://127.0.0.1/x")
        return await real(self, req, shard, **kw)

    monkeypatch.setattr(LiquidationClient, "fetch_part", flaky)
    args = ["backfill", "eth", *WINDOW, "--out", str(tmp_path), "--page-size", "24", "--emulator"]
    assert main(args) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("kaiko-liq: error: ")]
    assert len(errors) == 1, err
    assert "1 of 3 shards failed" in errors[0] and "run the same command again" in errors[0]
    assert re.search(r"^  eth\s+2\s", err, re.MULTILINE), err  # what is on disk, above it
    monkeypatch.setattr(LiquidationClient, "fetch_part", real)
    assert main(args) == 0
    assert "3 shards, 2 already on disk: wrote 1 file," in capsys.readouterr().err


def test_an_incomplete_fetch_names_every_failed_shard_of_the_asset(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two shards of btc fail after their retries: the CLI reports them as one
    client.fetch of the window does, every failed shard named."""
    real = GridShards.fetch
    bad = {datetime(2025, 2, 2, tzinfo=UTC), datetime(2025, 2, 3, tzinfo=UTC)}

    async def flaky(
        self: GridShards, source: Any, route: Any, target: Any, shard: SubRange, *rest: Any
    ) -> Any:
        if target.asset == "btc" and shard.start in bad:
            raise ServerError(503, "maintenance", "http://127.0.0.1/x")
        return await real(self, source, route, target, shard, *rest)

    monkeypatch.setattr(GridShards, "fetch", flaky)
    argv = ["fetch", "eth", "btc", *WINDOW, "--page-size", "24", "--emulator"]
    assert main(argv) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "btc: 2 of 3 sub-ranges failed, 1 completed. Missing: [2025-02-02" in line
    assert "; [2025-02-03" in line


def test_a_fatal_error_stops_every_shard(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[Any] = []

    async def denied(
        self: GridShards, source: Any, route: Any, target: Any, shard: SubRange, *rest: Any
    ) -> Any:
        calls.append(shard.start)
        if len(calls) == 1:
            raise AuthenticationError(401, "bad key", "http://127.0.0.1/x")
        await anyio.sleep(30)  # cancelled by the first shard's failure

    monkeypatch.setattr(GridShards, "fetch", denied)
    started = time.monotonic()
    assert main(["fetch", "eth", *WINDOW, "--page-size", "24", "--emulator"]) == 1
    assert time.monotonic() - started < 10
    assert "HTTP 401" in one_error_line(capsys.readouterr().err)


def test_backfill_shows_what_is_on_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    args = ["backfill", "eth", "btc", *WINDOW, "--out", str(out), "--page-size", "24"]
    assert main([*args, "--emulator"]) == 0
    err = capsys.readouterr().err
    table = err[err.index("backfill done") :].splitlines()[1:]
    assert len(table) == 3, err
    assert table[0] == "  asset  files  rows  first interval_time   last interval_time"
    want = read_backfill(out)
    for line, asset in zip(table[1:], ["eth", "btc"], strict=True):
        rows = want.filter(pc.equal(want["asset"], asset))
        times = rows["interval_time"].to_pylist()
        assert line.split() == [
            asset,
            "3",
            f"{rows.num_rows:,}",
            format_time(min(times)),
            format_time(max(times)),
        ]
    assert main([*args, "--emulator", "--quiet"]) == 0
    assert "first interval_time" not in capsys.readouterr().err


def test_backfill_into_the_future_says_what_it_left_for_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real clock: a window from two days ago to two days ahead."""
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    start, end = format_time(hour - timedelta(days=2)), format_time(hour + timedelta(days=2))
    out = tmp_path / "ds"
    argv = ["backfill", "eth", "--start", start, "--end", end, "--out", str(out), "--emulator"]
    assert main([*argv, "--quiet"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "not yet complete" in line]
    assert len(notes) == 1 and notes[0].startswith("kaiko-liq: skipped "), err
    assert "run the same command again later" in notes[0]
    horizon = now - SETTLE
    for path in out.rglob("*.parquet"):
        end_stamp = path.stem.split("_")[1]
        assert datetime.strptime(end_stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) <= horizon


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch", "--help"]) == 0
    assert "--api-key-file" in capsys.readouterr().out


def test_the_emulator_subcommand_is_wired() -> None:
    with subprocess.Popen(
        [*CLI, "emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("http://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


# --- the progress line --------------------------------------------------------------------------


def test_progress_is_drawn_on_a_terminal(tmp_path: Path) -> None:
    """stderr a pseudo-terminal: the line is drawn with \\r and cleared before the summary."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, "backfill", "eth", *WINDOW, "--out", str(tmp_path), "--emulator"],
        env=environment(key=None),
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=20) == 0
    text = seen.decode()
    assert "\r" in text and ("shards" in text or "planning" in text)
    assert "backfill done" in text


def test_fetch_progress_counts_shards_on_a_terminal() -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, "fetch", "eth", "--start", "2025-02-01", "--end", "2025-03-01", "--emulator",
         "--page-size", "24"],
        env=environment(key=None),
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )  # fmt: skip
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=20) == 0
    text = seen.decode()
    assert re.search(r"\rshards \d+/28 · [\d,]+ rows · [\d,]+ requests \([\d.-]+/s\) · ", text)
    assert "28 requests" in text  # the summary, after the line was cleared


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 4.4, 59.6, 185, 7620)] == [
        "0s",
        "4s",
        "1m00s",
        "3m05s",
        "2h07m",
    ]


def test_backfill_line_extrapolates_from_fetched_shards_only() -> None:
    line = backfill_line(done=30, total=40, skipped=20, rows=12345, requests=10, elapsed=5.0)
    # 10 fetched in 5 s, 10 left: 5 s more (the 20 found on disk cost nothing).
    assert line == "shards 30/40 · 12,345 rows · 10 requests (2.0/s) · 5s left"
    early = backfill_line(done=0, total=40, skipped=0, rows=0, requests=0, elapsed=0.0)
    assert "estimating" in early


def test_fetch_line() -> None:
    assert fetch_line(rows=8760, requests=9, elapsed=1.5) == "8,760 rows · 9 requests (6.0/s) · 2s"


def test_fetch_line_with_shards_counts_them_and_says_the_time_left() -> None:
    line = fetch_line(done=3, total=12, rows=8760, requests=9, elapsed=1.5)
    assert line == "shards 3/12 · 8,760 rows · 9 requests (6.0/s) · 4s left"
    assert "estimating" in fetch_line(done=0, total=12, rows=0, requests=0, elapsed=0.0)


def test_disk_table_aligns_its_columns() -> None:
    t = datetime(2025, 1, 8, tzinfo=UTC)
    table = _disk_table(
        [
            AssetOnDisk("btc", 12, 16_032, t, t.replace(month=11)),
            AssetOnDisk("doge", 0, 0, None, None),
        ]
    )
    assert table == [
        "asset  files    rows  first interval_time   last interval_time",
        "btc       12  16,032  2025-01-08T00:00:00Z  2025-11-08T00:00:00Z",
        "doge       0       0  -                     -",
    ]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_throttles_overwrites_and_clears() -> None:
    now = [0.0]
    term = FakeTerminal()
    line = ProgressLine(term, mode="terminal", min_interval=0.2, clock=lambda: now[0])
    line.show("first long line")
    now[0] = 0.1
    line.show("dropped")  # within 0.2 s of the last draw
    now[0] = 0.3
    line.show("short")
    assert term.getvalue() == "\rfirst long line" + "\rshort" + " " * 10
    line.clear()
    assert term.getvalue().endswith("\r" + " " * 5 + "\r")
