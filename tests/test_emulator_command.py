"""``python -m kaiko_liq.emulator``: URL first on stdout, clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kaiko_liq.emulator import EmulatorConfig
from kaiko_liq.emulator.command import add_arguments

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
    for field in ("latency", "jitter", "rate_limit", "retry_after", "fault_rate", "page_cap"):
        assert getattr(args, field) == getattr(defaults, field), field
    assert (args.seed, args.api_key, args.empty_last_page) == (0, None, False)
    args = parser.parse_args(
        ["--no-retry-after", "--empty-last-page", "--rate-limit", "2.5", "--jitter", "0.1"]
    )
    assert (args.retry_after, args.empty_last_page, args.rate_limit) == (False, True, 2.5)
