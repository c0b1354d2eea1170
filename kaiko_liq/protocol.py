"""The endpoint's protocol as pure functions: URLs, parameters, bodies, answer classes.

Nothing here does I/O, so every rule is tested on plain bytes (the seed's own example
among them). :func:`decipher` reads a whole answer (status, headers, raw body) and says
what it is, as gidgethub's ``sansio.decipher_response`` does; the transport only sends,
sleeps and counts. Assumptions about Kaiko that the docs only imply live here, each
marked **Assumption**:

* ``next_url`` is followed exactly as given: Kaiko, "Only the first call should include
  page_size, all subsequent calls should only use continuation_token".
* **Assumption**: a range ends only when an answer carries neither ``next_url`` nor
  ``continuation_token`` (the docs: both "appear only when there is more"). A page with
  few rows or none says nothing about the end: a server may size pages by a span of
  time, and Kaiko's own scripts guard against empty pages that still have a ``next_url``.
* **Assumption**: a ``continuation_token`` without a ``next_url`` continues on the same
  endpoint with that token as the only parameter (the docs' rule above).
* **Assumption**: a ``next_url`` keeps the request's origin and path (same endpoint,
  same asset); anything else would send the key elsewhere or mix another asset's rows in.
* A 200 whose body says ``"result": "error"`` is an error (Kaiko's envelope docs).
"""

from __future__ import annotations

import importlib
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from ipaddress import ip_address
from types import ModuleType
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import msgspec
from yarl import URL

from .errors import (
    APIError,
    InvalidArgumentError,
    KaikoLiqError,
    MalformedBodyError,
    ResponseTooLargeError,
    UnexpectedResponseError,
    UnsafeURLError,
    api_error_for_status,
    redact,
    redact_url,
)
from .models import decode_envelope, decode_page
from .retry import parse_retry_after, should_retry_status


def _fastest_zlib() -> ModuleType:
    """ISA-L inflates about twice as fast as zlib (the ``speed`` extra installs it), and
    zlib-ng nearly so; the standard library's zlib is the fallback."""
    for name in ("isal.isal_zlib", "zlib_ng.zlib_ng"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return zlib


_zlib = _fastest_zlib()

Row = TypeVar("Row")

__all__ = [
    "ERROR_EXCERPT_CHARS",
    "REGIONS",
    "InflateStopped",
    "Page",
    "PageSource",
    "Retry",
    "check_base_url",
    "check_next_url",
    "decipher",
    "error_message",
    "inflate",
    "origin",
    "region_base_url",
    "server_time",
]

REGIONS = ("us", "eu")
#: How much of a server's error text goes into a message (after redaction).
ERROR_EXCERPT_CHARS = 200
_LOOPBACK_NAMES = frozenset({"localhost"})
_BLANK = re.compile(r"[\s\x00-\x1f\x7f]")
# Inflate in steps, so that memory grows only as far as the cap before a bomb is stopped.
_INFLATE_STEP = 1 << 20
# Compressed input per step: small at a member's start (zlib copies what a member leaves
# over), growing to the last size within it.
_FEED_FIRST = 512
_FEED_LAST = 64 * 1024
# The codecs' errors: zlib's, and ISA-L's or zlib-ng's own when one of those is used.
_INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _zlib.error)


class InflateStopped(Exception):
    """Inflating was stopped because its caller no longer waits for it."""


@dataclass(frozen=True, slots=True)
class Page(Generic[Row]):
    """One decoded page: its rows, and the cursor to the next one (both ``None`` at the
    end). An empty page with a cursor is not the end."""

    rows: list[Row]
    next_url: str | None
    continuation_token: str | None
    #: The server's clock when it answered (:func:`server_time`), if it said.
    server_time: datetime | None = None

    @property
    def is_last(self) -> bool:
        return self.next_url is None and self.continuation_token is None


class PageSource(Protocol):
    """What a page chain needs of a transport: one page, decoded by the route's decoder,
    retried as the transport's policy says."""

    base_url: str

    async def get_page(
        self,
        url: str,
        params: dict[str, str] | None,
        decode: Callable[[bytes], Any],
    ) -> Page[Any]: ...


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure: worth another attempt after a backoff, or after
    ``retry_after`` seconds when the server said so. ``error`` is raised if retries run
    out; ``rate_limited`` marks a 429, which slows the whole client down."""

    error: KaikoLiqError
    retry_after: float | None = None
    rate_limited: bool = False


def region_base_url(region: str) -> str:
    """Kaiko's regional host; https only."""
    return f"https://{region}.market-api.kaiko.io"


def origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` with the default port filled in, for same-origin checks.

    Parsed with yarl, the parser that sends the request, so the check and the request can
    never read a URL differently. Raises ``ValueError`` on a URL yarl refuses.
    """
    parts = URL(url, encoded=True)
    return (parts.scheme or "").lower(), (parts.host or "").lower(), parts.port or 0


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(
    base_url: str, *, allow_insecure_http: bool = False, allow_credentials: bool = False
) -> str:
    """Validate a base URL whole (scheme, host, port, brackets); plain http only to
    loopback (the emulator) unless allowed; no ``user:password@`` unless allowed.

    Returns it without a trailing slash. The API key travels in a header, so http to any
    other host would send it in clear text. Credentials in a URL end up in every message
    that names it (they are cut out of messages, but a proxy is better given them by
    header), so they take ``allow_credentials=True``.
    """
    if not isinstance(base_url, str):
        raise InvalidArgumentError(
            f"base_url must be a string like 'https://us.market-api.kaiko.io', got "
            f"{type(base_url).__name__}"
        )
    shown = redact_url(base_url)
    try:
        parts = urlsplit(base_url)
        port = parts.port  # range-checked by urllib
        URL(base_url)  # and parsed by yarl, which sends the request
    except ValueError as exc:
        raise InvalidArgumentError(
            f"base_url {shown!r} is not a valid URL ({exc}); write it like "
            "'https://us.market-api.kaiko.io' or 'http://127.0.0.1:8080' (IPv6: "
            "'http://[::1]:8080')"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or _BLANK.search(base_url):
        raise InvalidArgumentError(
            f"base_url {shown!r} is not an http(s) URL like 'https://us.market-api.kaiko.io'"
        )
    if port == 0:
        raise InvalidArgumentError(f"base_url {shown!r} has port 0; a port is 1 to 65535")
    if parts.query or parts.fragment:
        raise InvalidArgumentError(f"base_url {shown!r} must not have a query or fragment")
    if (parts.username is not None or parts.password is not None) and not allow_credentials:
        raise InvalidArgumentError(
            f"base_url {shown!r} carries credentials (user:password@), which would travel "
            "in every message that names the URL; drop them (a proxy's belong in its own "
            "configuration), or pass allow_credentials=True to send them anyway"
        )
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise InvalidArgumentError(
            f"base_url {shown!r} is plain http to a non-loopback host, which would send "
            "the API key in clear text; use https:// (or allow_insecure_http=True)"
        )
    return base_url.rstrip("/")


def check_next_url(next_url: str, request_url: str) -> str:
    """Refuse a ``next_url`` that leaves the request's origin (the key would go there)
    or its path (another endpoint or asset, whose rows would pass for this one's)."""
    try:
        target = URL(next_url, encoded=True)
        scheme, host, port = origin(next_url)
    except ValueError as exc:
        raise UnsafeURLError(
            f"next_url is not a valid URL ({exc}); not followed", request_url
        ) from exc
    expected = URL(request_url, encoded=True)
    if (scheme, host, port) != origin(request_url):
        raise UnsafeURLError(
            f"next_url points to {scheme}://{host}:{port}, not the configured "
            f"{expected.origin()}; not followed, so the API key was not sent there",
            request_url,
        )
    if target.path != expected.path:
        raise UnsafeURLError(
            f"next_url leads to the path {redact_url(target.raw_path)}, not the requested "
            f"{expected.raw_path}; not followed, and nothing from it was kept",
            request_url,
        )
    return next_url


def error_message(body: bytes, secrets: Iterable[str] = ()) -> str:
    """Kaiko's ``message`` from an error body, or an excerpt of whatever came, redacted
    first and only then shortened to :data:`ERROR_EXCERPT_CHARS`."""
    try:
        envelope = decode_envelope(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body.decode("utf-8", "replace").strip() or "(empty body)"
    else:
        text = envelope.message or "(no message)"
    return _shorten(redact(text, secrets))


def _shorten(text: str) -> str:
    if len(text) <= ERROR_EXCERPT_CHARS:
        return text
    return text[:ERROR_EXCERPT_CHARS] + "…"


def _wbits(encoding: str, raw: bytes) -> int | None:
    """zlib's ``wbits`` for a Content-Encoding; ``None`` for a body sent as is."""
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return 31
    # "deflate" is a zlib stream (RFC 9110 §8.4.1.2), but some servers send raw deflate;
    # a zlib header is a multiple of 31 with method 8, which raw deflate rarely is.
    if len(raw) >= 2 and raw[0] & 0x0F == 8 and (raw[0] << 8 | raw[1]) % 31 == 0:
        return 15
    return -15


def inflate(
    raw: bytes,
    content_encoding: str | None,
    limit: int,
    url: str,
    *,
    stopped: Callable[[], bool] | None = None,
) -> bytes:
    """The body as sent before ``content_encoding`` (gzip, deflate or identity), at most
    ``limit`` bytes of it. Pure and GIL-free where it counts: run it in a worker thread.
    Linear in the body's size however many gzip members it has; ``stopped`` is asked
    between steps, and :class:`InflateStopped` raised once it says yes (a caller that was
    cancelled need not wait for the thread).

    Raises :class:`ResponseTooLargeError` past ``limit`` (memory never grows much beyond
    it), :class:`MalformedBodyError` for a stream cut short or corrupt (retried: usually
    a dropped connection), :class:`UnexpectedResponseError` for an encoding never asked
    for (we send ``Accept-Encoding: gzip``).
    """
    encoding = (content_encoding or "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise UnexpectedResponseError(
            f"the body is {encoding!r}-encoded, which was not asked for (only gzip)", url
        )
    wbits = _wbits(encoding, raw)
    if wbits is None:
        if len(raw) > limit:
            raise _too_large(limit, url)
        return raw
    # A list of chunks, not a growing bytearray: reallocating one may copy it, and then
    # memory would peak at twice the cap.
    out: list[bytes] = []
    size = 0
    view = memoryview(raw)
    pos = 0
    try:
        while True:  # one pass per gzip member: concatenated members are one body
            decoder = _zlib.decompressobj(wbits)
            # Input goes in small slices that grow within a member: zlib copies what a
            # member leaves over, so whole-body feeds would make many tiny members
            # quadratic; this way each member costs at most its size plus one slice.
            feed = _FEED_FIRST
            while not decoder.eof:
                if stopped is not None and stopped():
                    raise InflateStopped
                piece = view[pos : pos + feed]
                # An empty piece still drains what zlib holds back past _INFLATE_STEP.
                chunk = decoder.decompress(piece, _INFLATE_STEP)
                if not piece and not chunk and not decoder.eof:
                    raise MalformedBodyError(
                        f"the {encoding} body ends before its stream does ({len(raw)} "
                        "bytes received); cut short?",
                        url,
                    )
                left = len(decoder.unconsumed_tail) + len(decoder.unused_data)
                pos += len(piece) - left
                feed = min(feed * 2, _FEED_LAST)
                if chunk:
                    out.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        # Freed now: the error's traceback keeps this frame, and its locals.
                        out.clear()
                        raise _too_large(limit, url)
            if pos >= len(raw):
                return out[0] if len(out) == 1 else b"".join(out)
    except _INFLATE_ERRORS as exc:
        raise MalformedBodyError(f"the {encoding} body is corrupt: {exc}", url) from exc


def _too_large(limit: int, url: str) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"the answer is larger than max_response_bytes ({limit:,} bytes); stopped reading, "
        "nothing of it was kept (a 1000-row page is about 1.4 MB)",
        url,
    )


def decipher(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    url: str,
    *,
    decode: Callable[[bytes], Any] = decode_page,
    max_bytes: int,
    secrets: Iterable[str] = (),
    stopped: Callable[[], bool] | None = None,
) -> Page[Any] | Retry:
    """What an answer means: a :class:`Page`, a :class:`Retry`, or a final error raised.

    ``body`` is the body as received (still gzip-encoded if it was sent so), read at
    most ``max_bytes`` of it; ``secrets`` are cut out of anything quoted from it;
    ``stopped`` is passed to :func:`inflate`.
    """
    if 300 <= status < 400:
        location = redact_url(headers.get("Location", "(no Location)"), secrets)
        raise UnexpectedResponseError(
            f"HTTP {status} redirect to {location}; not followed, so the API key stays "
            "with the configured host",
            url,
        )
    try:
        text = inflate(body, headers.get("Content-Encoding"), max_bytes, url, stopped=stopped)
    except MalformedBodyError as exc:
        if status != 200:
            text = f"(an error page that could not be decoded: {exc})".encode()
        else:
            return Retry(exc)
    if should_retry_status(status):
        error = api_error_for_status(status, error_message(text, secrets), url)
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return Retry(error, retry_after, rate_limited=status == 429)
    if status != 200:
        raise api_error_for_status(status, error_message(text, secrets), url)
    try:
        page = decode(text)
    except msgspec.ValidationError as exc:
        raise UnexpectedResponseError(
            _shorten(redact(f"the body does not match the documented fields: {exc}", secrets)),
            url,
        ) from exc
    except msgspec.DecodeError as exc:
        return Retry(MalformedBodyError(f"the body is not JSON ({len(text)} bytes): {exc}", url))
    if page.result == "error":
        raise APIError(status, _shorten(redact(page.message or "(no message)", secrets)), url)
    if page.data is None:
        raise UnexpectedResponseError("the body has no 'data' array", url)
    clock = server_time(page.answer_time, page.answer_timestamp, headers.get("Date"))
    return Page(page.data, page.next_url or None, page.continuation_token or None, clock)


def server_time(
    answer_time: str | None, answer_timestamp: int | None, date_header: str | None
) -> datetime | None:
    """The server's clock when it answered: the earliest of the envelope's ``answer_time``
    and ``answer_timestamp`` (ms) and the HTTP ``Date`` header, whichever it sent and
    reads; ``None`` when none does. The earliest, because settlement is judged on the
    clock that is behind."""
    seen: list[datetime] = []
    if answer_time:
        try:
            parsed = datetime.fromisoformat(answer_time)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            seen.append(parsed.astimezone(UTC))
    if isinstance(answer_timestamp, int) and 0 < answer_timestamp < 10**14:
        seen.append(datetime.fromtimestamp(answer_timestamp / 1000, UTC))
    if date_header:
        try:
            date = parsedate_to_datetime(date_header)
        except (TypeError, ValueError, IndexError):
            date = None  # an unreadable Date says nothing
        if date is not None:
            seen.append((date if date.tzinfo else date.replace(tzinfo=UTC)).astimezone(UTC))
    return min(seen, default=None)
