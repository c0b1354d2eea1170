"""The shape ``stream`` and ``follow`` share: rows handed out one at a time, as an async
iterator and an async context manager.

``async for row in it`` iterates a fresh generator that nobody else holds, so that
breaking out drops its last reference and asyncio's async-generator finalizer closes it
on the next loop step, which stops whatever feeds it. (Held, it would live until the
garbage collector or an explicit close.) ``async with it: async for row in it`` bounds
its life explicitly: leaving the block calls :meth:`aclose`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Generic, Self, TypeVar

__all__ = ["RowIterator"]

Row = TypeVar("Row")


class RowIterator(ABC, Generic[Row]):
    """Base of :class:`~kaiko_liq.client.RowStream` and :class:`~kaiko_liq.live.Follow`:
    a subclass gives :meth:`_rows` (the generator) and :meth:`aclose`."""

    def __init__(self) -> None:
        self._managed = False
        self._iterator: AsyncIterator[Row] | None = None

    async def __aenter__(self) -> Self:
        self._managed = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Row]:
        # Managed, the generator is held here and closed by __aexit__; plain, it is not
        # held at all (see the module docstring).
        return self if self._managed else self._rows()

    async def __anext__(self) -> Row:
        self._before_next()
        if self._iterator is None:
            self._iterator = self._rows()
        return await self._iterator.__anext__()

    def _before_next(self) -> None:
        """Checked before every row handed out through :meth:`__anext__`."""

    @abstractmethod
    def _rows(self) -> AsyncIterator[Row]:
        """The rows, as an async generator; iterated once."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop, and release what the iteration holds."""
