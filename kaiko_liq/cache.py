"""Where a cache keeps a server's rows, and the identity a store root carries.

One store is one server's data, one route's, at one grid. ``cache_dir`` (a local
directory or ``s3://bucket/prefix``) is either a folder of stores::

    cache_dir/<server>/<folder>/    the server's rows of one kind: "1h", "1d", "events"

(``<server>`` is :func:`server_slug` of the whole base URL, ``<folder>`` the route's
:meth:`~kaiko_liq.routes.Route.store_folder`), each laid out as a dataset, manifest and
all; or it is itself a dataset (a backfill: it has a ``_manifest.json``), used as it is
when it holds this server's rows of this kind, refused otherwise.

:func:`check_store` is the one check that a root may be used: a manifest that is not
kaiko-liq's, another server's, route's or interval's, or Parquet files outside the
route's partitions (another program's data) are refused, and nothing is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .errors import InvalidArgumentError
from .fs import Storage, StorageError, is_remote, open_storage
from .layout import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION, is_hidden, split_key
from .query import parse_interval
from .routes import Grid, Route
from .store import ShardStore, grid_text, refuse_other_interval

__all__ = [
    "cache_store",
    "check_store",
    "join_location",
    "origin_slug",
    "read_identity",
    "server_identity",
    "server_slug",
    "write_identity",
]

_SAFE_HOST = re.compile(r"[a-z0-9.-]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def server_identity(base_url: str) -> str:
    """Whose data a store holds, as its manifest records it: ``base_url`` with the
    scheme and host in lower case, the default port dropped, no ``user:password@`` and
    no trailing ``/`` (``HTTP://Proxy:80/a/`` is ``http://proxy/a``). The one spelling
    of a server: its folder (:func:`server_slug`), its manifest and
    :attr:`LiquidationClient.server <kaiko_liq.client.LiquidationClient.server>`."""
    parts = urlsplit(base_url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        raise InvalidArgumentError(f"base_url {base_url!r} has an invalid port") from None
    if not scheme or not host:
        raise InvalidArgumentError(f"base_url {base_url!r} has no scheme or host")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def _same_server(recorded: str, server: str) -> bool:
    """Whether a manifest's ``server`` is ``server``: compared as identities, so a
    store written before they were normalised (a trailing ``/``, ``:80``) still is."""
    if recorded == server:
        return True
    try:
        return server_identity(recorded) == server_identity(server)
    except InvalidArgumentError:
        return False  # a namespace, or not a URL: only the exact text is the same


def origin_slug(base_url: str) -> str:
    """``https_us.market-api.kaiko.io_443``: a folder name for a URL's origin.

    Hosts outside ``[a-z0-9.-]`` (IPv6, say) are spelled safely with a short hash of the
    origin appended, so two origins never share a name."""
    parts = urlsplit(base_url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        raise InvalidArgumentError(f"base_url {base_url!r} has an invalid port") from None
    if not scheme or not host:
        raise InvalidArgumentError(f"base_url {base_url!r} has no scheme or host")
    if _SAFE_HOST.fullmatch(host) and not host.startswith("."):
        return f"{scheme}_{host}_{port}"
    digest = hashlib.sha256(f"{scheme}://{host}:{port}".encode()).hexdigest()[:8]
    safe = re.sub(r"[^a-z0-9.-]+", "-", host).strip(".-") or "host"
    return f"{scheme}_{safe}_{port}-{digest}"


def server_slug(base_url: str) -> str:
    """:func:`origin_slug`, plus a short hash of the path prefix when there is one: two
    base URLs on one origin (``http://proxy/a``, ``http://proxy/b``) are two servers."""
    prefix = urlsplit(base_url).path.rstrip("/")
    slug = origin_slug(base_url)
    if not prefix:
        return slug
    return f"{slug}-p{hashlib.sha256(prefix.encode()).hexdigest()[:10]}"


def join_location(location: str | os.PathLike[str], *parts: str) -> str:
    """``location`` with ``parts`` appended, a local path or an ``s3://`` URL alike."""
    if is_remote(location):
        return "/".join([str(location).rstrip("/"), *parts])
    return os.path.join(os.fspath(location), *parts)


def read_identity(storage: Storage) -> dict[str, Any] | None:
    """The root's manifest as loose JSON (``{}`` for a torn one of ours), or ``None``
    when there is none. Refuses a manifest that is not kaiko-liq's."""
    try:
        raw = storage.read_bytes(MANIFEST_NAME)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise StorageError.from_os_error(exc, storage.url_of(MANIFEST_NAME), doing="read") from exc
    try:
        loose = json.loads(raw)
    except ValueError:
        return {}  # ours, torn: the files say what they hold
    # Ours: our format, or an older or torn record of ours (an interval, no format).
    ours = isinstance(loose, dict) and (
        loose.get("format") == MANIFEST_FORMAT or ("format" not in loose and "interval" in loose)
    )
    if not ours:
        shown = loose.get("format") if isinstance(loose, dict) else None
        raise InvalidArgumentError(
            f"{storage.url_of(MANIFEST_NAME)} is not a kaiko-liq manifest (format {shown!r}); "
            "left it untouched: use another directory"
        )
    assert isinstance(loose, dict)
    version = loose.get("version", MANIFEST_VERSION)
    if version != MANIFEST_VERSION:
        raise InvalidArgumentError(
            f"{storage.url_of(MANIFEST_NAME)} is a {MANIFEST_FORMAT!r} manifest, version "
            f"{version}; this kaiko-liq writes version {MANIFEST_VERSION}; use another directory"
        )
    return loose


def check_store(
    storage: Storage, *, route: Route[Any, Any], grid: Grid, server: str | None
) -> bool:
    """Refuse (:class:`InvalidArgumentError`, nothing touched) a root that is not a
    kaiko-liq store of ``route`` at ``grid`` for ``server`` (``None``: any server);
    ``True`` when it holds our manifest, ``False`` when it has none."""
    loose = read_identity(storage)
    if loose:
        recorded = loose.get("server")
        if server is not None and isinstance(recorded, str) and not _same_server(recorded, server):
            raise InvalidArgumentError(
                f"{storage.url} holds data of {recorded}, not {server}: one store holds "
                "one server's data; use another directory"
            )
        kind = loose.get("route", "token")
        if kind != route.name:
            raise InvalidArgumentError(
                f"{storage.url} holds {kind} data, not {route.name}; use another directory"
            )
        text = loose.get("interval")
        theirs = _interval(text) if isinstance(text, str) else None
        refuse_other_interval(
            storage.url,
            None if theirs is None else theirs.seconds,
            grid,
            what="a backfill at interval {}",
        )
    first = f"{route.table.keys[0]}="
    try:
        entries = storage.list("")
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    except OSError as exc:
        raise StorageError.from_os_error(exc, storage.url, doing="read") from exc
    for entry in entries:
        folder, name = split_key(entry.key)
        if is_hidden(entry.key) or not name.endswith(".parquet"):
            continue
        if not folder or not folder.startswith(first):
            raise InvalidArgumentError(
                f"{storage.url} holds Parquet files kaiko-liq did not write "
                f"({entry.key.split('/')[0]}); left it untouched: use another directory"
            )
    return loose is not None


def _interval(text: str) -> Any:
    try:
        return parse_interval(text)
    except InvalidArgumentError:
        return None


def write_identity(storage: Storage, *, route: Route[Any, Any], grid: Grid, server: str) -> None:
    """Give a new store root its manifest (route, interval, server), as a backfill has."""
    identity: dict[str, Any] = {
        "interval": grid_text(grid),
        "route": route.name,
        "server": server,
        "shards": {},
        "runs": [],
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
    }
    body = json.dumps(identity, indent=2).encode() + b"\n"
    try:
        storage.write_atomic(MANIFEST_NAME, body)
    except OSError as exc:
        raise StorageError.from_os_error(exc, storage.url_of(MANIFEST_NAME)) from exc


def cache_store(
    cache_dir: str | os.PathLike[str],
    base_url: str,
    route: Route[Any, Any],
    target: Any,
    *,
    namespace: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> ShardStore[Any, Any]:
    """The cache's store for ``target``'s kind of rows from one server (see the module
    docstring). ``namespace`` names the server's folder instead of the base URL (the
    built-in emulator, whose port changes from run to run). The location is checked
    first (:meth:`~kaiko_liq.fs.Storage.check`): no bucket, access denied or an
    unreachable endpoint is one :class:`~kaiko_liq.fs.StorageUnavailableError`."""
    if namespace is not None and _NAMESPACE_RE.fullmatch(namespace) is None:
        raise InvalidArgumentError(
            f"cache namespace {namespace!r} must be letters, digits, '.', '_' or '-'"
        )
    grid = route.grid(target)
    server = server_identity(base_url) if namespace is None else f"namespace:{namespace}"
    top = open_storage(cache_dir, storage_options=storage_options)
    top.check()
    if top.exists(MANIFEST_NAME):
        check_store(top, route=route, grid=grid, server=server)
        return ShardStore(top.url, route, grid, storage=top)
    if ShardStore(top.url, route, grid, storage=top).partitions():
        raise InvalidArgumentError(
            f"{top.url} holds {route.table.keys[0]}= partitions but no {MANIFEST_NAME}: not a "
            "cache nor a dataset of kaiko-liq's; use another directory"
        )
    folder = server_slug(server) if namespace is None else f"ns_{namespace}"
    root = join_location(cache_dir, folder, route.store_folder(target))
    storage = open_storage(root, storage_options=storage_options)
    if not check_store(storage, route=route, grid=grid, server=server):
        write_identity(storage, route=route, grid=grid, server=server)
    return ShardStore(storage.url, route, grid, storage=storage)
