"""The endpoint's protocol as pure functions: URLs, parameters, pages, answer classes.

Nothing here does I/O, so every rule is tested on plain bytes (the seed's own example
among them). Assumptions about Kaiko that the docs only imply live here, each marked:

* ``next_url`` is followed exactly as given: Kaiko, "Only the first call should include
  page_size, all subsequent calls should only use continuation_token".
* A page with no ``next_url``, or an empty page, ends a stream (inferred from Kaiko's own
  scripts, which stop on either).
* A 200 whose body says ``"result": "error"`` is an error (Kaiko's envelope docs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_address
from urllib.parse import quote, urlsplit

import msgspec
from yarl import URL

from .errors import (
    APIError,
    InvalidArgumentError,
    MalformedBodyError,
    UnexpectedResponseError,
    UnsafeURLError,
    api_error_for_status,
)
from .models import LiquidationRow, decode_envelope, decode_page
from .query import Interval, format_time

__all__ = [
    "ENDPOINT_PATH",
    "REGIONS",
    "Page",
    "check_base_url",
    "check_next_url",
    "error_message",
    "first_page_params",
    "origin",
    "page_url",
    "parse_page",
    "region_base_url",
]

ENDPOINT_PATH = "/v2/data/liquidation.v1/token/{asset}"
REGIONS = ("us", "eu")
_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True, slots=True)
class Page:
    """One decoded page: its rows, and where the next one is (``None`` at the end)."""

    rows: list[LiquidationRow]
    next_url: str | None
    continuation_token: str | None

    @property
    def is_last(self) -> bool:
        return self.next_url is None or not self.rows


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


def check_base_url(base_url: str, *, allow_insecure_http: bool = False) -> str:
    """Validate a base URL; plain http only to loopback (the emulator) unless allowed.

    Returns it without a trailing slash. The API key travels in a header, so http to any
    other host would send it in clear text.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(
            f"base_url {base_url!r} is not an http(s) URL like 'https://us.market-api.kaiko.io'"
        )
    if parts.query or parts.fragment:
        raise InvalidArgumentError(f"base_url {base_url!r} must not have a query or fragment")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise InvalidArgumentError(
            f"base_url {base_url!r} is plain http to a non-loopback host, which would send "
            "the API key in clear text; use https:// (or allow_insecure_http=True)"
        )
    return base_url.rstrip("/")


def page_url(base_url: str, asset: str) -> str:
    """The first page's URL; the asset is quoted as exactly one path segment."""
    return base_url + ENDPOINT_PATH.format(asset=quote(asset, safe=""))


def first_page_params(
    start: datetime, end: datetime, interval: Interval, sort: str, page_size: int
) -> dict[str, str]:
    return {
        "interval": interval.text,
        "sort": sort,
        "start_time": format_time(start),
        "end_time": format_time(end),
        "page_size": str(page_size),
    }


def check_next_url(next_url: str, base_url: str) -> str:
    """Refuse a ``next_url`` that would take the API key to another origin."""
    try:
        target = origin(next_url)
    except ValueError as exc:
        raise UnsafeURLError(
            f"next_url is not a valid URL ({exc}); not followed", base_url
        ) from exc
    if target != origin(base_url):
        scheme, host, port = target
        raise UnsafeURLError(
            f"next_url points to {scheme}://{host}:{port}, not the configured "
            f"{base_url}; not followed, so the API key was not sent there",
            base_url,
        )
    return next_url


def error_message(body: bytes) -> str:
    """Kaiko's ``message`` from an error body, or a short excerpt of whatever came."""
    try:
        envelope = decode_envelope(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body[:200].decode("utf-8", "replace").strip()
        return text or "(empty body)"
    return envelope.message or "(no message)"


def _same(message: str) -> str:
    return message


def parse_page(status: int, body: bytes, url: str, *, redact: Callable[[str], str] = _same) -> Page:
    """Classify an answer and decode it: a :class:`Page`, or the right error raised.

    ``redact`` cleans the server's own words before they go into an error message.
    """
    if status != 200:
        raise api_error_for_status(status, redact(error_message(body)), url)
    try:
        page = decode_page(body)
    except msgspec.ValidationError as exc:
        raise UnexpectedResponseError(
            f"the body does not match the documented fields: {exc}", url
        ) from exc
    except msgspec.DecodeError as exc:
        raise MalformedBodyError(f"the body is not JSON ({len(body)} bytes): {exc}", url) from exc
    if page.result == "error":
        raise APIError(status, redact(page.message or "(no message)"), url)
    if page.data is None:
        raise UnexpectedResponseError("the body has no 'data' array", url)
    return Page(page.data, page.next_url or None, page.continuation_token or None)
