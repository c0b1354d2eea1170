"""The Kaiko emulator in its own process, and the CPU it spends.

The emulator runs as ``python -m kaiko_liq.emulator`` in a child process: sharing the
benchmark's event loop (or even its GIL) would charge the server's work to the client.
Its CPU time is read with psutil around each measured run, so the report can say how
busy the server side was.

Usage::

    with Emulator(latency=0.1, jitter=0.02, rate_limit=100) as emu:
        cpu0 = emu.cpu_seconds()
        ...  # talk to emu.base_url
        busy = emu.cpu_seconds() - cpu0
"""

from __future__ import annotations

import queue
import subprocess
import sys
import tempfile
import threading
from types import TracebackType
from typing import IO, Self

import psutil

__all__ = ["Emulator", "EmulatorError"]

#: How long the emulator may take to print its URL (imports, data generation, bind).
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0


class EmulatorError(RuntimeError):
    """The emulator did not start, or died; the message carries its stderr tail."""


class Emulator:
    """``python -m kaiko_liq.emulator`` as a context manager; ``base_url`` once entered."""

    #: The command before the options (a probe may point it at a patched emulator).
    command: tuple[str, ...] = (sys.executable, "-m", "kaiko_liq.emulator")

    def __init__(
        self,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        rate_limit: float | None = None,
        retry_after: bool = True,
        fault_rate: float = 0.0,
        page_cap: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.args = [
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--latency",
            str(latency),
            "--jitter",
            str(jitter),
        ]
        if rate_limit is not None:
            self.args += ["--rate-limit", str(rate_limit)]
        if not retry_after:
            self.args.append("--no-retry-after")
        if fault_rate:
            self.args += ["--fault-rate", str(fault_rate)]
        if page_cap is not None:
            self.args += ["--page-cap", str(page_cap)]
        if seed is not None:
            self.args += ["--seed", str(seed)]
        self._proc: subprocess.Popen[str] | None = None
        self._ps: psutil.Process | None = None
        self._stderr: IO[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._drainer: threading.Thread | None = None
        self.base_url = ""

    def __enter__(self) -> Self:
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8")
        self._proc = subprocess.Popen(
            [*self.command, *self.args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        # A thread drains stdout for the whole run: a server that logs to a full pipe
        # would block, and that stall would show up as client latency.
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        try:
            first = self._lines.get(timeout=_START_TIMEOUT)
        except queue.Empty:
            first = None
        if not first or not first.startswith("http"):
            self._stop(timeout=2.0)
            tail = self._stderr_tail()
            self._close_stderr()
            raise EmulatorError(
                f"emulator {' '.join(self.args)} printed {first!r} instead of its URL; "
                f"stderr: {tail}"
            )
        self.base_url = first.strip().rstrip("/")
        self._ps = psutil.Process(self._proc.pid)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()
        self._close_stderr()

    def _drain(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _stderr_tail(self, limit: int = 2000) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()[-limit:]

    def check_alive(self) -> None:
        """Raise :class:`EmulatorError` if the emulator exited (it never should on its own)."""
        if self._proc is not None and self._proc.poll() is not None:
            raise EmulatorError(
                f"emulator exited with {self._proc.returncode}; stderr: {self._stderr_tail()}"
            )

    def cpu_seconds(self) -> float:
        """User + system CPU the emulator (and any children) has used so far."""
        if self._ps is None:
            return 0.0
        total = 0.0
        for proc in [self._ps, *self._ps.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def _stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # The drain thread sees EOF once the process is gone; then its pipe can close.
        if self._drainer is not None:
            self._drainer.join(timeout=timeout)
        if proc.stdout is not None:
            proc.stdout.close()

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
