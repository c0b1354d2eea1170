"""The route seam: everything one Kaiko endpoint is, in one object.

A :class:`Route` says what the generic machinery cannot know: the path and its typed
parameters (a *target*: an asset at an interval, an instrument), the row Struct and its
decoder, the first page's parameters, a row's time, the checks a page must pass, how a
window is cut into shards (:class:`ShardPolicy`), when a row is final, how far back a
store checks its newest rows again, and the table a row becomes. Page decoding
(:mod:`kaiko_liq.protocol`), the page chain (:mod:`kaiko_liq.shard`), the fetch engine
(:mod:`kaiko_liq.engine`), the store and the writers only ever ask a route; they never
name an endpoint.

Adding an endpoint is writing one module here (see :mod:`.token` and :mod:`.events`),
named as its route is, whose one instance is passed to :func:`register`; then an
emulator route, a facade method on the client and a CLI registration. A dataset's reader
finds the route by the name its manifest records (:func:`route_named`).
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar
from urllib.parse import quote

from ..errors import InvalidArgumentError
from ..query import MILLISECOND, Grid, MillisecondGrid, Window, epoch_ms, from_epoch_ms
from ..settle import settled_horizon
from ..shard import PageCheck
from ..sharding import ShardPolicy

if TYPE_CHECKING:
    from ..plan import SubRange
    from ..tables import TableSpec

__all__ = [
    "DEFAULT_ROUTE",
    "MILLISECOND",
    "Grid",
    "MillisecondGrid",
    "PageCheck",
    "Route",
    "ShardPolicy",
    "Window",
    "all_routes",
    "epoch_ms",
    "from_epoch_ms",
    "register",
    "route_named",
]

Row = TypeVar("Row")
Target = TypeVar("Target")


class Route(ABC, Generic[Target, Row]):
    """One endpoint (see the module docstring). Subclasses are stateless singletons."""

    #: A short name: the store keeps each route's data under it.
    name: ClassVar[str]
    #: What one of its rows is called in messages ("3 buckets revised").
    row_name: ClassVar[str]
    #: What one of its targets is called in messages and tables ("asset").
    noun: ClassVar[str]
    #: The path, ``{name}`` for each path parameter, as Kaiko's reference writes it.
    path_template: ClassVar[str]
    #: How a window is cut into shards and a shard fetched.
    policy: ClassVar[ShardPolicy]

    def path(self, target: Target) -> str:
        """The path for ``target``: each parameter quoted as exactly one segment."""
        values = {k: quote(str(v), safe="") for k, v in self.path_params(target).items()}
        return self.path_template.format(**values)

    @abstractmethod
    def path_params(self, target: Target) -> dict[str, str]:
        """The path parameters by name (also the store's partition keys, in order)."""

    @abstractmethod
    def label(self, target: Target) -> str:
        """How messages name ``target`` (``btc``, ``binc:perpetual-future:btc-usdt``):
        its path parameters joined by ``:``, as a reader names a partition."""

    @abstractmethod
    def label_of(self, given: Any) -> str:
        """A target as a user names it (``BTC``, ``binc:future:btc-usd``, a typed
        target) checked and written as :meth:`label` writes it;
        :class:`InvalidArgumentError` if it names no target of this route."""

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

    def recheck_span(self, target: Target, recheck: timedelta, page_size: int) -> timedelta:
        """How far back from the newest stored row a store fetches again on each run
        (``recheck``, the client's setting, bounded by what one run should cost)."""
        return recheck

    def recheck_from(
        self, target: Target, newest: datetime, recheck: timedelta, page_size: int
    ) -> datetime:
        """Where the recheck of rows stored up to ``newest`` starts (on the grid):
        :meth:`recheck_span` back, or ``newest`` itself when it is off. The one rule for
        the cache, ``backfill`` and ``follow``; each clamps it to its own start."""
        grid = self.grid(target)
        span = self.recheck_span(target, recheck, page_size)
        return grid.ceil(newest - span) if span else grid.ceil(newest)

    def horizon(self, target: Target, now: datetime, settle: timedelta) -> datetime:
        """The end of what is final at ``now`` (:func:`~kaiko_liq.settle.settled_horizon`:
        ``settle`` and the clock margin back, on the grid); every row before it has
        settled. ``now`` is the earlier of the two clocks
        (:meth:`~kaiko_liq.client.LiquidationClient.final_before`)."""
        return settled_horizon(self.grid(target), now, settle=settle)

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


R = TypeVar("R", bound=Route[Any, Any])

#: The name a manifest records for a route that predates the record (token volumes).
DEFAULT_ROUTE = "token"

_ROUTES: dict[str, Route[Any, Any]] = {}


def register(route: R) -> R:
    """Make ``route`` findable by its name (:func:`route_named`); a route module calls it
    on its one instance."""
    _ROUTES[route.name] = route
    return route


def all_routes() -> dict[str, Route[Any, Any]]:
    """Every route, by name: each module of this package imported (so registered)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return dict(_ROUTES)


def route_named(name: str) -> Route[Any, Any]:
    """The route named ``name`` (the module ``kaiko_liq.routes.<name>`` holds it)."""
    routes = _ROUTES if name in _ROUTES else all_routes()
    if name not in routes:
        raise InvalidArgumentError(f"route {name!r} is not one of {', '.join(sorted(routes))}")
    return routes[name]
