"""The route seam: everything one Kaiko endpoint is, in one object.

A :class:`Route` says what the generic machinery cannot know: the path and its typed
parameters (a *target*: an asset at an interval, an instrument), the row Struct and its
decoder, the first page's parameters, a row's time, the checks a page must pass, how a
window is cut into shards (:class:`ShardPolicy`), when a row is final, and the table a
row becomes. Page decoding (:mod:`kaiko_liq.protocol`), the page chain
(:mod:`kaiko_liq.chain`), the fetch engine (:mod:`kaiko_liq.engine`), the store and the
writers only ever ask a route; they never name an endpoint.

Adding an endpoint is writing one module here (see :mod:`.token` and :mod:`.events`),
an emulator route, a facade method on the client and a CLI registration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar
from urllib.parse import quote

if TYPE_CHECKING:
    from ..plan import SubRange
    from ..protocol import Page
    from ..tables import TableSpec

__all__ = [
    "MILLISECOND",
    "Grid",
    "MillisecondGrid",
    "PageCheck",
    "PageSource",
    "Route",
    "ShardPolicy",
    "Window",
]

Row = TypeVar("Row")
RowIn = TypeVar("RowIn", contravariant=True)
Target = TypeVar("Target")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Grid(Protocol):
    """Where a window's edges snap: a token route's buckets, or events' milliseconds."""

    def floor(self, t: datetime) -> datetime: ...

    def ceil(self, t: datetime) -> datetime: ...


@dataclass(frozen=True, slots=True)
class MillisecondGrid:
    """The grid of times sent to the millisecond: what an event route's windows snap to."""

    delta: timedelta = timedelta(milliseconds=1)

    def floor(self, t: datetime) -> datetime:
        return t.replace(microsecond=t.microsecond // 1000 * 1000)

    def ceil(self, t: datetime) -> datetime:
        low = self.floor(t)
        return low if low == t else low + self.delta


MILLISECOND = MillisecondGrid()


@dataclass(frozen=True, slots=True)
class Window:
    """A validated request's span and order: ``[start, end)``, ``sort``, ``page_size``."""

    start: datetime
    end: datetime
    sort: str
    page_size: int


class PageSource(Protocol):
    """What a page chain needs of a transport: one page, decoded by the route's decoder."""

    base_url: str

    async def get_page(
        self,
        url: str,
        params: dict[str, str] | None,
        decode: Callable[[bytes], Any],
    ) -> Page[Any]: ...


class PageCheck(Protocol[RowIn]):
    """The checks one sub-range's pages must pass, page after page (it may keep state:
    the last row's time, the ids seen). Raises :class:`~kaiko_liq.errors.InconsistentDataError`."""

    def __call__(self, rows: Sequence[RowIn], url: str) -> None: ...


class ShardPolicy(ABC, Generic[Target, Row]):
    """How a window is cut into shards and how one shard's rows are fetched."""

    @abstractmethod
    def plan(self, route: Route[Target, Row], target: Target, window: Window) -> list[SubRange]:
        """Shards covering ``[window.start, window.end)``, ascending (pure)."""

    @abstractmethod
    async def fetch(
        self,
        source: PageSource,
        route: Route[Target, Row],
        target: Target,
        shard: SubRange,
        sort: str,
        page_size: int,
    ) -> list[Row]:
        """Every row of ``shard`` in ``sort`` order."""


class Route(ABC, Generic[Target, Row]):
    """One endpoint (see the module docstring). Subclasses are stateless singletons."""

    #: A short name: the store keeps each route's data under it.
    name: ClassVar[str]
    #: What one of its rows is called in messages ("3 buckets revised").
    row_name: ClassVar[str]
    #: The path, ``{name}`` for each path parameter, as Kaiko's reference writes it.
    path_template: ClassVar[str]
    #: How a window is cut into shards and a shard fetched.
    policy: ClassVar[ShardPolicy[Any, Any]]

    def path(self, target: Target) -> str:
        """The path for ``target``: each parameter quoted as exactly one segment."""
        values = {k: quote(str(v), safe="") for k, v in self.path_params(target).items()}
        return self.path_template.format(**values)

    @abstractmethod
    def path_params(self, target: Target) -> dict[str, str]:
        """The path parameters by name (also the store's partition keys, in order)."""

    @abstractmethod
    def label(self, target: Target) -> str:
        """How messages name ``target`` (``btc``, ``binc:perpetual-future:btc-usdt``)."""

    @abstractmethod
    def decode(self, body: bytes) -> Any:
        """A whole answer decoded: the envelope's fields and ``data`` as rows."""

    @abstractmethod
    def first_params(
        self, target: Target, shard: SubRange, sort: str, page_size: int
    ) -> dict[str, str]:
        """The first request's query parameters (later pages follow the cursor)."""

    @abstractmethod
    def grid(self, target: Target) -> Grid:
        """Where ``target``'s windows snap: the server answers for the snapped window."""

    @abstractmethod
    def time_of(self, row: Row) -> datetime:
        """The instant a row is at (its bucket's start, an event's time), UTC."""

    def settles_at(self, target: Target, row_time: datetime, settle: timedelta) -> datetime:
        """When a row at ``row_time`` is final: ``settle`` after its span closed. A
        route whose rows span time (buckets) overrides this."""
        return row_time + settle

    def recheck_span(self, target: Target, recheck: timedelta, page_size: int) -> timedelta:
        """How far back from the newest stored row a store fetches again on each run."""
        return recheck

    def horizon(self, target: Target, now: datetime, settle: timedelta) -> datetime:
        """The end of what is final at ``now``: every row before it has settled."""
        return self.grid(target).floor(now - settle)

    @abstractmethod
    def page_check(self, target: Target, lo: datetime, hi: datetime, sort: str) -> PageCheck[Row]:
        """A fresh check for the pages of one sub-range ``[lo, hi)`` (snapped)."""

    @abstractmethod
    def max_empty_pages(self, target: Target, lo: datetime, hi: datetime) -> tuple[int, str]:
        """More empty pages in a row than this, and the cursor is not advancing: the
        count, and what it counts (``"buckets"``), for the error."""

    @property
    @abstractmethod
    def table(self) -> TableSpec[Any]:
        """The columns a row becomes (CSV, Parquet, frames, the store)."""

    def partition(self, target: Target) -> str:
        """The store's hive partition for ``target``: ``asset=btc``,
        ``exchange=binc/instrument_class=future/instrument=btc-usdt``."""
        return "/".join(f"{k}={v}" for k, v in self.path_params(target).items())

    def store_folder(self, target: Target) -> str:
        """The cache's folder for ``target``'s kind of data under one server's folder
        (a token route keeps each interval apart)."""
        return self.name


def epoch_ms(t: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float)."""
    return (t - _EPOCH) // timedelta(milliseconds=1)


def from_epoch_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)
