"""kaiko-liq: Kaiko token-level liquidation volumes, fetched fast, completely and safely."""

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

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ExchangeVolume",
    "IncompleteFetchError",
    "InconsistentDataError",
    "InvalidArgumentError",
    "KaikoLiqError",
    "LiquidationRow",
    "NotFoundError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "TransportError",
    "UnexpectedResponseError",
    "UnsafeURLError",
]
