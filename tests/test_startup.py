"""Start-up and exit of the command: ``import kaiko_liq`` and the CLI import only what a
command uses, and the console script ends without the interpreter's teardown once
everything is written, but never before its output is out."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaiko_liq import cli

HEAVY = ("aiohttp.web", "kaiko_liq.emulator", "pyarrow", "pandas", "matplotlib")


def _imported_by(code: str) -> dict[str, bool]:
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded: dict[str, bool] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_importing_the_package_and_the_cli_loads_nothing_heavy() -> None:
    assert _imported_by("import kaiko_liq") == dict.fromkeys(HEAVY, False)
    loaded = _imported_by(
        "import kaiko_liq, kaiko_liq.cli\nkaiko_liq.cli._build_parser(['backfill', 'btc'])"
    )
    assert loaded == dict.fromkeys(HEAVY, False)
    # The emulator command's options come with the emulator.
    loaded = _imported_by("import kaiko_liq.cli\nkaiko_liq.cli._build_parser(['emulator'])")
    assert loaded["kaiko_liq.emulator"]


def test_every_lazy_name_resolves() -> None:
    import kaiko_liq

    for name in kaiko_liq.__all__:
        assert getattr(kaiko_liq, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        kaiko_liq.nope  # noqa: B018


def test_version_goes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    import kaiko_liq

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"kaiko-liq {kaiko_liq.__version__}\n"


class _Exited(Exception):
    def __init__(self, how: str, code: int) -> None:
        super().__init__(how, code)
        self.how, self.code = how, code


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> None:
    def fast(code: int) -> None:
        raise _Exited("os._exit", code)

    def usual(code: int) -> None:
        raise _Exited("sys.exit", code)

    monkeypatch.setattr(cli.os, "_exit", fast)
    monkeypatch.setattr(cli.sys, "exit", usual)
    monkeypatch.setattr(cli, "main", lambda: 3)
    monkeypatch.setattr(cli, "_THREAD_GRACE", 0.01)


@pytest.fixture
def busy_thread() -> Iterator[threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)  # non-daemon: teardown would join it
    thread.start()
    yield thread
    stop.set()
    thread.join()


@pytest.mark.usefixtures("exits")
def test_entry_skips_teardown_only_when_no_thread_is_left() -> None:
    with pytest.raises(_Exited) as exited:
        cli._entry()
    assert (exited.value.how, exited.value.code) == ("os._exit", 3)


@pytest.mark.usefixtures("exits", "busy_thread")
def test_entry_leaves_a_running_thread_to_the_usual_exit() -> None:
    with pytest.raises(_Exited) as exited:
        cli._entry()
    assert (exited.value.how, exited.value.code) == ("sys.exit", 3)


def test_the_fast_exit_loses_no_output(tmp_path: Path) -> None:
    # Everything a command printed to a pipe arrives, and its status is kept.
    command = [sys.executable, "-m", "kaiko_liq", "fetch", "btc", "--emulator", "--quiet"]
    window = ["--start", "2025-02-01", "--end", "2025-02-11", "-o", "-", "--format", "jsonl"]
    done = subprocess.run([*command, *window], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 240 and all(json.loads(line)["asset"] == "btc" for line in lines)
    bad = subprocess.run(
        [*command, "--start", "2025-02-11", "--end", "2025-02-01"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("kaiko-liq: error: ")
