"""The key never leaves its header: the CLI as a subprocess, fed keys in the wrong places
(abbreviated flags, unknown flags, stray arguments, bad values) and key files in every
encoding a user's editor may save; no message may show the key, and no abbreviation may
turn a key into a file name."""

from __future__ import annotations

import codecs
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "kaiko_liq"]
SECRET = "3f9a1c2b7e8d4a6f"  # the shape of the key in the report
WINDOW = ["--start", "2025-02-01", "--end", "2025-02-02"]


def run(*args: str, key: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "KAIKO_API_KEY"}
    if key is not None:
        environ["KAIKO_API_KEY"] = key
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=environ | env, check=False, timeout=60
    )


def only_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "SYNTHETIC" not in line]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("kaiko-liq: error: "), stderr
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--api-key", SECRET], "unknown flag: --api-key "),
        (["--api", SECRET], "unknown flag: --api "),  # once an abbreviation of --api-key-file
        (["--api-key-fil", SECRET], "unknown flag: --api-key-fil "),
        ([f"--api-key={SECRET}"], "unknown flag: --api-key "),
        (["--key", SECRET], "unknown flag: --key "),
        (["--token", SECRET], "unknown flag: --token "),
        ([f"-k{SECRET}"], "unknown flag: -k "),
    ],
)
def test_a_key_passed_as_a_flag_is_refused_and_never_echoed(flags: list[str], named: str) -> None:
    done = run("fetch", "btc", *WINDOW, *flags)
    assert done.returncode == 2
    assert SECRET not in done.stderr and SECRET not in done.stdout
    line = only_line(done.stderr)
    assert named in line
    if "key" in named or "token" in named:
        assert "export KAIKO_API_KEY=" in line and "--api-key-file PATH" in line


@pytest.mark.parametrize("command", ["backfill", "plot"])
def test_every_subcommand_refuses_abbreviations(command: str, tmp_path: Path) -> None:
    target = ["--out", str(tmp_path / "ds")] if command == "backfill" else ["-o", "x.png"]
    done = run(command, "btc", *WINDOW, *target, "--api", SECRET)
    assert done.returncode == 2
    assert SECRET not in done.stderr
    assert "unknown flag: --api " in only_line(done.stderr)
    assert not (tmp_path / "ds").exists()


def test_a_flag_before_the_assets_does_not_turn_the_key_into_an_asset() -> None:
    done = run("fetch", "--api-key", SECRET, "btc", *WINDOW, "--emulator")
    assert done.returncode == 2
    assert SECRET not in done.stderr and "SYNTHETIC" not in done.stderr  # nothing started
    assert "unknown flag: --api-key" in only_line(done.stderr)


def test_a_stray_argument_is_not_shown() -> None:
    done = run("fetch", "btc", *WINDOW, SECRET)
    assert done.returncode == 2
    line = only_line(done.stderr)
    assert SECRET not in line
    assert "unexpected argument (argument 7), not shown" in line


@pytest.mark.parametrize(
    "argv",
    [
        ["fetch", "btc", *WINDOW, "--page-size", SECRET],  # invalid int value: ...
        ["fetch", "btc", *WINDOW, "--sort", SECRET],  # invalid choice: ...
        ["fetch", "btc", "--start", SECRET, "--end", "2025-02-02"],  # not a time
        ["fetch", "btc", *WINDOW, "--rate-limit", SECRET],
        ["fetch", SECRET + "!", *WINDOW, "--emulator"],  # an asset with a bad character
        [SECRET],  # invalid choice of command
        ["fetch", "btc", *WINDOW, "--api-key-file", SECRET],  # a key where its file goes
    ],
)
def test_a_key_given_as_some_other_value_is_hidden_in_the_message(argv: list[str]) -> None:
    done = run(*argv)
    assert done.returncode == 2
    assert SECRET not in done.stderr, done.stderr
    only_line(done.stderr)


def test_the_environment_key_is_hidden_from_every_message() -> None:
    """Even one that does not look like a key: the CLI knows it is one."""
    key = "my.kaiko.key"
    done = run("fetch", "btc", *WINDOW, "--interval", key, key=key)
    assert done.returncode == 2
    assert key not in done.stderr
    assert "interval '***' is not of the form" in only_line(done.stderr)


# --- key files ---------------------------------------------------------------------------------

KEY = "kaiko-key-5b9e0c17d4a2f836"


async def fetch_with_key_file(make_emulator: Any, tmp_path: Path, content: bytes) -> Any:
    """The emulator accepts only KEY: a fetch succeeds only if the file read as KEY."""
    import anyio

    guarded = await make_emulator(api_key=KEY)
    key_file = tmp_path / "key.txt"
    key_file.write_bytes(content)
    environ = {k: v for k, v in os.environ.items() if k != "KAIKO_API_KEY"}
    return await anyio.run_process(
        [*CLI, "fetch", "btc", *WINDOW, "--base-url", guarded.base_url, "--api-key-file",
         str(key_file), "-o", str(tmp_path / "out.jsonl")],
        check=False,
        env=environ,
    )  # fmt: skip


@pytest.mark.parametrize(
    "content",
    [
        KEY.encode() + b"\n",
        codecs.BOM_UTF8 + KEY.encode() + b"\r\n",
        codecs.BOM_UTF16_LE + (KEY + "\r\n").encode("utf-16-le"),  # Notepad's "Unicode"
        codecs.BOM_UTF16_BE + KEY.encode("utf-16-be"),
        b"  " + KEY.encode() + b"  \n",
    ],
    ids=["utf-8", "utf-8-bom", "utf-16-le-bom", "utf-16-be-bom", "padded"],
)
async def test_a_key_file_in_any_common_encoding_works(
    make_emulator: Any, tmp_path: Path, content: bytes
) -> None:
    done = await fetch_with_key_file(make_emulator, tmp_path, content)
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    assert KEY not in stderr
    assert (tmp_path / "out.jsonl").stat().st_size > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfa" + KEY.encode(), "is not text"),
        (b"   \n", "is empty"),
        (b"two words " + KEY.encode(), "characters an HTTP header cannot carry"),
    ],
    ids=["binary", "blank", "not-a-key"],
)
async def test_a_bad_key_file_is_one_line_without_its_contents(
    make_emulator: Any, tmp_path: Path, content: bytes, message: str
) -> None:
    done = await fetch_with_key_file(make_emulator, tmp_path, content)
    stderr = done.stderr.decode()
    assert done.returncode == 2
    line = only_line(stderr)
    assert message in line and "--api-key-file" in line
    assert KEY not in stderr and "PNG" not in stderr and "IHDR" not in stderr
    assert not (tmp_path / "out.jsonl").exists()
