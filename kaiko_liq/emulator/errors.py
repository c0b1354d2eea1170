"""Error answers: a :class:`Rejection` raised anywhere in request handling becomes one.

Kaiko's envelope docs: errors carry ``{"result": "error", "message": "..."}`` with the
HTTP status (400, 401, 404, 429, 5xx). Every error the emulator sends has that body, even
for unknown routes, so a client can always read a message.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

__all__ = ["ErrorAnswer", "Rejection", "error_body"]


class ErrorAnswer(msgspec.Struct, frozen=True):
    result: str
    message: str


_encoder = msgspec.json.Encoder()


def error_body(message: str) -> bytes:
    """The JSON body of an error answer."""
    return _encoder.encode(ErrorAnswer(result="error", message=message))


class Rejection(Exception):
    """The request is refused with ``status`` and ``message`` (never holding a key).

    ``headers`` go on the error answer (a 429's ``Retry-After``).
    """

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers: Mapping[str, str] = headers or {}
