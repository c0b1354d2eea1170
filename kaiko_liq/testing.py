"""A switch for tests: retries and rate-limit holds without real sleeps.

Tests of retries against a mock server (aioresponses) or the emulator would otherwise
wait out every backoff and every 429's pause, about a second each. With the switch on,
the client still makes every decision it would make (attempts, deadlines, the adaptive
rate going down and up) and counts every retry; it just does not wait for them. Like
stamina's ``set_testing``::

    from kaiko_liq.testing import no_sleeps

    with no_sleeps():
        rows = await client.fetch("eth", "2025-02-01", "2025-02-02")

or ``set_testing(True)`` in a fixture. The limiter's own pacing (requests per second) is
left alone: a test that sets a rate gets that rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["no_sleeps", "set_testing", "sleeps_removed"]

_removed = False


def set_testing(on: bool) -> None:
    """Remove (``True``) or restore (``False``) the client's retry and hold sleeps."""
    global _removed
    _removed = bool(on)


def sleeps_removed() -> bool:
    """Whether :func:`set_testing` (or :func:`no_sleeps`) removed the sleeps."""
    return _removed


@contextmanager
def no_sleeps() -> Iterator[None]:
    """Remove the sleeps inside the ``with`` block, then restore what was there before."""
    before = _removed
    set_testing(True)
    try:
        yield
    finally:
        set_testing(before)
