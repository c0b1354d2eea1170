"""Faults are one line and the right exit code: a full disk and a read-only directory (a
real tmpfs, in a user namespace, where the machine allows one), a path that cannot be,
an unknown asset among good ones, Ctrl-C part-way, and an error nobody foresaw."""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kaiko_liq.cli as cli_module
from kaiko_liq.backfill import MANIFEST_NAME
from kaiko_liq.cli import main
from kaiko_liq.client import LiquidationClient
from tests.test_cli import (
    backfill_args,
    environment,
    one_error_line,
    serve_slow_emulator,
    shards_in_manifest,
    visible_shards,
    wait_for_shards,
)

CLI = [sys.executable, "-m", "kaiko_liq"]
WINDOW = ["--start", "2025-02-01", "--end", "2025-02-04"]
MONTH = ["--start", "2025-02-01", "--end", "2025-03-01"]


# --- a real full disk and a real read-only directory ------------------------------------------


def _can_mount_tmpfs() -> str | None:
    """Why a tmpfs cannot be mounted here, or None if it can."""
    if shutil.which("unshare") is None:
        return "no unshare(1) on this machine"
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=16k tmpfs /mnt"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a user namespace: {probe.stderr.decode().strip()}"
    return None


_NO_TMPFS = _can_mount_tmpfs()
needs_tmpfs = pytest.mark.skipif(_NO_TMPFS is not None, reason=_NO_TMPFS or "")


def on_small_tmpfs(
    mount: Path, argv: list[str], *, size: str, read_only: bool = False
) -> tuple[int, str, list[str]]:
    """Run the CLI with a fresh tmpfs of ``size`` at ``mount`` (private to it); returns
    the exit code, stderr, and what the tmpfs holds afterwards (as ``find`` lists it)."""
    mount.mkdir(exist_ok=True)
    listing = mount.parent / f"{mount.name}.listing"
    remount = f"&& mount -o remount,ro {mount} " if read_only else ""
    command = " ".join(map(_quote, [*CLI, *argv]))
    script = (
        f"mount -t tmpfs -o size={size} tmpfs {mount} {remount}&& "
        f"{{ {command}; rc=$?; find {mount} -mindepth 1 -name '*.*' > {listing}; exit $rc; }}"
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        env=environment(key=None),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stderr, listing.read_text().split()


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


@needs_tmpfs
def test_a_full_disk_after_the_fetch_is_exit_1_and_leaves_no_file(tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    code, stderr, files = on_small_tmpfs(
        mount, ["fetch", "eth", *MONTH, "--emulator", "-o", f"{mount}/liq.csv"], size="64k"
    )
    assert code == 1
    line = one_error_line(stderr)
    assert f"cannot write {mount}/liq" in line and line.endswith("No space left on device")
    assert files == []  # no temporary file, no half a table


@needs_tmpfs
def test_a_disk_filling_up_mid_backfill_is_exit_1_saying_what_was_saved(tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    out = f"{mount}/ds"
    argv = ["backfill", "eth", "btc", *MONTH, "--page-size", "24", "--emulator", "--out", out]
    code, stderr, files = on_small_tmpfs(mount, argv, size="160k")
    assert code == 1
    assert "Traceback" not in stderr and "ExceptionGroup" not in stderr
    line = one_error_line(stderr)
    assert "No space left on device" in line and out in line
    assert re.search(r"\d+ of \d+ shards", line), line  # what was saved
    assert not [f for f in files if f.endswith(".tmp")]


@needs_tmpfs
@pytest.mark.parametrize("command", ["fetch", "backfill"])
def test_a_read_only_target_is_exit_2_before_anything_is_fetched(
    tmp_path: Path, command: str
) -> None:
    mount = tmp_path / "mnt"
    target = ["--out", f"{mount}/ds"] if command == "backfill" else ["-o", f"{mount}/x.csv"]
    code, stderr, files = on_small_tmpfs(
        mount, [command, "eth", *WINDOW, "--emulator", *target], size="64k", read_only=True
    )
    assert code == 2
    assert "Read-only file system" in one_error_line(stderr)
    assert files == []


def test_an_output_under_a_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plain").write_text("")
    out = tmp_path / "plain" / "x.csv"
    assert main(["fetch", "eth", *WINDOW, "--emulator", "-o", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.endswith(f"cannot write {out}: {tmp_path / 'plain'} is a file, not a directory")


def test_permission_denied_is_one_line_naming_the_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """sysfs refuses new files even to root: a real EACCES."""
    assert main(["backfill", "eth", *WINDOW, "--emulator", "--out", "/sys/kaiko-liq"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "/sys/kaiko-liq" in line and ("denied" in line or "not permitted" in line)


# --- the last resort --------------------------------------------------------------------------


def fail_writing(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(cli_module, "write_files", boom)


def test_an_unforeseen_error_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fail_writing(monkeypatch, RuntimeError("boom"))
    assert main(["fetch", "eth", *WINDOW, "--emulator", "-o", str(tmp_path / "x.csv")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = one_error_line(err)
    assert "unexpected RuntimeError: boom" in line and "--debug" in line


def test_debug_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fail_writing(monkeypatch, RuntimeError("boom"))
    argv = ["fetch", "eth", *WINDOW, "--emulator", "-o", str(tmp_path / "x.csv"), "--debug"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom" in err
    assert err.splitlines()[-1].startswith("kaiko-liq: error: unexpected RuntimeError")


def test_an_exception_group_is_reported_by_what_is_inside(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    inner = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.csv"))
    fail_writing(monkeypatch, ExceptionGroup("unhandled errors", [ValueError("x"), inner]))
    assert main(["fetch", "eth", *WINDOW, "--emulator", "-o", str(tmp_path / "x.csv")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.endswith(f"cannot write {tmp_path / 'x.csv'}: No space left on device")


# --- per-asset failures -----------------------------------------------------------------------


def test_fetch_refuses_an_unknown_asset_naming_it_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.csv"
    assert main(["fetch", "btc", "zzz", *WINDOW, "--emulator", "-o", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "zzz" in line and "404" in line
    assert list(tmp_path.iterdir()) == []


def test_a_backfill_keeps_the_good_assets_and_names_the_unknown_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ds"
    argv = ["backfill", "btc", "zzz", "eth", *WINDOW, "--page-size", "24", "--emulator"]
    assert main([*argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("kaiko-liq: error: ")]
    assert len(errors) == 1 and "zzz" in errors[0], err
    assert len(list((out / "asset=btc").glob("*.parquet"))) == 3
    assert len(list((out / "asset=eth").glob("*.parquet"))) == 3
    assert not (out / "asset=zzz").exists() or not list((out / "asset=zzz").glob("*.parquet"))
    # What is on disk is shown above the error, the good assets with their files.
    assert re.search(r"^\s+btc\s+3\s", err, re.MULTILINE), err


# --- Ctrl-C -----------------------------------------------------------------------------------


@pytest.fixture
def slow_emulator() -> Iterator[str]:
    yield from serve_slow_emulator()


def read_pty_until(leader: int, pattern: bytes, deadline: float) -> bytes:
    seen = b""
    while pattern not in seen:
        assert time.monotonic() < deadline, seen
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    return seen


def read_pty_to_end(leader: int) -> bytes:
    return read_pty_until(leader, b"\x00never", time.monotonic() + 30)


@pytest.mark.realtime
def test_ctrl_c_during_a_fetch_says_nothing_was_written(slow_emulator: str, tmp_path: Path) -> None:
    """stderr a terminal, so the progress line says when the fetch is under way."""
    out = tmp_path / "x.csv"
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, "fetch", "eth", "--start", "2025-03-01", "--end", "2025-03-21", "--page-size",
         "24", "--max-concurrency", "1", "--base-url", slow_emulator, "-o", str(out)],
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )  # fmt: skip
    os.close(follower)
    try:
        read_pty_until(leader, b"shards 1/20", time.monotonic() + 30)
        proc.send_signal(signal.SIGINT)
        rest = read_pty_to_end(leader).decode()
    finally:
        os.close(leader)
    assert proc.wait(timeout=20) == 130
    assert "kaiko-liq: interrupted: nothing written" in rest
    assert "Traceback" not in rest
    assert list(tmp_path.iterdir()) == []


@pytest.mark.realtime
def test_ctrl_c_during_a_backfill_says_what_was_saved_and_a_rerun_resumes(
    slow_emulator: str, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    args = backfill_args(slow_emulator, out)
    proc = subprocess.Popen(
        [*CLI, *args, "--max-concurrency", "2"],
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for_shards(proc, out, at_least=2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130
    text = stderr.decode()
    assert "Traceback" not in text and "error" not in text
    saved = len(visible_shards(out))
    assert f"kaiko-liq: interrupted: {saved} of 40 shards saved in {out}; run the same " in text
    assert text.rstrip().endswith("run the same command to resume")
    # The interrupted run recorded itself, unfinished, with what it had written.
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["runs"][-1]["complete"] is False
    assert manifest["runs"][-1]["finished"] is not None
    assert shards_in_manifest(out) == saved

    again = subprocess.run([*CLI, *args], env=environment(), capture_output=True, check=False)
    assert again.returncode == 0, again.stderr
    first = again.stderr.decode().splitlines()[0]
    assert first == f"kaiko-liq: resuming: {saved} of 40 shards already on disk"


def test_a_fresh_backfill_does_not_say_it_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backfill", "eth", *WINDOW, "--emulator", "--out", str(tmp_path / "ds")]) == 0
    assert "resuming" not in capsys.readouterr().err


def test_an_interrupted_fetch_is_130_in_process_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def interrupted(self: LiquidationClient, *args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(LiquidationClient, "fetch_requests", interrupted)
    assert main(["fetch", "eth", *WINDOW, "--emulator"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == "kaiko-liq: interrupted: nothing written"


def test_a_device_fifo_or_symlink_as_output_is_never_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Renaming a file over /dev/null (we may be root) or a FIFO would replace it.
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/null")):
        argv = ["fetch", "eth", "--start", "2025-02-01", "--end", "2025-02-02", "--emulator"]
        assert main([*argv, "--format", "jsonl", "-o", str(target)]) == 2
        assert "not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(fifo.stat().st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    # A symlink is written through: the link stays a link, its target gets the rows.
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "t.jsonl").write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "real" / "t.jsonl")
    argv = ["fetch", "eth", "--start", "2025-02-01", "--end", "2025-02-02", "--emulator"]
    assert main([*argv, "-o", str(link)]) == 0
    assert link.is_symlink() and (tmp_path / "real" / "t.jsonl").read_text().startswith("{")
