"""Scenario 2, decode: kaiko-liq's msgspec models against ``json.loads`` into dicts.

The bodies are real 1000-row pages captured from the emulator, decoded as the client
decodes them, with :func:`~kaiko_liq.models.decode_page` (one strict pass: typed,
validated rows with ``datetime`` times), against ``json.loads`` (untyped dicts,
nothing validated; what aiohttp's ``resp.json()`` does). ``msgspec.json.decode`` into
dicts is shown for reference.
Each decoder makes ``repeat`` passes over all bodies, interleaved with the others so
that drift hits all alike; the best pass counts (the least disturbed one).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import msgspec

from kaiko_liq.models import decode_page
from kaiko_liq.query import format_time

from .config import Settings
from .emulator_proc import Emulator
from .report import Outcome, Table, Target, fmt_rate, fmt_ratio

__all__ = ["DECODERS", "DecodeResult", "capture_pages", "measure_decoders", "run"]


def _models(body: bytes) -> Sized:
    return decode_page(body).data or []


def _json_loads(body: bytes) -> Sized:
    data: Sized = json.loads(body)["data"]
    return data


def _msgspec_untyped(body: bytes) -> Sized:
    data: Sized = msgspec.json.decode(body)["data"]
    return data


MODELS = "kaiko-liq models (msgspec)"
JSON_LOADS = "json.loads → dicts"
#: Each decoder returns the rows it decoded (counted, so a wrong one shows up).
DECODERS: dict[str, Callable[[bytes], Sized]] = {
    MODELS: _models,
    JSON_LOADS: _json_loads,
    "msgspec.json.decode → dicts": _msgspec_untyped,
}


@dataclass(frozen=True, slots=True)
class DecodeResult:
    decoder: str
    rows: int
    bytes: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6

    def to_json(self) -> dict[str, object]:
        return {
            "decoder": self.decoder,
            "rows": self.rows,
            "bytes": self.bytes,
            "best_pass_s": self.seconds,
            "rows_per_s": round(self.rows_per_s),
            "mb_per_s": round(self.mb_per_s, 1),
        }


def measure_decoders(
    bodies: Sequence[bytes],
    repeat: int,
    decoders: dict[str, Callable[[bytes], Sized]] | None = None,
    *,
    keep: bool = False,
) -> list[DecodeResult]:
    """Best-of-``repeat`` time for each decoder to decode every body once.

    With ``keep``, every page's rows stay alive until the pass ends, as in ``fetch``:
    then the cyclic garbage collector's passes over the growing heap count too.
    """
    decoders = DECODERS if decoders is None else decoders
    size = sum(len(b) for b in bodies)
    best = dict.fromkeys(decoders, float("inf"))
    rows = dict.fromkeys(decoders, 0)
    for _ in range(max(1, repeat)):
        for name, decode in decoders.items():
            kept: list[Sized] = []
            gc.collect()  # start each pass with no garbage owed by the previous one
            t0 = time.perf_counter()
            n = 0
            for body in bodies:
                page = decode(body)
                n += len(page)
                if keep:
                    kept.append(page)
            elapsed = time.perf_counter() - t0
            del kept
            best[name] = min(best[name], elapsed)
            rows[name] = n
    return [DecodeResult(name, rows[name], size, best[name]) for name in decoders]


async def capture_pages(
    base_url: str, assets: Sequence[str], settings: Settings, per_asset: int
) -> list[bytes]:
    """``per_asset`` consecutive full pages (1000 hours each) per asset, bodies as sent."""
    bodies: list[bytes] = []
    span = timedelta(hours=settings.page_size)
    headers = {"X-Api-Key": "bench-decode", "Accept": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for asset in assets:
            for i in range(per_asset):
                lo = settings.start + i * span
                params = {
                    "interval": "1h",
                    "start_time": format_time(lo),
                    "end_time": format_time(lo + span),
                    "page_size": str(settings.page_size),
                }
                url = f"{base_url}/v2/data/liquidation.v1/token/{asset}"
                async with session.get(url, params=params) as resp:
                    resp.raise_for_status()
                    bodies.append(await resp.read())
    return bodies


def run(settings: Settings) -> Outcome:
    with Emulator(seed=settings.seed) as emu:
        bodies = asyncio.run(
            capture_pages(emu.base_url, settings.assets, settings, settings.decode_pages_per_asset)
        )
    results = measure_decoders(bodies, settings.decode_repeat)
    many = list(bodies) * settings.decode_keep_copies
    kept = {r.decoder: r for r in measure_decoders(many, settings.decode_keep_repeat, keep=True)}
    by_name = {r.decoder: r for r in results}
    if len({r.rows for r in results}) != 1:
        raise RuntimeError(f"decoders disagree on row counts: {[r.to_json() for r in results]}")
    baseline, kept_baseline = by_name[JSON_LOADS], kept[JSON_LOADS]
    table = Table(
        "Decode",
        ("decoder", "rows/s", "MB/s", "vs json.loads", "rows/s, rows kept", "vs json.loads, kept"),
    )
    for r in results:
        k = kept[r.decoder]
        table.add(
            r.decoder,
            fmt_rate(r.rows_per_s, "rows"),
            f"{r.mb_per_s:.0f}",
            fmt_ratio(baseline.seconds / r.seconds),
            fmt_rate(k.rows_per_s, "rows"),
            fmt_ratio(kept_baseline.seconds / k.seconds),
        )
    rows = baseline.rows
    table.notes += [
        f"{len(bodies)} real 1000-row pages from the emulator ({rows:,} rows, "
        f"{baseline.bytes / 1e6:.1f} MB of JSON, {baseline.bytes / rows:.0f} bytes/row, "
        f"gzip off); best of {settings.decode_repeat} passes each, decoders interleaved.",
        f"'rows kept': the same pages x{settings.decode_keep_copies} ({kept_baseline.rows:,} "
        f"rows) decoded while every page's rows stay alive, as fetch keeps "
        f"them, so the garbage collector's passes over the growing heap count; best of "
        f"{settings.decode_keep_repeat}.",
    ]
    speedup = baseline.seconds / by_name[MODELS].seconds
    kept_speedup = kept_baseline.seconds / kept[MODELS].seconds
    return Outcome(
        data={
            "pages": len(bodies),
            "rows": rows,
            "bytes": baseline.bytes,
            "repeat": settings.decode_repeat,
            "results": [r.to_json() for r in results],
            "speedup_vs_json_loads": round(speedup, 2),
            "rows_kept": {
                "copies": settings.decode_keep_copies,
                "repeat": settings.decode_keep_repeat,
                "results": [k.to_json() for k in kept.values()],
                "speedup_vs_json_loads": round(kept_speedup, 2),
            },
        },
        tables=[table],
        targets=[
            Target(
                "decode",
                "models ≥ 4× faster than json.loads",
                f"{speedup:.2f}× ({kept_speedup:.2f}× with rows kept)",
                speedup >= 4,
            )
        ],
    )
