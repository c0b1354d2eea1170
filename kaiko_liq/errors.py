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
    │   ├── RequestTimeoutError                    connect or read timed out
    │   └── ConnectError                           no connection at all (DNS, refused)
    ├── UnexpectedResponseError                    an answer we cannot trust
    │   ├── MalformedBodyError                     not JSON, or gzip cut short; retried
    │   ├── ResponseTooLargeError                  a body over max_response_bytes
    │   ├── UnsafeURLError                         next_url leaves the endpoint's URL
    │   └── InconsistentDataError                  rows that contradict themselves or
    │                                              each other, cursor loops
    ├── IncompleteFetchError                       some sub-ranges failed; says which
    │   └── FetchManyIncompleteError               ... of several assets (``errors``)
    ├── backfill.BackfillIncompleteError           some shards failed; the rest is on disk
    ├── fs.StorageError                            the storage refused (location, cause)
    │   ├── fs.StorageUnavailableError             no bucket, access denied, unreachable
    │   └── fs.StorageLockedError                  another writer holds the lock
    ├── store.NotStoredError (also LookupError)    a store lacks buckets asked of it
    └── optional.MissingDependencyError (also ImportError) an optional extra is missing

``APIError`` carries ``status``, Kaiko's ``message`` and the request ``url``. Messages
never carry the API key: it travels in the ``X-Api-Key`` header only, but a server or a
proxy may echo it back (in a ``next_url``'s path or query, in an error page), so every
message is passed through :func:`redact` *before* it is shortened, and every
:class:`KaikoLiqError` redacts its arguments again, with each key a
:class:`~kaiko_liq.transport.Transport` has registered (:func:`register_secret`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, quote_plus

__all__ = [
    "MIN_SECRET_CHARS",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConnectError",
    "FailedRange",
    "FetchManyIncompleteError",
    "IncompleteFetchError",
    "InconsistentDataError",
    "InvalidArgumentError",
    "KaikoLiqError",
    "MalformedBodyError",
    "NotFoundError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "ServerError",
    "TransportError",
    "UnexpectedResponseError",
    "UnsafeURLError",
    "api_error_for_status",
    "is_fatal",
    "redact",
    "redact_url",
    "register_secret",
]

#: Query (or form, or header) names whose value is a credential wherever they appear.
_SECRET_NAMES = (
    "api_key",
    "apikey",
    "api-key",
    "x-api-key",
    "x_api_key",
    "key",
    "token",
    "access_token",
    "auth",
    "authorization",
    "password",
    "secret",
    "sig",
    "signature",
)
#: Shorter "secrets" are left alone: cutting every "k" out of a message protects nothing
#: (Kaiko's keys are dozens of characters), and it would garble every message.
MIN_SECRET_CHARS = 6
# ``name=value`` (a query string) or ``name: value`` / ``"name": "value"`` (a header or
# JSON echoed in an error page). The name must not be the tail of a longer word, so
# ``continuation_token`` is not taken for ``token``.
_SECRET_PARAM_RE = re.compile(
    r"(?<![A-Za-z0-9_.])(" + "|".join(re.escape(n) for n in _SECRET_NAMES) + r")"
    # After ``:`` a value shorter than a key is prose ("no API key: pass"), not a secret.
    r"(\"?\s*=\s*\"?|\"?\s*:\s*\"?(?=[^\s&#\"',;<>]{" + str(MIN_SECRET_CHARS) + r",}))"
    r"([^\s&#\"',;<>]+)",
    re.IGNORECASE,
)
# A URL's ``user:password@``: never shown, wherever the URL appears.
_USERINFO_RE = re.compile(r"(?<=://)[^/\s@?#\"'<>]*@")
# Continuation tokens are opaque and long: shortened, they keep a message readable.
_TOKEN_RE = re.compile(r"(continuation_token\"?\s*[=:]\s*\"?)([^\s&#\"',;<>]{17,})")
_TOKEN_KEPT = 12
#: Keys in use in this process (see :func:`register_secret`).
_registered: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Have every :class:`KaikoLiqError` message redact ``secret`` from now on.

    Called by the transport with its API key: an error may be built far from the key
    (a boundary check, a backfill) from text a server sent, and must still not carry it.
    """
    if secret and len(secret) >= MIN_SECRET_CHARS:
        _registered.add(secret)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret (and each registered one) replaced by ``***``, wherever
    it appears (a URL's path or query, a server's error page), in every form a server
    may echo it (percent-encoded, JSON-escaped, base64); URLs' ``user:password@`` cut;
    values of key-like parameters (``api_key=``, ``sig=``, ``X-Api-Key:``, ...) hidden;
    long continuation tokens shortened. Call it before shortening a text: a cut through
    a key would leave half of it for this function to miss. Secrets shorter than
    :data:`MIN_SECRET_CHARS` are not searched for.
    """
    for secret in sorted({*secrets, *_registered}, key=len, reverse=True):
        if len(secret) < MIN_SECRET_CHARS:
            continue
        for form in _forms(secret):
            # Any case: a path segment may come back lower-cased (an asset is).
            text = re.sub(re.escape(form), "***", text, flags=re.IGNORECASE)
    text = _USERINFO_RE.sub("", text)
    text = _SECRET_PARAM_RE.sub(lambda m: m.group(1) + m.group(2) + "***", text)
    return _TOKEN_RE.sub(lambda m: m.group(1) + m.group(2)[:_TOKEN_KEPT] + "…", text)


def _forms(secret: str) -> set[str]:
    """Each way ``secret`` can come back: as sent, percent-encoded, JSON-escaped (``/`` as
    ``\\/`` too), and base64-encoded (standard or URL-safe, padded or not)."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
    forms |= {escaped, escaped.replace("/", "\\/"), secret.replace("/", "\\/")}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(secret.encode()).decode("ascii")
        forms |= {encoded, encoded.rstrip("=")}
    return forms


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    """A URL fit for a message: :func:`redact` over its path and query alike."""
    return redact(url, secrets)


def _redacted(args: tuple[object, ...]) -> tuple[object, ...]:
    return tuple(redact(a) if isinstance(a, str) else a for a in args)


class KaikoLiqError(Exception):
    """Root of every error raised by kaiko-liq. Its message never carries a registered
    key (see :func:`register_secret`), whoever built it."""

    def __init__(self, *args: object) -> None:
        super().__init__(*_redacted(args))


class InvalidArgumentError(KaikoLiqError, ValueError):
    """An argument is wrong; the message says what is allowed. Nothing was sent."""


class ClientClosedError(KaikoLiqError, RuntimeError):
    """The client was used outside its ``async with`` block or after ``aclose()``."""

    CLIENT_CLOSED = "this LiquidationClient is closed; create a new one (use 'async with')"


class APIError(KaikoLiqError):
    """Kaiko answered with an error status (or a 200 whose body says ``"result": "error"``)."""

    def __init__(self, status: int, message: str, url: str) -> None:
        self.status = status
        self.message = redact(message)
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


class ConnectError(TransportError):
    """No connection could be made at all: the host name did not resolve, or nothing
    answered on its port. Retried briefly, then final: offline, or a wrong address, is
    not something the next shard can escape. ``host`` is the host as written."""

    def __init__(self, message: str, url: str, *, host: str) -> None:
        self.host = host
        super().__init__(message, url)


class UnexpectedResponseError(KaikoLiqError):
    """The answer was not what the API documents: bad JSON, wrong shape, broken paging."""

    def __init__(self, message: str, url: str) -> None:
        self.url = redact_url(url)
        super().__init__(f"{message} ({self.url})")


class MalformedBodyError(UnexpectedResponseError):
    """A 200 whose body is not JSON at all, usually a body cut short; it is retried."""


class ResponseTooLargeError(UnexpectedResponseError):
    """A body (compressed, or once inflated) larger than the transport's
    ``max_response_bytes``: reading stopped there, and nothing of it was kept."""


class UnsafeURLError(UnexpectedResponseError):
    """A ``next_url`` leaves the request's origin or endpoint path; it was not followed."""


class InconsistentDataError(UnexpectedResponseError):
    """Rows repeat, go out of order, fall outside their window or contradict themselves;
    or the cursor loops (a token repeats, empty pages never end)."""


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

    Fatal: a bad argument, key, asset or parameter (400/401/403/404 and other 4xx), a host
    that cannot be reached at all (after its brief retries), and an
    answer we cannot trust (wrong shape, rows out of order, a token loop, a ``next_url``
    elsewhere). Not fatal: transient failures that outlived their retries (429, 5xx,
    transport, a body cut short); the other sub-ranges may still succeed.
    """
    if isinstance(error, InvalidArgumentError | ConnectError):
        return True
    if isinstance(error, UnexpectedResponseError):
        return not isinstance(error, MalformedBodyError)
    return (
        isinstance(error, APIError) and not isinstance(error, ServerError) and error.status != 429
    )


class FetchManyIncompleteError(IncompleteFetchError):
    """Shards of several assets failed in one :meth:`LiquidationClient.fetch_many`.

    ``errors`` maps each such asset to its own :class:`IncompleteFetchError` (in the order
    the assets were given); ``failed`` and ``completed`` are theirs joined. Catching
    ``IncompleteFetchError`` catches this too.
    """

    def __init__(self, errors: dict[str, IncompleteFetchError]) -> None:
        self.errors = dict(errors)
        KaikoLiqError.__init__(
            self, f"{len(errors)} assets incomplete: " + " | ".join(map(str, errors.values()))
        )
        self.asset = ", ".join(errors)
        self.failed = [f for e in errors.values() for f in e.failed]
        self.completed = [c for e in errors.values() for c in e.completed]
        self.pending = [p for e in errors.values() for p in e.pending]
