"""kaiko-liq: Kaiko's liquidation data (token-level volumes and liquidation events),
fetched fast, completely and safely.

The names below are imported on first use (PEP 562), so ``import kaiko_liq`` (and the
command line, which imports only what its command runs) does not pay for aiohttp,
msgspec or :mod:`importlib.metadata` until something needs them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConnectError,
    FetchManyIncompleteError,
    IncompleteFetchError,
    InconsistentDataError,
    InvalidArgumentError,
    KaikoLiqError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    ResponseTooLargeError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
    UnsafeURLError,
)

if TYPE_CHECKING:
    from .backfill import backfill, backfill_events, read_backfill
    from .client import (
        DEFAULT_MAX_CONCURRENCY,
        DEFAULT_RATE_LIMIT,
        LiquidationClient,
        RowStream,
    )
    from .fs import StorageError
    from .keys import resolve_api_key
    from .live import Follow, Revision
    from .models import ExchangeVolume, LiquidationEvent, LiquidationRow
    from .plan import SubRange
    from .retry import RetryPolicy
    from .routes.events import Instrument
    from .routes.token import Token
    from .sync import fetch, fetch_events, fetch_frame
    from .transport import DEFAULT_MAX_RESPONSE_BYTES, ClientStats, Timeouts

    __version__: str

#: Where each lazily imported name lives.
_LAZY = {
    "DEFAULT_MAX_CONCURRENCY": "client",
    "DEFAULT_RATE_LIMIT": "client",
    "LiquidationClient": "client",
    "RowStream": "client",
    "resolve_api_key": "keys",
    "Follow": "live",
    "Revision": "live",
    "ExchangeVolume": "models",
    "LiquidationEvent": "models",
    "LiquidationRow": "models",
    "Instrument": "routes.events",
    "Token": "routes.token",
    "backfill": "backfill",
    "backfill_events": "backfill",
    "read_backfill": "backfill",
    "StorageError": "fs",
    "fetch_events": "sync",
    "SubRange": "plan",
    "RetryPolicy": "retry",
    "fetch": "sync",
    "fetch_frame": "sync",
    "DEFAULT_MAX_RESPONSE_BYTES": "transport",
    "ClientStats": "transport",
    "Timeouts": "transport",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # once: later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _version() -> str:
    import importlib.metadata as metadata  # ~50 ms: only for --version and __version__

    try:
        return metadata.version("kaiko-liq")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_RATE_LIMIT",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ClientStats",
    "ConnectError",
    "ExchangeVolume",
    "FetchManyIncompleteError",
    "Follow",
    "IncompleteFetchError",
    "InconsistentDataError",
    "Instrument",
    "InvalidArgumentError",
    "KaikoLiqError",
    "LiquidationClient",
    "LiquidationEvent",
    "LiquidationRow",
    "NotFoundError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "Revision",
    "RowStream",
    "ServerError",
    "StorageError",
    "SubRange",
    "Timeouts",
    "Token",
    "TransportError",
    "UnexpectedResponseError",
    "UnsafeURLError",
    "__version__",
    "backfill",
    "backfill_events",
    "fetch",
    "fetch_events",
    "fetch_frame",
    "read_backfill",
    "resolve_api_key",
]
