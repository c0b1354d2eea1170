"""Token stores for the tests, as they were spelled before the store went generic: an
asset's target at an interval, a store at an interval, the cache's store at one."""

from __future__ import annotations

import os
from typing import Any

from kaiko_liq.cache import cache_store
from kaiko_liq.query import parse_interval
from kaiko_liq.routes.token import TOKEN, Token
from kaiko_liq.store import ShardStore


def tok(asset: str, interval: str = "1h") -> Token:
    return Token(asset, parse_interval(interval))


def token_store(location: str | os.PathLike[str], interval: str = "1h", **kw: Any) -> Any:
    return ShardStore(location, TOKEN, parse_interval(interval), **kw)


def token_cache(cache_dir: Any, base_url: str, interval: str = "1h", **kw: Any) -> Any:
    return cache_store(cache_dir, base_url, TOKEN, tok("btc", interval), **kw)
