"""kaiko-liq: Kaiko token-level liquidation volumes, fetched fast, completely and safely."""

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

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_RATE_LIMIT",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ClientStats",
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
    "fetch",
    "fetch_frame",
    "resolve_api_key",
]
