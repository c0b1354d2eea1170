"""The exception tree. Every error kaiko-liq raises is a :class:`KaikoLiqError`::

    KaikoLiqError
    ├── InvalidArgumentError (also ValueError)     bad input, raised before any request
    ├── ClientClosedError (also RuntimeError)      the client was used after close
    ├── APIError                                   Kaiko answered with an error
    │   ├── BadRequestError          400
    │   ├── AuthenticationError      401, 403
    │   ├── NotFoundError            404
    │   ├── RateLimitedError         429 (after retries ran out)
    │   └── ServerError              5xx (after retries ran out)
    ├── TransportError                             no usable answer came back
    │   └── RequestTimeoutError                    connect or read timed out
    ├── UnexpectedResponseError                    an answer we cannot trust
    │   ├── MalformedBodyError                     not JSON (cut short?); retried
    │   ├── UnsafeURLError                         next_url leaves the configured host
    │   └── InconsistentDataError                  duplicate/out-of-order rows, token loops
    ├── IncompleteFetchError                       some sub-ranges failed; says which
    ├── backfill.BackfillIncompleteError           some shards failed; the rest is on disk
    └── export.MissingDependencyError (also ImportError)   an optional extra is missing

``APIError`` carries ``status``, Kaiko's ``message`` and the request ``url``. URLs in
messages never carry the API key: it travels in the ``X-Api-Key`` header only, and
:func:`redact_url` strips a key someone put in a query string anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "FailedRange",
    "IncompleteFetchError",
    "InconsistentDataError",
    "InvalidArgumentError",
    "KaikoLiqError",
    "MalformedBodyError",
    "NotFoundError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "TransportError",
    "UnexpectedResponseError",
    "UnsafeURLError",
    "api_error_for_status",
    "is_fatal",
    "redact_url",
]

_SECRET_PARAMS = frozenset({"api_key", "apikey", "x-api-key", "key", "token"})


def redact_url(url: str) -> str:
    """The URL with any key-like query parameter replaced by ``***``.

    Long continuation tokens are shortened too: they are opaque and only make messages
    unreadable.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if not parts.query:
        return url
    pairs = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name.lower() in _SECRET_PARAMS:
            value = "***"
        elif name == "continuation_token" and len(value) > 16:
            value = value[:12] + "…"
        pairs.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(pairs, safe="…*")))


class KaikoLiqError(Exception):
    """Root of every error raised by kaiko-liq."""


class InvalidArgumentError(KaikoLiqError, ValueError):
    """An argument is wrong; the message says what is allowed. Nothing was sent."""


class ClientClosedError(KaikoLiqError, RuntimeError):
    """The client was used outside its ``async with`` block or after ``aclose()``."""

    CLIENT_CLOSED = "this LiquidationClient is closed; create a new one (use 'async with')"


class APIError(KaikoLiqError):
    """Kaiko answered with an error status (or a 200 whose body says ``"result": "error"``)."""

    def __init__(self, status: int, message: str, url: str) -> None:
        self.status = status
        self.message = message
        self.url = redact_url(url)
        super().__init__(f"HTTP {status} from {self.url}: {message}{self._hint()}")

    def _hint(self) -> str:
        return ""


class BadRequestError(APIError):
    def _hint(self) -> str:
        return " (the server rejected a parameter; check the message for which)"


class AuthenticationError(APIError):
    def _hint(self) -> str:
        return " (check KAIKO_API_KEY: it is missing, wrong, or not entitled to this data)"


class NotFoundError(APIError):
    def _hint(self) -> str:
        return " (unknown asset or endpoint; check the asset code, e.g. 'eth')"


class RateLimitedError(APIError):
    def _hint(self) -> str:
        return " (retries ran out; lower rate_limit or max_concurrency)"


class ServerError(APIError):
    def _hint(self) -> str:
        return " (retries ran out; Kaiko may be in maintenance, try again later)"


def api_error_for_status(status: int, message: str, url: str) -> APIError:
    """The most specific :class:`APIError` for an HTTP status."""
    cls: type[APIError]
    if status == 400:
        cls = BadRequestError
    elif status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFoundError
    elif status == 429:
        cls = RateLimitedError
    elif status >= 500:
        cls = ServerError
    else:
        cls = APIError
    return cls(status, message, url)


class TransportError(KaikoLiqError):
    """The connection failed, dropped, or the body was cut short (after retries ran out)."""

    def __init__(self, message: str, url: str) -> None:
        self.url = redact_url(url)
        super().__init__(f"{message} ({self.url})")


class RequestTimeoutError(TransportError):
    """Connecting or reading took longer than the configured timeout."""


class UnexpectedResponseError(KaikoLiqError):
    """The answer was not what the API documents: bad JSON, wrong shape, broken paging."""

    def __init__(self, message: str, url: str) -> None:
        self.url = redact_url(url)
        super().__init__(f"{message} ({self.url})")


class MalformedBodyError(UnexpectedResponseError):
    """A 200 whose body is not JSON at all, usually a body cut short; it is retried."""


class UnsafeURLError(UnexpectedResponseError):
    """A ``next_url`` points to another host or scheme; it was not followed with the key."""


class InconsistentDataError(UnexpectedResponseError):
    """Rows repeat, go out of order, or fall outside their window; or a token repeats."""


@dataclass(frozen=True, slots=True)
class FailedRange:
    """One sub-range that could not be fetched, and why."""

    start: datetime
    end: datetime
    error: BaseException

    def __str__(self) -> str:
        return (
            f"[{self.start.isoformat()}, {self.end.isoformat()}): "
            f"{type(self.error).__name__}: {self.error}"
        )


class IncompleteFetchError(KaikoLiqError):
    """Some sub-ranges of a fetch failed. Nothing is returned silently short.

    ``failed`` lists each failed sub-range with its error; ``completed`` lists the
    ``(start, end)`` sub-ranges fetched in full; ``pending`` those never fetched because
    a stream stopped at an earlier failure.
    """

    def __init__(
        self,
        asset: str,
        failed: Sequence[FailedRange],
        completed: Sequence[tuple[datetime, datetime]],
        *,
        pending: Sequence[tuple[datetime, datetime]] = (),
    ) -> None:
        self.asset = asset
        self.failed = list(failed)
        self.completed = list(completed)
        self.pending = list(pending)
        total = len(self.failed) + len(self.completed) + len(self.pending)
        shown = "; ".join(str(f) for f in self.failed[:5])
        more = f"; and {len(self.failed) - 5} more" if len(self.failed) > 5 else ""
        not_fetched = f", {len(self.pending)} not fetched" if self.pending else ""
        super().__init__(
            f"{asset}: {len(self.failed)} of {total} sub-ranges failed, "
            f"{len(self.completed)} completed{not_fetched}. Missing: {shown}{more}"
        )


def is_fatal(error: BaseException) -> bool:
    """Whether no other sub-range can escape this error, so a fetch should stop at once.

    Fatal: a bad argument, key, asset or parameter (400/401/403/404 and other 4xx), and an
    answer we cannot trust (wrong shape, rows out of order, a token loop, a ``next_url``
    elsewhere). Not fatal: transient failures that outlived their retries (429, 5xx,
    transport, a body cut short); the other sub-ranges may still succeed.
    """
    if isinstance(error, InvalidArgumentError):
        return True
    if isinstance(error, UnexpectedResponseError):
        return not isinstance(error, MalformedBodyError)
    return (
        isinstance(error, APIError) and not isinstance(error, ServerError) and error.status != 429
    )
