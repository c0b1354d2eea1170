"""kaiko_liq.fetch / fetch_frame: blocking calls from a script and from a running loop.

Each call starts the built-in emulator on a loop of its own (``emulator=True``): an
emulator fixture would live on the test's loop, which a blocking call holds up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import kaiko_liq
from kaiko_liq import InvalidArgumentError, LiquidationClient
from kaiko_liq.emulator import running_emulator

START, END = "2025-02-01", "2025-02-15"
REPO = Path(__file__).resolve().parents[1]


def _sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kaiko-liq-sync"]


def test_from_a_plain_script_calls_are_independent() -> None:
    # The symptom: a second asyncio.run with one client said "Event loop is closed".
    first = kaiko_liq.fetch("eth", START, END, emulator=True)
    again = kaiko_liq.fetch("eth", START, END, emulator=True)
    assert first == again and len(first) > 100
    assert first[0].interval_time > first[-1].interval_time  # desc, the API's default
    frame = kaiko_liq.fetch_frame(["eth", "btc"], START, END, emulator=True)
    assert list(frame["asset"].unique()) == ["eth", "btc"]
    eth = frame[frame["asset"] == "eth"]
    assert list(eth["total_amount"]) == [r.total_amount for r in reversed(first)]
    assert not _sync_threads()  # nothing left running


async def test_the_same_calls_work_inside_a_running_loop() -> None:
    assert asyncio.get_running_loop().is_running()
    rows = kaiko_liq.fetch("eth", START, END, sort="asc", emulator=True)
    frame = kaiko_liq.fetch_frame("eth", START, END, backend="polars", emulator=True)
    # The same as the async client gives against an emulator of the same (default) data.
    async with running_emulator() as emu, LiquidationClient(base_url=emu.base_url) as client:
        assert rows == await client.fetch("eth", START, END, sort="asc")
    assert frame["total_amount"].to_list() == [r.total_amount for r in rows]
    assert not _sync_threads()


def test_client_arguments_are_passed_on_and_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="rate_limit"):
        kaiko_liq.fetch("eth", START, END, emulator=True, rate_limit="fast")
    with pytest.raises(InvalidArgumentError, match="not both"):
        kaiko_liq.fetch("eth", START, END, emulator=True, base_url="http://127.0.0.1:1")
    with pytest.raises(InvalidArgumentError, match="backend"):
        kaiko_liq.fetch_frame("eth", START, END, emulator=True, backend="excel")
    rows = kaiko_liq.fetch("eth", START, END, emulator=True, rate_limit="6000/min", page_size=7)
    assert rows == kaiko_liq.fetch("eth", START, END, emulator=True)


def test_errors_come_out_as_themselves() -> None:
    with pytest.raises(kaiko_liq.NotFoundError, match="zzz"):
        kaiko_liq.fetch("zzz", START, END, emulator=True)


# --- Ctrl-C ---------------------------------------------------------------------------------

# A fetch that takes a minute: 1 request/s, 10 rows a page.
_SLOW_FETCH = """
import asyncio, sys, threading, time, kaiko_liq
def slow():
    print("calling", flush=True)
    kaiko_liq.fetch("eth", "2025-02-01", "2025-03-01", emulator=True, rate_limit=1, page_size=10)
def threads():
    # The worker loop's decoding threads (anyio's) are told to stop as it closes; give
    # them a moment to go.
    for _ in range(100):
        if threading.active_count() == 1:
            break
        time.sleep(0.01)
    return threading.active_count()
"""
_SCRIPTS = {
    "script": _SLOW_FETCH
    + """
try:
    slow()
except KeyboardInterrupt:
    print("interrupted", threads(), flush=True)
""",
    # asyncio.run's own Ctrl-C handler cancels the main task instead of raising.
    "asyncio.run": _SLOW_FETCH
    + """
async def main():
    slow()
try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("interrupted", threads(), flush=True)
""",
    # A loop run as a notebook kernel runs one: Ctrl-C raises KeyboardInterrupt.
    "notebook": _SLOW_FETCH
    + """
async def cell():
    slow()
loop = asyncio.new_event_loop()
try:
    loop.run_until_complete(cell())
except KeyboardInterrupt:
    print("interrupted", threads(), flush=True)
loop.close()
""",
}


@pytest.mark.realtime
@pytest.mark.parametrize("where", list(_SCRIPTS))
def test_ctrl_c_cancels_the_call_cleanly(tmp_path: Path, where: str) -> None:
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent(_SCRIPTS[where]))
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "error"}
    proc = subprocess.Popen(
        [sys.executable, "-X", "dev", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "calling"
    # Let it get going: the emulator up, the first requests sent and waiting on the limiter.
    threading.Event().wait(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert out.strip() == "interrupted 1", err
    assert "Unclosed" not in err and "Task was destroyed" not in err, err
    assert "Traceback" not in err, err
