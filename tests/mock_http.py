"""aioresponses, made to work with aiohttp 3.14.

aiohttp 3.14 (a security release) added a required ``stream_writer`` argument to
``ClientResponse``; aioresponses 0.7.x does not pass it (pnuckowski/aioresponses#289).
Until it does, its responses are built with a class that supplies a finished writer.
Import ``aioresponses`` from here, not from the package.
"""

from __future__ import annotations

import inspect
from typing import Any

from aiohttp import ClientResponse
from aioresponses import CallbackResult, aioresponses
from aioresponses import core as _core

__all__ = ["CallbackResult", "aioresponses"]


class _FinishedWriter:
    """The part of ``AbstractStreamWriter`` a response reads: nothing left to send."""

    output_size = 0


class _CompatResponse(ClientResponse):
    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _FinishedWriter())
        super().__init__(method, url, **kwargs)


if "stream_writer" in inspect.signature(ClientResponse.__init__).parameters:
    _core.ClientResponse = _CompatResponse  # type: ignore[misc]
