"""kaiko-liq: Kaiko token-level liquidation volumes, fetched fast, completely and safely."""

from .client import DEFAULT_MAX_CONCURRENCY, DEFAULT_RATE_LIMIT, LiquidationClient, RowStream
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    IncompleteFetchError,
    InconsistentDataError,
    InvalidArgumentError,
    KaikoLiqError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
    UnsafeURLError,
)
from .models import ExchangeVolume, LiquidationRow
from .plan import SubRange
from .retry import RetryPolicy
from .transport import ClientStats, Timeouts

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_RATE_LIMIT",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ClientStats",
    "ExchangeVolume",
    "IncompleteFetchError",
    "InconsistentDataError",
    "InvalidArgumentError",
    "KaikoLiqError",
    "LiquidationClient",
    "LiquidationRow",
    "NotFoundError",
    "RateLimitedError",
    "RequestTimeoutError",
    "RetryPolicy",
    "RowStream",
    "ServerError",
    "SubRange",
    "Timeouts",
    "TransportError",
    "UnexpectedResponseError",
    "UnsafeURLError",
]
