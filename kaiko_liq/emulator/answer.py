"""A page's answer in three parts, as the app sends it: head, rows, tail.

The rows are the bulk of a body and the same for every request of the same page, so the
app can compress them once and reuse them (:mod:`.compression`); ``key`` names them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["PageAnswer"]


@dataclass(frozen=True, slots=True)
class PageAnswer:
    """``head + rows() + tail`` is the JSON body of a success answer."""

    head: bytes
    rows: Callable[[], bytes]
    tail: bytes
    #: Names the bytes ``rows()`` returns, for the compression cache; ``None``: not to
    #: be kept (figures still filling).
    key: Hashable | None
