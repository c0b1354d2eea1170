"""What the CLI writes and says: the same command gives the same bytes, assets in the
order given; -o - and .gz; --version and python -m kaiko_liq; --rate-limit's forms;
--cache; why a result is empty; progress with retries, and status lines in a log."""

from __future__ import annotations

import csv
import gzip
import io
import os
import pty
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kaiko_liq.cli import main
from kaiko_liq.emulator import RunningEmulator
from kaiko_liq.progress import ProgressLine, backfill_line, empty_reason, fetch_line
from tests.test_cli import cli, environment

CLI = [sys.executable, "-m", "kaiko_liq"]
WINDOW = ["--start", "2025-02-01", "--end", "2025-02-04"]


def fetch_bytes(capsys: pytest.CaptureFixture[str], argv: list[str], *files: Path) -> list[bytes]:
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    return [f.read_bytes() for f in files]


@pytest.mark.parametrize("name", ["liq.csv", "liq.parquet", "liq.jsonl", "liq.csv.gz"])
def test_the_same_command_writes_the_same_bytes_assets_in_the_order_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    out = tmp_path / name
    files = (
        [out]
        if name.endswith(".jsonl")
        else [out, tmp_path / name.replace("liq.", "liq.exchanges.")]
    )
    argv = [
        "fetch",
        "sol",
        "eth",
        "btc",
        *WINDOW,
        "--emulator",
        "--page-size",
        "24",
        "-o",
        str(out),
    ]
    first = fetch_bytes(capsys, argv, *files)
    second = fetch_bytes(capsys, argv, *files)
    assert first == second
    if name == "liq.csv":
        assets = [row["asset"] for row in csv.DictReader(io.StringIO(first[0].decode()))]
        assert list(dict.fromkeys(assets)) == ["sol", "eth", "btc"]
        times = [row["interval_time"] for row in csv.DictReader(io.StringIO(first[0].decode()))]
        for asset in ("sol", "eth", "btc"):
            mine = [t for a, t in zip(assets, times, strict=True) if a == asset]
            assert mine == sorted(mine)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_gz_compresses_what_the_plain_extension_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    base = ["fetch", "eth", *WINDOW, "--emulator"]
    (plain,) = fetch_bytes(capsys, [*base, "-o", str(tmp_path / f"a.{fmt}")], tmp_path / f"a.{fmt}")
    (packed,) = fetch_bytes(
        capsys, [*base, "-o", str(tmp_path / f"b.{fmt}.gz")], tmp_path / f"b.{fmt}.gz"
    )
    assert packed[:2] == b"\x1f\x8b" and gzip.decompress(packed) == plain
    if fmt == "csv":
        assert (
            gzip.decompress((tmp_path / "b.exchanges.csv.gz").read_bytes())
            == (tmp_path / "a.exchanges.csv").read_bytes()
        )


def test_dash_is_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["fetch", "eth", *WINDOW, "--emulator", "--quiet"]
    assert main(base) == 0
    default = capsys.readouterr().out
    assert main([*base, "-o", "-"]) == 0
    dashed = capsys.readouterr()
    assert dashed.out == default and default.count("\n") > 10
    assert not Path("-").exists()
    assert main([*base, "-o", "-", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("asset,interval_time,")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert re.fullmatch(r"kaiko-liq \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_python_dash_m_kaiko_liq_is_the_cli() -> None:
    done = subprocess.run(
        [*CLI, "fetch", "eth", *WINDOW, "--emulator", "--quiet"],
        capture_output=True,
        env=environment(key=None),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(b'{"asset":"eth"') > 10
    version = subprocess.run([*CLI, "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0 and version.stdout.startswith("kaiko-liq ")


@pytest.mark.parametrize("rate", ["6000/min", "100/s", "100", "0.5"])
def test_rate_limit_takes_kaikos_forms(rate: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch", "eth", *WINDOW, "--emulator", "--quiet", "--rate-limit", rate]) == 0


async def test_cache_makes_a_repeat_free(emulator: RunningEmulator, tmp_path: Path) -> None:
    args = ("fetch", "eth", "btc", *WINDOW, "--base-url", emulator.base_url,
            "--cache", str(tmp_path / "cache"))  # fmt: skip
    first = await cli(*args, "-o", str(tmp_path / "a.jsonl"))
    assert first.code == 0, first.stderr
    assert "2 requests" in first.stderr
    # The recheck costs one page per asset; with it off a repeat is free.
    rechecked = await cli(*args, "-o", str(tmp_path / "c.jsonl"))
    assert "2 requests" in rechecked.stderr
    again = await cli(*args, "--recheck", "0", "-o", str(tmp_path / "b.jsonl"))
    assert again.code == 0, again.stderr
    assert "0 requests" in again.stderr
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_the_builtin_emulators_cache_outlives_its_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --emulator listens on a new port each run; its settled data, and so its cache, stay.
    args = ["fetch", "eth", *WINDOW, "--emulator", "--cache", str(tmp_path / "cache")]
    assert main([*args, "-o", str(tmp_path / "a.jsonl")]) == 0
    assert "1 request" in capsys.readouterr().err
    assert main([*args, "--recheck", "0", "-o", str(tmp_path / "b.jsonl")]) == 0
    assert "0 requests" in capsys.readouterr().err
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["ns_builtin-emulator"]


# --- an empty result says why -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "why"),
    [
        (["--start", "2024-06-01", "--end", "2024-07-01"], "the window ends before the data"),
        (["--start", "2031-01-01", "--end", "2031-01-02"], "the window lies in the future"),
    ],
)  # fmt: skip
def test_an_empty_fetch_says_why(
    window: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch", "eth", *window, "--emulator"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"kaiko-liq: no rows: {why}" in captured.err


def test_empty_reason() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    early = empty_reason(datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 8, tzinfo=UTC), now)
    assert early.startswith("the window ends before the data starts")
    later = empty_reason(now, datetime(2026, 1, 2, tzinfo=UTC), now)
    assert later.startswith("the window lies in the future")
    quiet = empty_reason(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC), now)
    assert quiet == "no liquidations were recorded in the window"


# --- progress ----------------------------------------------------------------------------------


def test_the_line_shows_retries_and_the_last_error() -> None:
    line = fetch_line(
        done=3, total=12, rows=8760, requests=11, elapsed=1.5, retries=2,
        last_error="HTTP 503 from http://127.0.0.1/v2/data/liquidation.v1/token/eth: maintenance",
    )  # fmt: skip
    assert line == (
        "shards 3/12 · 8,760 rows · 11 requests (7.3/s) · 4s left · 2 retries, last: HTTP 503 "
        "from http://127.0.0.1/v2/data/liquidation.v1/token/eth: maintenance"
    )
    long = backfill_line(
        done=0, total=4, skipped=0, rows=0, requests=9, elapsed=40.0, retries=8,
        last_error="cannot connect to host 10.255.255.1:443 " + "x" * 200,
    )  # fmt: skip
    assert "8 retries, last: cannot connect to host 10.255.255.1:443" in long
    assert long.endswith("…") and len(long) < 200
    assert "retr" not in fetch_line(rows=1, requests=1, elapsed=1.0, retries=0, last_error="x")


def test_a_log_gets_a_status_line_every_30_seconds_and_none_at_the_start() -> None:
    now = [100.0]
    log = io.StringIO()
    line = ProgressLine(log, mode="log", prefix="kaiko-liq: ", clock=lambda: now[0])
    for t, text in [
        (100.0, "a"),
        (110.0, "b"),
        (129.9, "c"),
        (130.0, "d"),
        (150.0, "e"),
        (161.0, "f"),
    ]:
        now[0] = t
        line.show(text, force=True)  # force redraws a terminal, never floods a log
    line.clear()
    assert log.getvalue() == "kaiko-liq: d\nkaiko-liq: f\n"


def test_for_stream_picks_the_mode() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert ProgressLine.for_stream(Terminal(), quiet=False).mode == "terminal"
    assert ProgressLine.for_stream(io.StringIO(), quiet=False).mode == "log"
    assert ProgressLine.for_stream(Terminal(), quiet=True).mode == "off"
    off = io.StringIO()
    line = ProgressLine(off, mode="off")
    line.show("x", force=True)
    assert off.getvalue() == ""


async def test_progress_on_a_terminal_shows_retries_as_they_happen(make_emulator: Any) -> None:
    """A flaky server: the line counts the retries and names the last error."""
    import anyio

    flaky = await make_emulator(fault_rate=0.4, seed=3, latency=0.05)
    leader, follower = pty.openpty()
    environ = environment()
    async with await anyio.open_process(
        [*CLI, "fetch", "eth", "--start", "2025-02-01", "--end", "2025-02-15", "--page-size",
         "24", "--max-concurrency", "2", "--base-url", flaky.base_url],
        stdout=subprocess.DEVNULL, stderr=follower, env=environ,
    ) as proc:  # fmt: skip
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = await anyio.to_thread.run_sync(os.read, leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        os.close(leader)
        assert await proc.wait() == 0, seen
    text = seen.decode()
    assert re.search(r"\rshards \d+/14 · .* · [\d,]+ retr(y|ies), last: \S", text), text


def test_json_lines_ignores_a_breakdown_path_it_never_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "y.exchanges.jsonl").mkdir()  # only CSV and Parquet write a second file
    assert main(["fetch", "eth", *WINDOW, "--emulator", "-o", str(tmp_path / "y.jsonl")]) == 0
    assert (tmp_path / "y.jsonl").read_bytes()


def test_a_key_typed_as_an_asset_is_hidden_whatever_its_case(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6"
    monkeypatch.setenv("KAIKO_API_KEY", key)
    assert main(["fetch", key, *WINDOW, "--emulator", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "404" in err and key.lower() not in err.lower()


def test_an_empty_output_path_is_refused_not_taken_for_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["fetch", "eth", *WINDOW, "--emulator", "-o", ""]) == 2
    captured = capsys.readouterr()
    assert "-o needs a path" in captured.err and captured.out == ""
