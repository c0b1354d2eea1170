"""Scenario 2, decode: every step a 1000-row page takes, and the models against dicts.

The steps, in the order a backfill runs them, each timed alone on the same real pages
(best of ``repeat`` passes, ms per page): gzip inflate (zlib, as aiohttp does by default;
ISA-L and zlib-ng, which ``aiohttp.set_zlib_backend`` can use), msgspec decode to
:class:`~kaiko_liq.models.LiquidationRow`, the client's row checks
(:func:`kaiko_liq.the token route's row checks`), the Arrow conversion in each shape
(:func:`kaiko_liq.export.to_arrow`; ``nested`` is what a backfill file holds) and the
Parquet write of the nested table. The target: the Arrow conversion no slower than the
decode.

Then the decoders against each other:

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
import functools
import gc
import importlib
import io
import json
import time
import zlib
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import msgspec

from kaiko_liq.export import Shape
from kaiko_liq.models import LiquidationRow, decode_page
from kaiko_liq.query import format_time, parse_interval

from .config import Settings
from .emulator_proc import Emulator
from .report import Outcome, Table, Target, fmt_rate, fmt_ratio

__all__ = [
    "DECODERS",
    "DecodeResult",
    "Page",
    "StepResult",
    "capture_pages",
    "measure_decoders",
    "measure_steps",
    "run",
]


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


@dataclass(frozen=True, slots=True)
class Page:
    """One captured answer: its gzip body as sent, and the window it was asked for."""

    gzip_body: bytes
    asset: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class StepResult:
    step: str
    pages: int
    seconds: float  # best pass over all pages
    note: str = ""

    @property
    def ms_per_page(self) -> float:
        return self.seconds / self.pages * 1000

    def to_json(self) -> dict[str, object]:
        return {
            "step": self.step,
            "pages": self.pages,
            "best_pass_s": self.seconds,
            "ms_per_page": round(self.ms_per_page, 3),
            "note": self.note,
        }


INFLATE_ZLIB = "gzip inflate: zlib (aiohttp's default)"
DECODE = "msgspec decode → LiquidationRow"
ARROW_NESTED = "to_arrow(shape='nested') (backfill files)"


def _inflate_with(impl: Any) -> Callable[[bytes], bytes]:
    """A gzip inflater from a zlib-compatible module (wbits 31: a gzip stream)."""

    def inflate(body: bytes) -> bytes:
        data: bytes = impl.decompressobj(31).decompress(body)
        return data

    return inflate


def _inflaters() -> dict[str, Callable[[bytes], bytes]]:
    """zlib always; ISA-L and zlib-ng when installed (the ``speed`` extra)."""
    out = {INFLATE_ZLIB: _inflate_with(zlib)}
    for label, module in (("ISA-L (isal)", "isal.isal_zlib"), ("zlib-ng", "zlib_ng.zlib_ng")):
        try:
            out[f"gzip inflate: {label}"] = _inflate_with(importlib.import_module(module))
        except ImportError:
            continue
    return out


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(max(1, repeat)):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _each(fn: Callable[[Any], object], items: Sequence[Any]) -> None:
    for item in items:
        fn(item)


def _check_all(pages: Sequence[Page], rows: Sequence[list[LiquidationRow]]) -> None:
    from kaiko_liq.routes.token import TOKEN, Token

    for page, page_rows in zip(pages, rows, strict=True):
        target = Token(page.asset, parse_interval("1h"))
        TOKEN.page_check(target, page.start, page.end, "desc")(page_rows, "bench")


def measure_steps(pages: Sequence[Page], repeat: int) -> list[StepResult]:
    """Best-of-``repeat`` time of each step over every page; the order a backfill runs them."""
    import pyarrow.parquet as pq

    from kaiko_liq.export import to_arrow

    n = len(pages)
    results: list[StepResult] = []
    for label, inflate in _inflaters().items():
        bodies_in = [p.gzip_body for p in pages]
        results.append(
            StepResult(label, n, _best(functools.partial(_each, inflate, bodies_in), repeat))
        )
    bodies = [zlib.decompress(p.gzip_body, 31) for p in pages]
    results.append(StepResult(DECODE, n, _best(lambda: [decode_page(b) for b in bodies], repeat)))
    rows = [decode_page(b).data or [] for b in bodies]
    results.append(
        StepResult(
            "row checks (token route)",
            n,
            _best(lambda: _check_all(pages, rows), repeat),
        )
    )
    shape: Shape
    for shape in ("nested", "totals", "exchanges"):
        label = ARROW_NESTED if shape == "nested" else f"to_arrow(shape={shape!r})"
        convert = functools.partial(to_arrow, asset=False, shape=shape)
        results.append(StepResult(label, n, _best(functools.partial(_each, convert, rows), repeat)))
    tables = [to_arrow(r, asset=False, shape="nested") for r in rows]

    def write() -> None:
        for table in tables:
            pq.write_table(table, io.BytesIO())

    results.append(StepResult("Parquet write (nested, to memory)", n, _best(write, repeat)))
    return results


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
) -> list[Page]:
    """``per_asset`` consecutive full pages (1000 hours each) per asset, gzip bodies as
    sent (the client asks for gzip, as aiohttp does)."""
    pages: list[Page] = []
    span = timedelta(hours=settings.page_size)
    headers = {
        "X-Api-Key": "bench-decode",
        "Accept": "application/json",
        "Accept-Encoding": "gzip",
    }
    async with aiohttp.ClientSession(headers=headers, auto_decompress=False) as session:
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
                    body = await resp.read()
                    if resp.headers.get("Content-Encoding") != "gzip":
                        raise RuntimeError(f"the emulator sent {url} without gzip")
                    pages.append(Page(body, asset, lo, lo + span))
    return pages


def run(settings: Settings) -> Outcome:
    with Emulator(seed=settings.seed) as emu:
        pages = asyncio.run(
            capture_pages(emu.base_url, settings.assets, settings, settings.decode_pages_per_asset)
        )
    bodies = [zlib.decompress(p.gzip_body, 31) for p in pages]
    steps = measure_steps(pages, settings.decode_step_repeat)
    results = measure_decoders(bodies, settings.decode_repeat)
    many = list(bodies) * settings.decode_keep_copies
    kept = {r.decoder: r for r in measure_decoders(many, settings.decode_keep_repeat, keep=True)}
    by_name = {r.decoder: r for r in results}
    if len({r.rows for r in results}) != 1:
        raise RuntimeError(f"decoders disagree on row counts: {[r.to_json() for r in results]}")
    baseline, kept_baseline = by_name[JSON_LOADS], kept[JSON_LOADS]
    step_by = {r.step: r for r in steps}
    decode_ms = step_by[DECODE].ms_per_page
    steps_table = Table("Per page (1000 rows)", ("step", "ms per page", "vs decode"))
    for step in steps:
        steps_table.add(
            step.step, f"{step.ms_per_page:.2f} ms", fmt_ratio(step.ms_per_page / decode_ms)
        )
    gz_mb = sum(len(p.gzip_body) for p in pages) / len(pages) / 1e6
    steps_table.notes += [
        f"{len(pages)} real pages from the emulator ({baseline.rows / len(pages):,.0f} rows, "
        f"{baseline.bytes / len(pages) / 1e6:.2f} MB of JSON, {gz_mb:.2f} MB gzipped, each); "
        f"each step alone over every page, best of {settings.decode_step_repeat} passes.",
        "A backfill runs them all for every page: inflate and decode in a worker thread "
        "(on the event loop's thread for a body under 64 kB), the row checks on the loop; "
        "the Arrow conversion and Parquet write in a "
        "worker thread (the conversion holds the GIL, so it still competes with the loop; "
        "Parquet encoding and inflate in C release it).",
    ]
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
    arrow_ms = step_by[ARROW_NESTED].ms_per_page
    return Outcome(
        data={
            "steps": [r.to_json() for r in steps],
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
        tables=[steps_table, table],
        targets=[
            Target(
                "decode",
                "Arrow conversion (nested) ≤ decode",
                f"{arrow_ms:.2f} ms vs {decode_ms:.2f} ms per page",
                arrow_ms <= decode_ms,
            ),
            Target(
                "decode",
                "models ≥ 4× faster than json.loads",
                f"{speedup:.2f}× ({kept_speedup:.2f}× with rows kept)",
                speedup >= 4,
            ),
        ],
    )
