"""Continuation tokens: opaque, URL-safe, tamper-evident, carrying the whole query.

A token is ``base64url(version || msgpack([query, position]) || mac)`` without padding,
where ``mac`` is the first 16 bytes of HMAC-SHA256 over ``version || payload``. Carrying
the whole query means a continued request needs nothing else (Kaiko: "all subsequent
calls should only use continuation_token"), and the MAC means a garbled or edited token
is refused with a 400 instead of serving some other window.

The key is derived from the emulator's seed, so tokens are reproducible across runs with
the same seed. It is no secret (it is written right here): the MAC catches accidents and
clients that edit tokens, not attackers, which is all an emulator needs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Generic, TypeVar

import msgspec

from .errors import Rejection

__all__ = ["TokenCodec"]

#: The query a token carries: a route's own (``params.Query``, ``events_params.EventQuery``).
Q = TypeVar("Q", bound=msgspec.Struct)

_VERSION = b"\x01"
_MAC_SIZE = 16
#: Far above any real token (~150 characters); refuse before decoding anything bigger.
_MAX_TOKEN_CHARS = 4096
#: base64url without padding; b64decode alone would skip stray characters, not refuse them.
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")


class _Body(msgspec.Struct, Generic[Q], frozen=True, array_like=True):
    query: Q
    position: int


class TokenCodec(Generic[Q]):
    """Encodes and checks the continuation tokens of one emulator's route.

    A token of one route does not decode as another's query: it is refused like an
    edited one.

    >>> codec = TokenCodec(seed=0, query=Query)
    >>> token = codec.encode(query, position)          # doctest: +SKIP
    >>> codec.decode(token) == (query, position)       # doctest: +SKIP
    True
    """

    def __init__(self, seed: int, query: type[Q]) -> None:
        self._key = hashlib.sha256(f"kaiko-liq emulator tokens:{seed}".encode()).digest()
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(_Body[query])  # type: ignore[valid-type]

    def _mac(self, signed: bytes) -> bytes:
        return hmac.new(self._key, signed, hashlib.sha256).digest()[:_MAC_SIZE]

    def encode(self, query: Q, position: int) -> str:
        signed = _VERSION + self._encoder.encode(_Body(query, position))
        raw = signed + self._mac(signed)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def decode(self, token: str) -> tuple[Q, int]:
        """The query and cursor a token carries; a :class:`Rejection` (400) if it is bad."""
        if len(token) > _MAX_TOKEN_CHARS or _TOKEN_RE.fullmatch(token) is None:
            raise _invalid()
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):  # e.g. a length no base64 string can have
            raise _invalid() from None
        signed, mac = raw[:-_MAC_SIZE], raw[-_MAC_SIZE:]
        if len(raw) <= _MAC_SIZE + 1 or not hmac.compare_digest(mac, self._mac(signed)):
            raise _invalid()
        if signed[:1] != _VERSION:
            raise _invalid()
        try:
            body = self._decoder.decode(signed[1:])
        except msgspec.DecodeError:  # a correctly signed token always decodes; be safe
            raise _invalid() from None
        return body.query, body.position


def _invalid() -> Rejection:
    return Rejection(
        400,
        "continuation_token is invalid: garbled, edited, or issued by another server; "
        "follow next_url exactly as received, or start again without the token",
    )
