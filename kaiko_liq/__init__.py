"""kaiko-liq: Kaiko token-level liquidation volumes, fetched fast, completely and safely."""

import importlib.metadata as _metadata

from .client import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_RATE_LIMIT,
    LiquidationClient,
    RowStream,
)
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
from .keys import resolve_api_key
from .live import Follow
from .models import ExchangeVolume, LiquidationRow
from .plan import SubRange
from .retry import RetryPolicy
from .sync import fetch, fetch_frame
from .transport import DEFAULT_MAX_RESPONSE_BYTES, ClientStats, Timeouts

try:
    __version__ = _metadata.version("kaiko-liq")
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

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
    "InvalidArgumentError",
    "KaikoLiqError",
    "LiquidationClient",
    "LiquidationRow",
    "NotFoundError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "RowStream",
    "ServerError",
    "SubRange",
    "Timeouts",
    "TransportError",
    "UnexpectedResponseError",
    "UnsafeURLError",
    "__version__",
    "fetch",
    "fetch_frame",
    "resolve_api_key",
]
