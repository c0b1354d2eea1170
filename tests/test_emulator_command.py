"""``python -m kaiko_liq.emulator``: URL first on stdout, clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from kaiko_liq.cli import main
from kaiko_liq.emulator import EmulatorConfig
from kaiko_liq.emulator.command import add_arguments, run

SEED_PATH = "/v2/data/liquidation.v1/token/eth?page_size=3&sort=asc"


@contextmanager
def emulator_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kaiko_liq.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(20.0, proc.kill)  # never let a stuck child hang the suite
    watchdog.start()
    try:
        assert proc.stdout is not None
        yield proc, proc.stdout.readline().strip()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def fetch(url: str, key: str = "k") -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, headers={"X-Api-Key": key})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_prints_its_url_first_serves_and_stops_cleanly(signum: signal.Signals) -> None:
    with emulator_process("--page-cap", "2", "--api-key", "K") as (proc, url):
        assert url.startswith("http://127.0.0.1:") and not url.endswith("/")
        status, page = fetch(url + SEED_PATH, key="K")
        assert status == 200
        assert isinstance(page["data"], list) and len(page["data"]) == 2  # --page-cap
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out == ""  # the URL was the only line
    assert "Traceback" not in err
    assert "synthetic" in err.lower()


def test_a_bad_option_exits_2_with_a_message() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kaiko_liq.emulator", "--fault-rate", "2"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 2
    assert "fault_rate" in proc.stderr and "Traceback" not in proc.stderr


def test_the_flags_default_to_the_config_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    defaults = EmulatorConfig()
    assert (args.host, args.port) == ("127.0.0.1", 0)
    fields = ("latency", "jitter", "rate_limit", "retry_after", "fault_rate", "page_cap")
    for field in (*fields, "paging", "now", "settle_seconds"):
        assert getattr(args, field) == getattr(defaults, field), field
    assert (args.seed, args.api_key, args.empty_last_page) == (0, None, False)
    assert (args.retry_after, args.paging, args.now) == (False, "rows", None)
    assert args.gzip is defaults.gzip is True
    assert parser.parse_args(["--no-gzip"]).gzip is False
    args = parser.parse_args(
        [
            *("--retry-after", "--empty-last-page", "--rate-limit", "6000/min"),
            *("--jitter", "0.1", "--paging", "time", "--now", "2026-03-10T14:30:00Z"),
            *("--settle-seconds", "0"),
        ]
    )
    assert (args.retry_after, args.empty_last_page, args.rate_limit) == (True, True, "6000/min")
    assert (args.paging, args.settle_seconds) == ("time", 0)
    assert args.now == datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
    # The old spelling still works (benchmarks use it).
    assert parser.parse_args(["--no-retry-after"]).retry_after is False


# --- bad flags: argparse's one-line error and exit 2, never a traceback ---------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "99999"], "argument --port: port 99999 is out of range; allowed: 0"),
        (["--port", "-1"], "argument --port: port -1 is out of range"),
        (["--port", "http"], "argument --port: 'http' is not an integer"),
        (["--latency", "-1"], "argument --latency: latency must be a number of seconds >= 0"),
        (["--latency", "nan"], "argument --latency: latency must be a number of seconds >= 0"),
        (["--jitter", "-0.5"], "argument --jitter: jitter must be a number of seconds >= 0"),
        (["--rate-limit", "0"], "argument --rate-limit: rate_limit must be a positive number"),
        (["--rate-limit", "0/min"], "argument --rate-limit: rate_limit must be a positive"),
        (["--rate-limit", "inf"], "argument --rate-limit: rate_limit 'inf' is not a rate"),
        (["--rate-limit", "9/h"], "argument --rate-limit: rate_limit '9/h' is not a rate"),
        (["--paging", "pages"], "argument --paging: invalid choice: 'pages'"),
        (["--now", "soon"], "argument --now: --now 'soon' is not an ISO 8601 time"),
        (["--settle-seconds", "-1"], "argument --settle-seconds: settle_seconds must be"),
        (["--fault-rate", "1.5"], "argument --fault-rate: fault_rate must be a probability"),
        (["--fault-rate", "nan"], "argument --fault-rate: fault_rate must be a probability"),
        (["--page-cap", "0"], "argument --page-cap: page_cap must be at least 1"),
        (["--page-cap", "two"], "argument --page-cap: 'two' is not an integer"),
        (["--api-key", ""], "argument --api-key: api_key must be non-empty"),
    ],
)
def test_kaiko_liq_emulator_refuses_a_bad_flag_in_one_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["emulator", *flags]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no URL: nothing was started
    [line] = captured.err.splitlines()
    assert line.startswith(f"kaiko-liq: error: {message}")
    assert line.endswith("(see 'kaiko-liq emulator --help')")


def test_python_m_keeps_its_own_name_and_has_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kaiko_liq.emulator", "--port", "99999"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 2
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "python -m kaiko_liq.emulator: error: argument --port: port 99999 is out of range; "
        "allowed: 0 (a free one) to 65535"
    )


def test_a_port_in_use_is_one_kaiko_liq_error_line_with_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "kaiko_liq.cli", "emulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert proc.returncode == 1
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"kaiko-liq: error: cannot listen on 127.0.0.1:{port}: ")


def test_a_bad_config_that_gets_past_argparse_is_one_line_with_the_callers_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    args.fault_rate = 7.0  # as a caller that builds its own Namespace might
    assert run(args, prog="kaiko-liq") == 2
    assert capsys.readouterr().err == (
        "kaiko-liq: error: fault_rate must be a probability from 0 to 1, got 7.0\n"
    )


def test_now_fixes_the_clock_of_the_served_data() -> None:
    with emulator_process("--now", "2026-03-10T14:30:00Z", "--paging", "time") as (proc, url):
        status, page = fetch(url + "/v2/data/liquidation.v1/token/btc?page_size=2")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert status == 200
    query = page["query"]
    assert isinstance(query, dict) and query["data_end_time"] == "2026-03-10T15:00:00Z"
    assert query["request_time"] == "2026-03-10T14:30:00.000Z"
    assert "to 2026-03-10T14:30:00Z" in err and "paging by time" in err


def test_the_emulator_imports_nothing_of_the_client_but_the_wire_models() -> None:
    """Its own parsing, grid and constants: a disagreement with the client is findable.

    The package's ``__init__`` (the client's public surface) is bypassed, so only what
    the emulator's own modules import is seen.
    """
    script = """
import importlib.util, pkgutil, sys, types
spec = importlib.util.find_spec("kaiko_liq")
package = types.ModuleType("kaiko_liq")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["kaiko_liq"] = package
import kaiko_liq.emulator
for info in pkgutil.iter_modules(kaiko_liq.emulator.__path__, "kaiko_liq.emulator."):
    if info.name != "kaiko_liq.emulator.__main__":
        importlib.import_module(info.name)
print(" ".join(sorted(m for m in sys.modules if m.startswith("kaiko_liq"))))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20, check=True
    )
    loaded = set(proc.stdout.split())
    outside = {m for m in loaded if not m.startswith("kaiko_liq.emulator")}
    assert outside == {"kaiko_liq", "kaiko_liq.models"}
    assert {"kaiko_liq.emulator.grid", "kaiko_liq.emulator.command"} <= loaded
    for client_module in ("query", "protocol", "client", "transport", "errors", "plan", "shard"):
        assert f"kaiko_liq.{client_module}" not in loaded
