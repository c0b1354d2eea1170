"""Synthetic liquidation events that add up to the hourly volumes, made lazily per hour.

The events route (``/v2/data/liquidation.v1/trades/{exchange}/{instrument_class}/
{instrument}``) serves single liquidations; the token route serves their hourly sums. A
user who fetches both can check that they agree, so here they do by construction: the
events of one exchange, asset and hour are cut from that exchange's entry in the asset's
final hourly row (:mod:`.data`), never drawn on their own:

* as many ``long`` events as the entry's ``long_trades``, as many ``short`` as its
  ``short_trades``;
* a side's ``amount`` (USD) cut into that many parts, each a whole number (at least one)
  of the data's 1/4096 USD quantum, so the parts add up to the entry's amount exactly, in
  any order (every sum stays far below 2**41 quanta);
* the events spread over the exchange's instruments of that asset: its perpetual, and on
  a few exchanges a quarterly future that takes about a fifth of them.

Within the hour, times are uniform to the millisecond, with clusters: an event often
shares the millisecond of the one before, and in a busy hour (a cascade) one sweep
liquidates dozens of positions in the same millisecond, as an exchange's engine does.

``trade_id``: an exchange's own id is a serial number (Deribit prefixes the asset, as it
does); :data:`SYNTHETIC_ID_EXCHANGES` send none, so Kaiko makes one up, here a 32-digit
hex digest. Either way it is unique per instrument.

``rate`` is read as the quote currency's USD rate: ``amount_usd = amount_quote * rate``
on USDT-quoted instruments, ``null`` on USD-quoted ones (the doc leaves the field's
meaning and type open). ``price`` is in the quote currency, ``amount`` in the base asset.

An event exists once its millisecond is past (before the emulator's ``now``) and never
changes after, so the sums equal the token route's figures for every settled hour.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

from ..models import LiquidationEvent
from .data import _QUANTUM, ASSETS, _asset_day, _rng, profile
from .grid import DATA_START_S, DAY, HOUR, ms_ceil, parse_iso_time

__all__ = [
    "DENSE_INSTRUMENT",
    "INSTRUMENTS",
    "INSTRUMENT_CLASSES",
    "KEYS_PER_MS",
    "SPARSE_INSTRUMENT",
    "SYNTHETIC_ID_EXCHANGES",
    "Instrument",
    "events_for",
    "find_instrument",
    "iter_events",
]

#: The events endpoint's instrument classes (its doc).
INSTRUMENT_CLASSES = ("future", "perpetual-future")
#: Exchanges that give no trade id for a liquidation: Kaiko makes one up.
SYNTHETIC_ID_EXCHANGES = ("hbdm",)
#: An event's place in serving order is ``timestamp * KEYS_PER_MS + rank`` (its rank
#: among the instrument's events of that millisecond), so a cursor can stop inside one.
KEYS_PER_MS = 1 << 16

_HOUR_MS = HOUR * 1000
#: Perpetuals quoted in USD (inverse contracts); the others are quoted in USDT.
_USD_QUOTED = ("bfnx", "drbt", "krkn")
#: Exchanges with a current-quarter future on these assets, and its share of the events.
_FUTURES = {("okex", "btc"), ("okex", "eth"), ("hbdm", "btc"), ("hbdm", "eth")}
_FUTURE_SHARE = 0.2
#: Where each exchange's serial trade ids start (they grow with time, as real ones do).
_ID_BASE = {"binc": 5_100_000_000, "bbit": 310_000_000, "okex": 720_000_000, "gate": 94_000_000}
#: Serial ids leave room for this many events per exchange-asset-hour.
_PER_HOUR_IDS = 1_000_000
#: USD price of each asset at the data's start; the path moves around it (see _price).
_BASE_PRICE = {
    "btc": 95_000.0,
    "eth": 3_300.0,
    "sol": 190.0,
    "xrp": 2.3,
    "doge": 0.33,
    "ada": 0.95,
    "link": 21.0,
    "ltc": 105.0,
    "pepe": 0.000018,
}
#: An hour with this many events on one exchange has a sweep: many in one millisecond.
_SWEEP_MIN = 100


@dataclass(frozen=True, slots=True)
class Instrument:
    """One instrument of the events route, e.g. ``binc:perpetual-future:btc-usdt``."""

    exchange: str
    instrument_class: str
    code: str  # Kaiko's instrument code, e.g. ``btc-usdt``
    asset: str  # its base asset: the token route's ``{asset}``

    def __str__(self) -> str:
        return ":".join(self.path)

    @property
    def path(self) -> tuple[str, str, str]:
        """The route's path parameters: exchange, instrument_class, instrument."""
        return (self.exchange, self.instrument_class, self.code)


def _instruments() -> tuple[Instrument, ...]:
    made = []
    for asset in ASSETS:
        for exchange in profile(asset).exchanges:
            quote = "usd" if exchange in _USD_QUOTED else "usdt"
            made.append(Instrument(exchange, "perpetual-future", f"{asset}-{quote}", asset))
            if (exchange, asset) in _FUTURES:
                made.append(Instrument(exchange, "future", f"{asset}-usd-cq", asset))
    return tuple(sorted(made, key=str))


#: Every instrument the emulator serves events for: each exchange's perpetual of each
#: asset it lists on the token route, and a few quarterly futures; any other is a 404.
INSTRUMENTS: tuple[Instrument, ...] = _instruments()
_BY_PATH = {i.path: i for i in INSTRUMENTS}
#: Thousands of events on a busy day, with same-millisecond sweeps.
DENSE_INSTRUMENT = _BY_PATH["binc", "perpetual-future", "btc-usdt"]
#: Zero to three events on most days.
SPARSE_INSTRUMENT = _BY_PATH["krkn", "perpetual-future", "ltc-usd"]


def find_instrument(exchange: str, instrument_class: str, code: str) -> Instrument | None:
    """The instrument at that path (lower case), or ``None``."""
    return _BY_PATH.get((exchange, instrument_class, code))


def _price(asset: str, hour: int) -> float:
    """The asset's USD price in the hour starting at epoch second ``hour``: slow waves
    around its base price, a pure function of time (no walk to replay from the start)."""
    t = (hour - DATA_START_S) / HOUR
    swing = (
        0.30 * math.sin(2 * math.pi * t / (24 * 211))
        + 0.12 * math.sin(2 * math.pi * t / (24 * 37) + 1.3)
        + 0.02 * math.sin(2 * math.pi * t / 29 + 0.4)
    )
    return _BASE_PRICE[asset] * math.exp(swing)


def _cut(total: float, weights: list[float]) -> list[float]:
    """``total`` (a whole number of quanta) in ``len(weights)`` parts in proportion to
    ``weights``, each at least one quantum when it can be: the parts sum to it exactly."""
    n = len(weights)
    if n == 0:
        return []
    quanta = round(total * _QUANTUM)
    spare = quanta - n if quanta >= n else 0
    floor = 1 if quanta >= n else 0
    scale = spare / sum(weights)
    parts: list[float] = []
    done = acc = 0.0
    for w in weights:
        acc += w
        edge = math.floor(acc * scale) if len(parts) < n - 1 else spare
        parts.append((edge - done + floor) / _QUANTUM)
        done = edge
    if floor == 0:  # too little to give each one quantum: the remainder goes to the last
        parts[-1] += (quanta - spare) / _QUANTUM
    return parts


def _millis(rng: random.Random, n: int) -> list[int]:
    """``n`` sorted millisecond offsets within an hour, clustered."""
    draw = rng.random
    offsets = sorted([int(draw() * _HOUR_MS) for _ in range(n)])
    for i in range(1, n):
        if rng.random() < 0.2:  # the engine closed it together with the one before
            offsets[i] = offsets[i - 1]
    if n >= _SWEEP_MIN:  # a sweep: a run of positions closed in the same millisecond
        size = min(n // 8, 250)
        at = rng.randrange(n - size)
        offsets[at : at + size] = [offsets[at]] * size
    return sorted(offsets)


def _trade_ids(exchange: str, asset: str, seed: int, hour: int, n: int) -> list[str]:
    """The ids of an exchange's ``n`` events of an asset in one hour, in order."""
    if exchange in SYNTHETIC_ID_EXCHANGES:
        text = f"kaiko-liq-emulator-event:{seed}:{exchange}:{asset}:{hour}:"
        return [
            hashlib.blake2b(f"{text}{i}".encode(), digest_size=16).hexdigest() for i in range(n)
        ]
    first = _ID_BASE.get(exchange, 10_000_000) + (hour - DATA_START_S) // HOUR * _PER_HOUR_IDS
    prefix = f"{asset.upper()}-" if exchange == "drbt" else ""
    return [f"{prefix}{first + i}" for i in range(n)]


_Hour = tuple[list[int], list[LiquidationEvent]]  # ascending keys, and the events
_EMPTY: _Hour = ([], [])


@lru_cache(maxsize=2048)
def _exchange_hour(seed: int, exchange: str, asset: str, hour: int) -> dict[str, _Hour]:
    """The events of one exchange, asset and hour (epoch second), by instrument code."""
    row = _asset_day(seed, asset, hour // DAY)[hour % DAY // HOUR]
    venues = () if row is None else row.exchanges
    entry = next((v for v in venues if v.exchange == exchange), None)
    if entry is None:
        return {}
    rng = _rng(seed, "events", exchange, asset, hour)
    n = entry.long_trades + entry.short_trades
    millis = _millis(rng, n)
    sides = ["long"] * entry.long_trades + ["short"] * entry.short_trades
    rng.shuffle(sides)
    # Heavy-tailed sizes, as the volumes' own model (lognormal, sigma 1.3).
    gauss, exp = rng.gauss, math.exp
    weights = [exp(1.3 * gauss()) for _ in range(n)]
    paired = list(zip(weights, sides, strict=True))
    long_usd = iter(_cut(entry.long_amount, [w for w, s in paired if s == "long"]))
    short_usd = iter(_cut(entry.short_amount, [w for w, s in paired if s == "short"]))
    has_future = (exchange, asset) in _FUTURES
    quote_usd = "usd" if exchange in _USD_QUOTED else "usdt"
    perpetual, future = f"{asset}-{quote_usd}", f"{asset}-usd-cq"
    # USDT drifts a few hundredths of a percent around the dollar, one rate an hour.
    rate = None if quote_usd == "usd" else round(1.0 + rng.uniform(-4e-4, 4e-4), 6)
    mid = _price(asset, hour)
    digits = 5 - math.floor(math.log10(mid))  # six significant digits, as a tick size
    ids = _trade_ids(exchange, asset, seed, hour, n)
    draw = rng.random
    codes = (perpetual, future) if has_future else (perpetual,)
    made: dict[str, _Hour] = {code: ([], []) for code in codes}
    last = dict.fromkeys(codes, (-1, 0))  # code -> (millisecond, rank) of its last event
    for offset, side, trade_id in zip(millis, sides, ids, strict=True):
        is_long = side == "long"
        usd = next(long_usd) if is_long else next(short_usd)
        code = future if has_future and draw() < _FUTURE_SHARE else perpetual
        ms = hour * 1000 + offset
        prior_ms, prior_rank = last[code]
        rank = prior_rank + 1 if prior_ms == ms else 0
        last[code] = (ms, rank)
        # Longs are closed as the price falls, shorts as it rises.
        price = round(mid * (1.0 - 0.004 * draw() if is_long else 1.0 + 0.004 * draw()), digits)
        quoted = code == perpetual and rate is not None
        usd_quote = usd / rate if quoted and rate is not None else usd
        keys, events = made[code]
        keys.append(ms * KEYS_PER_MS + rank)
        # Positional: the doc's field order (timestamp, trade_id, price, amount,
        # amount_quote, amount_usd, rate, position_side); a tenth faster than keywords.
        events.append(
            LiquidationEvent(
                ms,
                trade_id,
                price,
                usd_quote / price,
                usd_quote,
                usd,
                rate if quoted else None,
                "long" if is_long else "short",
            )
        )
    return made


def _instrument_hour(seed: int, instrument: Instrument, hour: int) -> _Hour:
    by_code = _exchange_hour(seed, instrument.exchange, instrument.asset, hour)
    return by_code.get(instrument.code, _EMPTY)


def _active(seed: int, instrument: Instrument, hour: int) -> bool:
    """The exchange had liquidations of the asset in that hour (a cheap look-up)."""
    row = _asset_day(seed, instrument.asset, hour // DAY)[hour % DAY // HOUR]
    return row is not None and any(v.exchange == instrument.exchange for v in row.exchanges)


def iter_events(
    instrument: Instrument, lo: int, hi: int, *, descending: bool = False, seed: int = 0
) -> Iterator[tuple[int, LiquidationEvent]]:
    """``(key, event)`` of the events with ``lo <= key < hi`` (keys: see
    :data:`KEYS_PER_MS`), in serving order; only the hours the window reaches are made."""
    lo = max(lo, DATA_START_S * 1000 * KEYS_PER_MS)
    if lo >= hi:
        return
    first = lo // KEYS_PER_MS // _HOUR_MS * HOUR
    last = (hi - 1) // KEYS_PER_MS // _HOUR_MS * HOUR
    hours = range(last, first - 1, -HOUR) if descending else range(first, last + 1, HOUR)
    for hour in hours:
        if not _active(seed, instrument, hour):
            continue
        keys, events = _instrument_hour(seed, instrument, hour)
        a, b = bisect.bisect_left(keys, lo), bisect.bisect_left(keys, hi)
        span = range(b - 1, a - 1, -1) if descending else range(a, b)
        for i in span:
            yield keys[i], events[i]


def events_for(
    instrument: Instrument | str,
    start: str | datetime | date,
    end: str | datetime | date,
    *,
    seed: int = 0,
    descending: bool = False,
    now: datetime | None = None,
) -> list[LiquidationEvent]:
    """The events of ``instrument`` (or ``"binc:perpetual-future:btc-usdt"``) in
    ``[start, end)``, ascending unless ``descending``, as they are at ``now`` (``None``:
    the system clock). The events the emulator serves, without HTTP: for tests."""
    if isinstance(instrument, str):
        found = find_instrument(*instrument.lower().split(":", 2))
        if found is None:
            raise KeyError(f"unknown instrument {instrument!r}; see INSTRUMENTS")
        instrument = found
    clock = datetime.now(UTC) if now is None else now
    lo = ms_ceil(parse_iso_time(start, "start"))
    hi = min(ms_ceil(parse_iso_time(end, "end")), ms_ceil(clock))
    found_events = iter_events(
        instrument, lo * KEYS_PER_MS, hi * KEYS_PER_MS, descending=descending, seed=seed
    )
    return [event for _, event in found_events]
