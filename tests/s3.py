"""A real S3 server for the tests: moto in server mode on a free loopback port, started once
per session (skipped, with the reason, only where moto cannot start), a fresh bucket per test,
and a fault-injecting proxy in front of it.

``s3`` gives a :class:`S3Spot`: a new bucket on the session's moto server and the
``storage_options`` that reach it (no process environment is touched). ``faulty_s3`` is the
same behind :class:`FaultyProxy`, which drops uploads mid-body: every PUT it is told to, and
one in ten of the rest, chosen by a seeded generator so a run is repeatable.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

#: Credentials moto accepts (it checks none unless told to); fake, and long enough that
#: kaiko_liq.errors.redact would hide them.
ACCESS_KEY = "AKIAKAIKOLIQTESTKEY1"
SECRET_KEY = "kaikoLiqTestSecretKey/doNotLogMe0123456789"


@dataclass(frozen=True)
class S3Spot:
    endpoint: str
    bucket: str

    @property
    def options(self) -> dict[str, Any]:
        """``storage_options`` for this server: one attempt per request, so a fault shows."""
        return {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            "region": "us-east-1",
            "max_attempts": 1,
        }

    def url(self, prefix: str = "data") -> str:
        return f"s3://{self.bucket}/{prefix}"


@functools.cache
def client(endpoint: str) -> Any:
    """A plain botocore client on ``endpoint``, to look behind the code under test (one per
    endpoint: a client costs a quarter of a second to build)."""
    import botocore.session

    return botocore.session.get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        pytest.skip(f"moto[server] is not installed ({exc}): pip install 'kaiko-liq[dev]'")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
    except OSError as exc:
        pytest.skip(f"moto's server cannot start on loopback: {exc}")
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _new_bucket(endpoint: str) -> str:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    client(endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def s3(moto_endpoint: str) -> S3Spot:
    return S3Spot(moto_endpoint, _new_bucket(moto_endpoint))


class FaultyProxy:
    """An HTTP proxy on loopback that cuts uploads short.

    Each request goes upstream on its own connection (``Connection: close``). A PUT chosen to
    fail has half its body sent upstream, then both connections are reset: the server sees an
    upload cut mid-way, the client a dropped connection. Chosen: each PUT while
    :attr:`drop_next` is set (it is then cleared), and one PUT in :attr:`one_in` otherwise
    (``0``: none), by a ``random.Random(seed)``.
    """

    def __init__(self, upstream: str, *, seed: int = 0, one_in: int = 10) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self._upstream = (host, int(port))
        self._rng = random.Random(seed)
        self.one_in = one_in
        self._guard = threading.Lock()
        self.drop_next = False
        self.puts = 0
        self.dropped = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _drop(self, method: str) -> bool:
        if method != "PUT":
            return False
        with self._guard:
            self.puts += 1
            drop = self.drop_next or (self.one_in > 0 and self._rng.randrange(self.one_in) == 0)
            self.drop_next = False
            self.dropped += drop
            return drop

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            # The proxy answers "Expect: 100-continue" itself: it wants the body before it
            # decides, and the upstream must not send a second "100 Continue".
            expect = any(h.lower().startswith(b"expect:") for h in lines[1:])
            if expect:
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            headers = [
                h for h in lines[1:] if not h.lower().startswith((b"connection:", b"expect:"))
            ]
            length = next(
                (
                    int(h.split(b":", 1)[1])
                    for h in headers
                    if h.lower().startswith(b"content-length:")
                ),
                0,
            )
            assert not any(h.lower().startswith(b"transfer-encoding:") for h in headers)
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            request = b"\r\n".join([lines[0], *headers, b"Connection: close"]) + b"\r\n\r\n"
            with socket.create_connection(self._upstream) as up:
                if self._drop(lines[0].split(b" ", 1)[0].decode()):
                    up.sendall(request + body[: len(body) // 2])
                    for s in (up, conn):  # a reset, not a polite close
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                up.sendall(request + body)
                while chunk := up.recv(65536):
                    conn.sendall(chunk)


@pytest.fixture
def faulty_s3(s3: S3Spot) -> Iterator[tuple[S3Spot, FaultyProxy]]:
    proxy = FaultyProxy(s3.endpoint, seed=19)
    yield S3Spot(proxy.endpoint, s3.bucket), proxy
    proxy.close()


@pytest.fixture(scope="session")
def moto_auth_endpoint() -> Iterator[str]:
    """A second moto server, in a subprocess, that checks credentials
    (``INITIAL_NO_AUTH_ACTION_COUNT=0``: moto reads it once per process, so the session's
    server cannot be switched). Only credentials it issued are accepted: none here."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"moto[server] is not installed ({exc})")
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip("a moto server with authentication could not start")
                time.sleep(0.05)  # polling a subprocess's port: no fake clock applies
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
