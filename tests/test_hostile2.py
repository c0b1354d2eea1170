"""Hostile conditions, second round (issue 17): no hang, no leak, no surprise.

Each case is driven the way an attacker or a careless user would drive it: a real
loopback server for bodies and echoed keys, the CLI as a subprocess for what a shell
sees. No real sleeps except where marked ``realtime``.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from aiohttp import web

from kaiko_liq import (
    AuthenticationError,
    ClientClosedError,
    ConnectError,
    IncompleteFetchError,
    InvalidArgumentError,
    LiquidationClient,
    ResponseTooLargeError,
    RetryPolicy,
)
from kaiko_liq.protocol import InflateStopped, inflate
from kaiko_liq.testing import no_sleeps
from tests.conftest import Serve

CLI = [sys.executable, "-m", "kaiko_liq"]
WINDOW = ["--start", "2026-10-31", "--end", "2026-10-31T03:00"]


def environment(key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KAIKO_API_KEY"}
    if key is not None:
        env["KAIKO_API_KEY"] = key
    return env


NOW = datetime(2026, 11, 1, tzinfo=UTC)


def page(rows: int = 0, *, desc: bool = False) -> bytes:
    """A one-page answer with ``rows`` hours of 2026-10-31 from midnight, no cursor."""
    start = int(datetime(2026, 10, 31, tzinfo=UTC).timestamp() * 1000)
    data = ",".join(
        f'{{"interval_time":"2026-10-31T{h:02d}:00:00.000Z","interval_timestamp":'
        f'{start + h * 3_600_000},"total_trades":1,"total_amount":1.0,"long_trades":0,'
        '"long_amount":0.0,"short_trades":1,"short_amount":1.0,"exchanges":[]}'
        for h in (reversed(range(rows)) if desc else range(rows))
    )
    return ('{"result":"success","data":[' + data + "]}").encode()


# -- 1. inflate: linear in the body, whatever its member count ------------------------


def test_many_empty_members_inflate_fast() -> None:
    body = gzip.compress(b"") * 100_000
    started = time.perf_counter()
    assert inflate(body, "gzip", 64 << 20, "u") == b""
    assert time.perf_counter() - started < 1.0


def test_many_members_scale_linearly() -> None:
    """Four times the members take about four times as long, not sixteen."""

    def timed(n: int) -> float:
        body = gzip.compress(b"x") * n
        started = time.perf_counter()
        assert inflate(body, "gzip", 64 << 20, "u") == b"x" * n
        return time.perf_counter() - started

    small = min(timed(5_000) for _ in range(2))
    large = min(timed(20_000) for _ in range(2))
    assert large < small * 8


def test_members_cap_on_running_total() -> None:
    body = gzip.compress(b"a" * 1000) * 50
    with pytest.raises(ResponseTooLargeError):
        inflate(body, "gzip", 49_999, "u")
    assert inflate(body, "gzip", 50_000, "u") == b"a" * 50_000


def test_members_with_large_and_small_parts_roundtrip() -> None:
    big = bytes(range(256)) * 20_000
    body = gzip.compress(big) + gzip.compress(b"") + gzip.compress(b"tail")
    assert inflate(body, "gzip", 64 << 20, "u") == big + b"tail"


def test_inflate_stops_when_asked() -> None:
    body = gzip.compress(b"") * 1000
    with pytest.raises(InflateStopped):
        inflate(body, "gzip", 64 << 20, "u", stopped=lambda: True)


async def test_many_member_body_from_a_real_server(serve: Serve) -> None:
    body = gzip.compress(page(3)[:40]) + b"".join(gzip.compress(bytes([c])) for c in page(3)[40:])
    body += gzip.compress(b"") * 100_000

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    base = await serve(handler)
    started = time.perf_counter()
    async with LiquidationClient(base_url=base, now=lambda: NOW) as client:
        rows = await client.fetch("btc", "2026-10-31", "2026-10-31T03:00", sort="asc")
    assert len(rows) == 3
    assert time.perf_counter() - started < 3.0


async def test_cancelled_inflate_does_not_wait_for_its_thread(serve: Serve) -> None:
    """Ctrl-C (a cancel) leaves the worker thread behind at once, and tells it to stop."""
    from kaiko_liq import transport

    gate = threading.Event()
    seen: list[bool] = []

    real = transport.decipher

    def slow(*args: object, **kwargs: object) -> object:
        stopped = kwargs["stopped"]
        assert callable(stopped)
        gate.wait(5)
        seen.append(stopped())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b" " * (transport.THREAD_BODY_BYTES + 1) + page())

    base = await serve(handler)
    transport.decipher = slow  # type: ignore[assignment]
    try:
        async with LiquidationClient(base_url=base, now=lambda: NOW) as client:
            with anyio.move_on_after(0.3) as scope:
                await client.fetch("btc", "2026-10-31", "2026-10-31T01:00")
            assert scope.cancelled_caught
    finally:
        transport.decipher = real
        gate.set()
    for _ in range(100):
        if seen:
            break
        await anyio.sleep(0.01)
    assert seen == [True]


# -- 2. follow: woken by its client's close; a future since refused --------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW
        self.slept = anyio.Event()

    def __call__(self) -> datetime:
        return self.now

    async def sleep_forever(self, seconds: float) -> None:
        self.slept.set()
        await anyio.sleep_forever()


async def test_follow_ends_when_its_client_closes(serve: Serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=page(), content_type="application/json")

    base = await serve(handler)
    clock = Clock()
    client = LiquidationClient(base_url=base, now=clock)
    follow = client.follow("btc", since=NOW - timedelta(hours=3), sleep=clock.sleep_forever)
    outcome: list[BaseException] = []

    async def consume() -> None:
        try:
            async for _ in follow:
                pass
        except ClientClosedError as exc:
            outcome.append(exc)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await clock.slept.wait()
            await client.aclose()
    assert len(outcome) == 1


async def test_follow_closed_while_fetching(serve: Serve) -> None:
    arrived = anyio.Event()

    async def handler(request: web.Request) -> web.Response:
        arrived.set()
        await anyio.sleep_forever()
        raise AssertionError

    base = await serve(handler)
    client = LiquidationClient(base_url=base, now=lambda: NOW)
    errors: list[BaseException] = []

    async def consume() -> None:
        try:
            async for _ in client.follow("btc", since=NOW - timedelta(hours=3)):
                pass
        except ClientClosedError as exc:
            errors.append(exc)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await arrived.wait()
            await client.aclose()
    assert len(errors) == 1


async def test_follow_since_in_the_future_is_refused() -> None:
    async with LiquidationClient(base_url="http://127.0.0.1:9", now=lambda: NOW) as client:
        with pytest.raises(ValueError, match="in the future"):
            client.follow("btc", since="2030-01-01")


async def test_follow_logs_why_it_sleeps(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=page(), content_type="application/json")

    base = await serve(handler)
    clock = Clock()
    async with LiquidationClient(base_url=base, now=clock) as client:
        follow = client.follow("btc", since=NOW - timedelta(hours=2), sleep=clock.sleep_forever)
        with caplog.at_level(logging.DEBUG, logger="kaiko_liq"):
            async with anyio.create_task_group() as tg:

                async def consume() -> None:
                    async with follow as rows:
                        async for _ in rows:
                            pass

                tg.start_soon(consume)
                await clock.slept.wait()
                tg.cancel_scope.cancel()
    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert "follow btc: sleeping" in text and "settles" in text


# -- 3. a blocking call on the loop that would serve it --------------------------------


async def test_blocking_call_inside_the_serving_loop_fails_at_once() -> None:
    import kaiko_liq
    from kaiko_liq.emulator import running_emulator

    async with running_emulator(host="127.0.0.1", port=0) as emu:
        started = time.perf_counter()
        with pytest.raises(ValueError, match=r"await client\.fetch\(") as caught:
            kaiko_liq.fetch("btc", "2025-01-01", "2025-01-02", base_url=emu.base_url)
        assert "served by the event loop running on it" in str(caught.value)
        with pytest.raises(ValueError, match=r"await client\.fetch_frame\("):
            kaiko_liq.fetch_frame("btc", "2025-01-01", "2025-01-02", base_url=emu.base_url)
        assert time.perf_counter() - started < 1.0


async def test_blocking_call_inside_a_loop_to_another_server_still_works() -> None:
    """A server on another thread's loop: the worker-thread path, as before."""
    import kaiko_liq
    from kaiko_liq.emulator import EmulatorConfig, running_emulator

    ready = threading.Event()
    stop = threading.Event()
    urls: list[str] = []

    def serve_elsewhere() -> None:
        async def main() -> None:
            config = EmulatorConfig(latency=0.0, rate_limit=None, fault_rate=0.0, now=NOW)
            async with running_emulator(config, host="127.0.0.1", port=0) as emu:
                urls.append(emu.base_url)
                ready.set()
                await anyio.to_thread.run_sync(stop.wait)

        anyio.run(main)

    thread = threading.Thread(target=serve_elsewhere)
    thread.start()
    try:
        assert ready.wait(10)
        rows = kaiko_liq.fetch("btc", "2026-10-01", "2026-10-02", base_url=urls[0])
        assert len(rows) > 0
    finally:
        stop.set()
        thread.join()


# -- 4. secrets in every form; credentials in a URL ------------------------------------

KEY = "Zk3/Qw8+Lm5Xy7Pq2Rt9Vb1Nc4Hd6Jf0"


def echoed_forms(key: str) -> list[str]:
    return [
        key,
        json.dumps(key)[1:-1].replace("/", "\\/"),  # JSON with "/" escaped, as PHP sends it
        quote(key, safe=""),
        base64.b64encode(key.encode()).decode(),
    ]


@pytest.mark.parametrize("form", range(4))
async def test_key_echoed_in_any_form_is_never_shown(
    serve: Serve, form: int, caplog: pytest.LogCaptureFixture
) -> None:
    echoed = echoed_forms(KEY)[form]

    async def handler(request: web.Request) -> web.Response:
        # A proxy's page, not Kaiko's envelope: quoted as it came, escapes and all.
        text = '<p>{"error": "key \\"' + echoed + '\\" is not valid"}</p>'
        return web.Response(status=401, text=text)

    base = await serve(handler)
    with caplog.at_level(logging.DEBUG, logger="kaiko_liq"):
        async with LiquidationClient(KEY, base_url=base, now=lambda: NOW) as client:
            with pytest.raises(AuthenticationError) as caught:
                await client.fetch("btc", "2026-10-31", "2026-10-31T03:00")
    shown = [str(caught.value), repr(caught.value), caught.value.message, caplog.text]
    for text in shown:
        for secret in echoed_forms(KEY):
            assert secret not in text
    assert "***" in str(caught.value)


async def test_key_echoed_json_escaped_in_the_cli_debug_output(serve: Serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        escaped = request.headers["X-Api-Key"].replace("/", "\\/")
        return web.Response(status=403, text='<p>{"detail":"bad key ' + escaped + '"}</p>')

    base = await serve(handler)
    for debug in (["--debug"],):  # the one line, and the traceback after it
        done = await anyio.run_process(
            [*CLI, *debug, "fetch", "btc", *WINDOW, "--base-url", base],
            check=False,
            env=environment(KEY),
        )
        err = done.stderr.decode()
        assert done.returncode == 2 or done.returncode == 1, err
        assert "bad key ***" in err
        for secret in echoed_forms(KEY):
            assert secret not in err


def test_base_url_credentials_refused_unless_allowed() -> None:
    with pytest.raises(InvalidArgumentError, match="credentials") as caught:
        LiquidationClient(base_url="http://alice:Passw0rdSECRET1234@127.0.0.1:1")
    assert "Passw0rdSECRET1234" not in str(caught.value)
    client = LiquidationClient(
        base_url="http://alice:Passw0rdSECRET1234@127.0.0.1:1", allow_credentials=True
    )
    assert client.base_url == "http://127.0.0.1:1"
    assert "Passw0rd" not in repr(client) and "alice" not in repr(client)


async def test_credentials_allowed_are_sent_but_never_shown(serve: Serve) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(status=502, text="bad gateway")

    base = await serve(handler)
    url = base.replace("http://", "http://alice:Passw0rdSECRET1234@")
    policy = RetryPolicy(max_attempts=2)
    with no_sleeps():
        async with LiquidationClient(base_url=url, allow_credentials=True, retry=policy) as c:
            with pytest.raises(IncompleteFetchError) as caught:
                await c.fetch("btc", "2026-10-31", "2026-10-31T03:00")
    assert seen and seen[0].startswith("Basic ")
    assert "Passw0rd" not in str(caught.value) and "alice" not in str(caught.value)


def test_cli_base_url_with_credentials_is_refused_without_showing_them() -> None:
    done = subprocess.run(
        [
            *CLI,
            "fetch",
            "btc",
            *WINDOW,
            "--base-url",
            "http://alice:Passw0rdSECRET1234@127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        env=environment("k" * 20),
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Passw0rdSECRET1234" not in done.stderr and "credentials" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# -- 5. a base URL validated whole ------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999",
        "http://[::1",
        "http://::1:8080",
        "http://127.0.0.1:0",
        "http://127.0.0.1:-1",
        "http://127.0.0.1:port",
        "ftp://127.0.0.1",
        "http://exa mple.com",
    ],
)
def test_bad_base_url_refused_at_construction(url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="base_url"):
        LiquidationClient(base_url=url)


def test_ipv6_base_url_accepted() -> None:
    assert LiquidationClient(base_url="http://[::1]:8080/").base_url == "http://[::1]:8080"


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://[::1"])
def test_cli_bad_base_url_is_a_usage_error(url: str) -> None:
    done = subprocess.run(
        [*CLI, "fetch", "btc", *WINDOW, "--base-url", url],
        capture_output=True,
        text=True,
        env=environment("k" * 20),
        check=False,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "unexpected" not in done.stderr and "not a valid URL" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# -- 6. a host that cannot be reached ---------------------------------------------------

# The CLI with name resolution that fails at once for ``.invalid`` (RFC 6761): the test
# must not depend on how long this machine's resolver takes to say no.
OFFLINE_CLI = [
    sys.executable,
    "-c",
    "import runpy, socket\n"
    "real = socket.getaddrinfo\n"
    "def fake(host, *a, **k):\n"
    "    if str(host).endswith('.invalid'):\n"
    "        raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')\n"
    "    return real(host, *a, **k)\n"
    "socket.getaddrinfo = fake\n"
    "runpy.run_module('kaiko_liq', run_name='__main__', alter_sys=True)\n",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.realtime
@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "kaiko-liq-test.invalid"])
def test_cli_offline_host_reported_once_briefly(host: str) -> None:
    scheme = "http" if host.startswith("127.") else "https"
    base = f"{scheme}://{host.format(port=free_port())}"
    started = time.monotonic()
    done = subprocess.run(
        [
            *OFFLINE_CLI,
            "fetch",
            "btc",
            "eth",
            *["--start", "2025-01-01", "--end", "2025-03-01"],
            "--base-url",
            base,
        ],
        capture_output=True,
        text=True,
        env=environment("k" * 20),
        check=False,
        timeout=60,
    )
    took = time.monotonic() - started
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and len(lines[0]) < 220, done.stderr
    name = host.split(":")[0]
    assert name in lines[0]
    assert ("cannot resolve" if name.endswith(".invalid") else "Connection refused") in lines[0]
    assert took < 15


async def test_unreachable_host_retried_briefly_on_a_fake_clock() -> None:
    """Retried within connect_deadline (not the whole deadline), then final for the fetch."""
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async with LiquidationClient(base_url=f"http://127.0.0.1:{free_port()}", now=lambda: NOW) as c:
        c._transport._sleep = sleep
        c._transport._clock = lambda: now[0]
        with pytest.raises(ConnectError, match="cannot connect to 127.0.0.1") as caught:
            await c.fetch_many(["btc", "eth"], "2025-01-01", "2025-03-01")
    assert 0 < now[0] <= RetryPolicy().connect_deadline
    assert caught.value.host == "127.0.0.1"


# -- 7. SIGTERM as Ctrl-C; temporary files of dead writers only -------------------------


@pytest.fixture
def slow_emulator() -> Iterator[str]:
    from tests.test_cli import serve_slow_emulator

    yield from serve_slow_emulator()


@pytest.mark.realtime
def test_sigterm_mid_backfill_says_what_was_saved(slow_emulator: str, tmp_path: Path) -> None:
    from tests.test_cli import backfill_args, visible_shards, wait_for_shards

    out = tmp_path / "ds"
    proc = subprocess.Popen(
        [*CLI, *backfill_args(slow_emulator, out), "--max-concurrency", "2"],
        env=environment("test"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for_shards(proc, out, at_least=2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=20)
    text = stderr.decode()
    assert proc.returncode == 143, text
    assert "Traceback" not in text and "error" not in text
    saved = len(visible_shards(out))
    last = text.rstrip().splitlines()[-1]
    assert last == (
        f"kaiko-liq: terminated: {saved} of 40 shards saved in {out}; "
        "run the same command to resume"
    )
    assert not list(out.rglob("*.tmp"))


def test_sigterm_handler_turns_into_the_interrupt_path() -> None:
    """In-process: SIGTERM during a command is KeyboardInterrupt, then 'terminated'."""
    from kaiko_liq.cli import _TERM

    restore = _TERM.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
            time.sleep(1)  # the handler runs before this returns
        assert _TERM.word() == "terminated" and _TERM.code() == 143
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is not _TERM._on_term


def _written_by(pid: int, directory: Path) -> Path:
    path = directory / f".20250301T000000Z_20250302T000000Z.parquet.{pid}.0123abcdef01.tmp"
    path.write_bytes(b"PAR1 half")
    return path


def test_only_dead_writers_temporary_files_are_removed(tmp_path: Path) -> None:
    from tests.conftest import DEAD_PID
    from tests.stores import token_store

    store = token_store(tmp_path, "1h")
    part = tmp_path / "asset=eth"
    part.mkdir(parents=True)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as live:
        try:
            theirs = _written_by(live.pid, part)  # another process, still writing
            ours = _written_by(os.getpid(), part)  # a thread of this one
            dead = _written_by(DEAD_PID, part)
            old = part / ".20250301T000000Z_20250302T000000Z.parquet.0123abcdef.tmp"
            old.write_bytes(b"PAR1 an older version's, just now")
            store.remove_temporary("asset=eth")
            assert theirs.exists() and ours.exists() and old.exists()
            assert not dead.exists()
        finally:
            live.kill()
    live.wait()
    store.remove_temporary("asset=eth")
    assert not theirs.exists() and ours.exists()


def test_a_store_write_removes_a_killed_writers_leftovers(tmp_path: Path) -> None:
    """A cache writer killed with kill -9 leaves its temporary file; the next write to that
    asset's partition (a cache's or a backfill's) removes it, as its writer is gone."""
    from kaiko_liq.models import decode_page
    from kaiko_liq.query import parse_time
    from tests.conftest import DEAD_PID
    from tests.stores import tok, token_store

    rows = decode_page(page(3)).data
    assert rows is not None
    store = token_store(tmp_path, "1h")
    part = tmp_path / "asset=btc"
    part.mkdir(parents=True)
    leftover = _written_by(DEAD_PID, part)
    live = _written_by(os.getpid(), part)
    store.write(tok("btc"), parse_time("2026-10-31"), parse_time("2026-10-31T03:00"), rows)
    assert not leftover.exists() and live.exists()
    assert len(store.shards(tok("btc"))) == 1


# -- 8. leaving a plain async for stops its requests at once ---------------------------


@pytest.mark.parametrize("leave", ["break", "raise"])
async def test_leaving_a_plain_async_for_cancels_its_requests(serve: Serve, leave: str) -> None:
    started: list[str] = []
    cancelled: list[str] = []
    in_flight = anyio.Event()

    async def handler(request: web.Request) -> web.Response:
        end = request.query.get("end_time", "")
        if end.startswith("2026-10-31T03"):
            return web.Response(body=page(3, desc=True), content_type="application/json")
        started.append(end)
        if len(started) == 3:  # the window's other shards are in flight
            in_flight.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(end)  # the client dropped the connection
        raise AssertionError

    base = await serve(handler)
    async with LiquidationClient(base_url=base, now=lambda: NOW, page_size=24) as client:
        with anyio.fail_after(5):
            try:
                async for _ in client.stream("btc", "2026-10-20", "2026-10-31T03:00", window=4):
                    await in_flight.wait()
                    if leave == "break":
                        break
                    raise LookupError
            except LookupError:
                pass
            for _ in range(50):  # loop steps, not seconds: the finalizer runs at once
                if len(cancelled) == len(started):
                    break
                await anyio.sleep(0.01)
        assert started and sorted(cancelled) == sorted(started)
        requests = client.stats.requests
        await anyio.sleep(0.1)
        assert client.stats.requests == requests  # and none sent after


# -- 9. surprises: keys as given, messages that point to the fix, help, __version__ -----


async def test_fetch_many_keys_are_the_codes_as_given(serve: Serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=page(3), content_type="application/json")

    base = await serve(handler)
    async with LiquidationClient(base_url=base, now=lambda: NOW) as client:
        got = await client.fetch_many(["BTC"], "2026-10-31", "2026-10-31T03:00", sort="asc")
        assert list(got) == ["BTC"] and len(got["BTC"]) == 3
        frame = await client.fetch_frame(["BTC"], "2026-10-31", "2026-10-31T03:00", backend="arrow")
    assert set(frame.column("asset").to_pylist()) == {"btc"}  # the code as sent


def test_a_list_given_to_fetch_points_to_fetch_many() -> None:
    import kaiko_liq

    with pytest.raises(InvalidArgumentError, match=r"fetch_many\(.*fetch_frame\("):
        kaiko_liq.fetch(["btc", "eth"], "2025-01-01", "2025-01-02", emulator=True)  # type: ignore[arg-type]


def test_no_key_points_to_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAIKO_API_KEY", raising=False)
    with pytest.raises(InvalidArgumentError, match=r"emulator=True"):
        LiquidationClient()


def test_version_is_exported() -> None:
    import kaiko_liq

    assert isinstance(kaiko_liq.__version__, str) and kaiko_liq.__version__
    assert "__version__" in kaiko_liq.__all__


def test_cli_hints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kaiko_liq.cli import main

    window = ["--start", "2025-01-01", "--end", "2025-01-02", "--emulator"]
    assert main(["fetch", "btc,eth", *window]) == 2
    assert "separated by spaces: btc eth" in capsys.readouterr().err
    for name in ("liq.csv", "liq.parquet", "liq.jsonl"):
        assert main(["backfill", "btc", *window, "--out", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert "looks like a file" in err and f"-o {tmp_path / name}" in err
        assert not (tmp_path / name).exists()


def test_cli_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    from kaiko_liq.cli import main

    assert main(["plot", "-h"]) == 0
    text = capsys.readouterr().out
    assert "see main()" not in text
    assert "the chart to write" in text
    connection = text[text.index("connection:") :]
    assert "--quiet" not in connection and "--quiet" in text


def test_readme_performance_prose_agrees_with_its_tables() -> None:
    """The verdicts quote the tables' own numbers (regenerating the tables means
    revisiting these sentences, and this test says which)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    perf = readme[readme.index("## Performance") :]
    prose = perf[perf.index("Verdicts, and what limits") :]

    def cells(title: str, row: str) -> list[str]:
        table = perf[perf.index(f"#### {title}") :]
        line = next(x for x in table.splitlines() if x.startswith(f"| {row} |"))
        return [c.strip() for c in line.strip("|").split("|")]

    fetch = cells("Backfill", "kaiko-liq fetch (library)")
    cli = cells("Backfill", "kaiko-liq backfill (CLI)")
    steps = {r: cells("Per page (1000 rows)", r)[1] for r in (
        "gzip inflate: ISA-L (isal)", "msgspec decode → LiquidationRow",
        "to_arrow(shape='nested') (backfill files)", "Parquet write (nested, to memory)",
        "row checks (token route)")}  # fmt: skip
    decode = cells("Decode", "kaiko-liq models (msgspec)")
    big = cells("Backfill job sizes (kaiko-liq backfill, the command)", "20 assets x 22 months")
    mid = cells("Backfill job sizes (kaiko-liq backfill, the command)", "5 assets x 22 months")
    small = cells("Backfill job sizes (kaiko-liq backfill, the command)", "1 asset x 1 month")
    asc = cells("Events: the busiest day, split while fetched (fetch_events)", "asc")
    desc = cells("Events: the busiest day, split while fetched (fetch_events)", "desc")
    x = lambda cell: cell.replace("×", "x")  # noqa: E731
    NESTED = "to_arrow(shape='nested') (backfill files)"
    quoted = [
        f"({fetch[1]}, {x(fetch[2])} the bound",
        f"uses {fetch[9]} of CPU per page, within target ({cli[9]} for the backfill)",
        f"(20 x 22 months: {big[3]}, {x(big[4])} the bound",
        f"5 x 22 months: {mid[3]}, {x(mid[4])}",
        f"at {big[6]} of CPU per page",
        f"msgspec decode {steps['msgspec decode → LiquidationRow']}",
        f"Arrow build {steps[NESTED]}",
        f"Parquet write {steps['Parquet write (nested, to memory)']}",
        f"inflate {steps['gzip inflate: ISA-L (isal)']} (ISA-L)",
        f"row checks {steps['row checks (token route)']}",
        f"({small[3]} and {small[10]}, targets",
        f"is {small[7].removesuffix(' MiB')}-{mid[7]} across the job sizes",
        f"in {x(desc[6])} (descending) and {x(asc[6])} (ascending)",
        f"({x(decode[3])}; {x(decode[5])} with the rows kept)",
    ]
    flat = " ".join(prose.split())
    for text in quoted:
        assert text in flat, text
