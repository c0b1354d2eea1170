"""Scenario 1, backfill: several assets x two years hourly, against the best possible.

The bound: with a per-key limit of ``rate`` requests/s, no client can finish sooner than
``N_min / rate`` (the fewest requests, one per 1000 buckets of each asset's snapped
window, sent at the key's rate) nor sooner than one round trip (``latency``); so
``bound = max(N_min / rate, latency)``. ``N_min`` counts *buckets*, not rows: a client
cannot know in advance which hours have no liquidations.

Three clients, each against a fresh emulator process (so a 429 window or a warm cache
never carries over): kaiko-liq with ``rate_limit`` equal to the key's; Kaiko's
sequential ``next_url`` loop; and one request per day gathered behind a semaphore.
All three must return the same rows (count and checksum) or the run says so.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kaiko_liq.models import LiquidationRow
from kaiko_liq.plan import buckets_in
from kaiko_liq.query import DEFAULT_SERVER_PAGE_SIZE, parse_interval

from . import baselines
from .config import Settings
from .emulator_proc import Emulator
from .measure import ClientRun, median_run, timed_run
from .report import Outcome, Table, Target, fmt_int, fmt_ratio, fmt_seconds
from .rows import Canonical, RowSet, canonical_dict, canonical_struct, summarize

__all__ = ["KaikoLiqResult", "n_min", "run", "run_kaiko_liq", "warm_up"]


#: A process busy this share of a run's wall time is taken to be its bottleneck.
_BUSY = 0.7


def n_min(assets: Sequence[str], start: datetime, end: datetime, interval: str, page: int) -> int:
    """The fewest requests that can return every bucket: one per full page, per asset."""
    buckets = buckets_in(start, end, parse_interval(interval))
    return len(assets) * math.ceil(buckets / page)


async def _kaiko_liq_fetch(
    base_url: str,
    assets: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    interval: str,
    rate_limit: float,
    api_key: str,
) -> tuple[dict[str, list[LiquidationRow]], dict[str, int]]:
    from kaiko_liq import LiquidationClient

    async with LiquidationClient(api_key, base_url=base_url, rate_limit=rate_limit) as client:
        results = await asyncio.gather(
            *(client.fetch(asset, start, end, interval=interval) for asset in assets)
        )
        stats = client.stats
        counters = {
            "requests": int(stats.requests),
            "retries": int(stats.retries),
            "rate_limited": int(stats.rate_limited),
            "rows": int(stats.rows),
        }
    return dict(zip(assets, results, strict=True)), counters


def _struct_rows(rows: Mapping[str, list[LiquidationRow]]) -> dict[str, list[Canonical]]:
    return {asset: [canonical_struct(r) for r in rs] for asset, rs in rows.items()}


def _dict_rows(rows: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[Canonical]]:
    return {asset: [canonical_dict(r) for r in rs] for asset, rs in rows.items()}


def _descending(rows: Mapping[str, list[LiquidationRow]]) -> bool:
    return all(
        all(a.interval_timestamp > b.interval_timestamp for a, b in itertools.pairwise(rs))
        for rs in rows.values()
    )


def emulator_for(settings: Settings, *, fault_rate: float = 0.0) -> Emulator:
    return Emulator(
        latency=settings.latency,
        jitter=settings.jitter,
        rate_limit=settings.rate_limit,
        fault_rate=fault_rate,
        seed=settings.seed,
    )


@dataclass(frozen=True, slots=True)
class KaikoLiqResult:
    """kaiko-liq's backfill: the median measured run, the warm-up run, and the rows."""

    run: ClientRun
    cold: ClientRun | None
    canonical: dict[str, list[Canonical]]
    descending: bool


def _kaiko_liq_once(
    emu: Emulator, settings: Settings, assets: tuple[str, ...], key: str, label: str
) -> tuple[ClientRun, dict[str, list[LiquidationRow]]]:
    fetch = functools.partial(
        _kaiko_liq_fetch,
        assets=assets,
        start=settings.start,
        end=settings.end,
        interval=settings.interval,
        rate_limit=settings.rate_limit,
        api_key=key,
    )
    timed = timed_run(emu, fetch, timeout=settings.run_timeout)
    rows, counters = timed.value
    run = ClientRun(
        client=label,
        assets=assets,
        wall=timed.wall,
        requests=counters["requests"],
        rate_limited=counters["rate_limited"],
        retries=counters["retries"],
        rowset=summarize(_struct_rows(rows)),
        emulator_cpu_share=timed.emulator_cpu_share,
        client_cpu_share=timed.client_cpu_share,
    )
    return run, rows


def warm_up(emu: Emulator, settings: Settings, assets: tuple[str, ...]) -> ClientRun | None:
    """One kaiko-liq pass over the window with a key of its own, before measuring.

    The emulator generates its synthetic rows on first use (tens of microseconds a row,
    so a cold 1000-row page costs it ~40 ms of CPU); a real server reads them from
    storage. Warming it first keeps that generator out of the measured run. The key's
    own token bucket means the measured key still starts with a full burst.
    """
    if not settings.warm_up:
        return None
    run, _ = _kaiko_liq_once(emu, settings, assets, "bench-warm-up", "kaiko-liq, cold emulator")
    return run


def run_kaiko_liq(
    settings: Settings, *, fault_rate: float = 0.0, label: str = "kaiko-liq"
) -> KaikoLiqResult:
    """kaiko-liq's backfill against one emulator: a warm-up run, then ``kaiko_repeats``
    measured runs, each with a fresh key (so a fresh rate-limit bucket); the median run.
    """
    runs: list[ClientRun] = []
    canonical: dict[str, list[Canonical]] = {}
    descending = True
    with emulator_for(settings, fault_rate=fault_rate) as emu:
        cold = warm_up(emu, settings, settings.assets)
        for i in range(settings.kaiko_repeats):
            run, rows = _kaiko_liq_once(
                emu, settings, settings.assets, f"bench-kaiko-liq-{i}", label
            )
            descending = descending and _descending(rows)
            canonical = _struct_rows(rows)
            runs.append(run)
    return KaikoLiqResult(median_run(runs), cold, canonical, descending)


def _run_baseline(
    settings: Settings, name: str, assets: tuple[str, ...]
) -> tuple[ClientRun, dict[str, list[Canonical]]]:
    with emulator_for(settings) as emu:
        warm_up(emu, settings, assets)
        if name == "sequential":
            timed = timed_run(
                emu,
                lambda base: baselines.sequential_next_url(
                    base,
                    "bench-sequential",
                    list(assets),
                    settings.start,
                    settings.end,
                    interval=settings.interval,
                ),
                timeout=settings.run_timeout,
            )
            label = "sequential next_url loop"
        else:
            timed = timed_run(
                emu,
                lambda base: baselines.per_day_gather(
                    base,
                    "bench-per-day",
                    list(assets),
                    settings.start,
                    settings.end,
                    interval=settings.interval,
                    concurrency=settings.per_day_concurrency,
                    page_size=settings.page_size,
                ),
                timeout=settings.run_timeout,
            )
            label = f"per-day gather (semaphore {settings.per_day_concurrency})"
    canonical = _dict_rows(timed.value.rows)
    run = ClientRun(
        client=label,
        assets=assets,
        wall=timed.wall,
        requests=timed.value.requests,
        rate_limited=timed.value.rate_limited,
        retries=timed.value.rate_limited,
        rowset=summarize(canonical),
        emulator_cpu_share=timed.emulator_cpu_share,
        client_cpu_share=timed.client_cpu_share,
    )
    return run, canonical


def _default_pages(rows_per_asset: Mapping[str, int], assets: Sequence[str]) -> int:
    """Pages Kaiko's loop needs at the server's default page size: ceil(rows / 100)."""
    return sum(max(1, math.ceil(rows_per_asset[a] / DEFAULT_SERVER_PAGE_SIZE)) for a in assets)


def _subset(rows: Mapping[str, list[Canonical]], assets: Sequence[str]) -> RowSet:
    return summarize({a: rows.get(a, []) for a in assets})


def run(settings: Settings) -> Outcome:
    assets = settings.assets
    nmin = n_min(assets, settings.start, settings.end, settings.interval, settings.page_size)
    bound = max(nmin / settings.rate_limit, settings.latency)
    buckets = buckets_in(settings.start, settings.end, parse_interval(settings.interval))

    kaiko = run_kaiko_liq(settings)
    kl, kl_rows, kl_ordered = kaiko.run, kaiko.canonical, kaiko.descending
    seq_assets = assets[: settings.sequential_assets]
    seq, seq_rows = _run_baseline(settings, "sequential", seq_assets)
    day, _ = _run_baseline(settings, "per-day", assets)

    # The sequential loop's time is its page count x one round trip, and its pages per
    # asset are ceil(rows / 100): scale the measured subset by pages, not by assets.
    seq_scaled = len(seq_assets) < len(assets)
    per_asset = kl.rowset.per_asset
    scale = _default_pages(per_asset, assets) / _default_pages(per_asset, seq_assets)
    seq_wall_all = seq.wall * scale
    seq_requests_all = round(seq.requests * scale)

    seq_match = _subset(kl_rows, seq_assets).same_data(_subset(seq_rows, seq_assets))
    day_match = kl.rowset.same_data(day.rowset)
    data_ok = seq_match and day_match and kl.rowset.duplicates == 0 and kl_ordered

    table = Table(
        "Backfill",
        (
            "client",
            "wall",
            "requests",
            "429s",
            "rows",
            "checksum",
            "same rows",
            "wall / bound",
            "vs kaiko-liq",
            "client CPU",
            "emulator CPU",
        ),
    )
    lines: list[tuple[ClientRun, float, int, int, str]] = [
        (kl, kl.wall, kl.requests, kl.rate_limited, "-"),
    ]
    if kaiko.cold is not None:
        cold = kaiko.cold
        cold_match = _yes(cold.rowset.same_data(kl.rowset))
        lines.append((cold, cold.wall, cold.requests, cold.rate_limited, cold_match))
    lines += [
        (
            seq,
            seq_wall_all,
            seq_requests_all,
            round(seq.rate_limited * scale),
            _yes(seq_match),
        ),
        (day, day.wall, day.requests, day.rate_limited, _yes(day_match)),
    ]
    for client_run, wall, requests, n429, match in lines:
        star = "*" if client_run is seq and seq_scaled else ""
        table.add(
            client_run.client,
            fmt_seconds(wall) + star,
            fmt_int(requests) + star,
            fmt_int(n429) + star,
            fmt_int(client_run.rowset.rows),
            client_run.rowset.checksum[:12],
            match,
            fmt_ratio(wall / bound),
            fmt_ratio(wall / kl.wall),
            f"{client_run.client_cpu_share:.0%}",
            f"{client_run.emulator_cpu_share:.0%}",
        )
    table.notes += [
        f"{len(assets)} assets ({', '.join(assets)}) x {settings.start:%Y-%m-%d} → "
        f"{settings.end:%Y-%m-%d}, interval {settings.interval}: {buckets:,} buckets per asset; "
        f"emulator latency {settings.latency * 1000:.0f} ms + 0-{settings.jitter * 1000:.0f} ms "
        f"jitter, "
        f"key limit {settings.rate_limit:g} req/s.",
        f"bound = max(N_min / rate, latency) = max({nmin} / {settings.rate_limit:g}, "
        f"{settings.latency:g}) = {bound:.2f} s, N_min = Σ ceil(buckets / {settings.page_size}).",
        f"kaiko-liq: rate_limit={settings.rate_limit:g}, default settings otherwise; median of "
        f"{len(kl.walls)} run(s) ({', '.join(f'{w:.2f}' for w in kl.walls)} s); "
        f"{kl.retries} retries.",
        "client CPU, emulator CPU = CPU time of the benchmark's (client's) process and of the "
        "emulator's process / wall time; 100% = one core busy: at ~100% that side, not the "
        "network or the rate limit, is the bottleneck.",
    ]
    if kaiko.cold is not None:
        table.notes.append(
            "each emulator is warmed by one kaiko-liq pass over the window with another key "
            "before the measured client (it generates its synthetic rows on first use); "
            "'kaiko-liq, cold emulator' is that warm-up pass. --cold skips it."
        )
    client_cpu, emulator_cpu = kl.client_cpu_share * kl.wall, kl.emulator_cpu_share * kl.wall
    table.notes.append(
        f"kaiko-liq run: client process CPU {client_cpu:.2f} s, emulator CPU "
        f"{emulator_cpu:.2f} s, bound {bound:.2f} s. A side whose CPU time alone exceeds the "
        f"bound cannot finish within it, whatever the network does."
    )
    if emulator_cpu > bound or kl.emulator_cpu_share >= _BUSY:
        table.notes.append(
            "WARNING: the emulator's own CPU (generating and encoding pages) limited the "
            "kaiko-liq run; its wall time measures the emulator more than the client."
        )
    if client_cpu > bound or kl.client_cpu_share >= _BUSY:
        table.notes.append(
            "the client's own CPU (decoding and checking rows) limited the kaiko-liq run."
        )
    if seq_scaled:
        table.notes.append(
            f"* sequential loop MEASURED on {len(seq_assets)} asset(s) ({', '.join(seq_assets)}):"
            f" {seq.wall:.1f} s, {seq.requests} requests, {seq.rowset.rows:,} rows. Wall,"
            f" requests and 429s are scaled x{scale:.2f} to {len(assets)} assets: the loop is"
            f" strictly sequential, one round trip a page, and needs ceil(rows / 100) pages"
            f" per asset (rows per asset from kaiko-liq's result). Rows and checksum are the"
            f" measured subset's, compared with kaiko-liq's rows for the same asset(s)."
            f" --sequential-assets 0 measures all of them (~{seq_wall_all:.0f} s)."
        )
    if not data_ok:
        table.notes.append(
            f"DATA MISMATCH: sequential same={seq_match}, per-day same={day_match}, "
            f"kaiko-liq duplicates={kl.rowset.duplicates}, kaiko-liq descending={kl_ordered}."
        )

    speedup = seq_wall_all / kl.wall
    request_cap = 1.1 * nmin + len(assets)
    targets = [
        Target("backfill", "rows identical across the 3 clients", _yes(data_ok), data_ok),
        Target(
            "backfill",
            "kaiko-liq wall ≤ 1.3× bound",
            f"{kl.wall:.2f} s = {kl.wall / bound:.2f}× bound ({bound:.2f} s)",
            kl.wall <= 1.3 * bound,
        ),
        Target(
            "backfill",
            "≥ 10× faster than the sequential loop",
            f"{speedup:.1f}×" + (" (sequential scaled)" if seq_scaled else ""),
            speedup >= 10,
        ),
        Target(
            "backfill",
            "requests ≤ 1.1 × N_min + 1 per asset",
            f"{kl.requests} ≤ {request_cap:.0f} (N_min {nmin})",
            kl.requests <= request_cap,
        ),
        Target(
            "backfill",
            "no 429 when rate_limit = the key's",
            f"{kl.rate_limited} × 429",
            kl.rate_limited == 0,
        ),
    ]
    data: dict[str, object] = {
        "warm_up": settings.warm_up,
        "kaiko_liq_cold_emulator": None if kaiko.cold is None else kaiko.cold.to_json(),
        "assets": list(assets),
        "buckets_per_asset": buckets,
        "n_min": nmin,
        "bound_s": bound,
        "clients": {
            "kaiko_liq": kl.to_json(),
            "sequential": {
                **seq.to_json(),
                "scaled_to_all_assets": seq_scaled,
                "scale": scale,
                "wall_s_all_assets": round(seq_wall_all, 3),
                "requests_all_assets": seq_requests_all,
            },
            "per_day": day.to_json(),
        },
        "same_rows": {"sequential": seq_match, "per_day": day_match},
        "kaiko_liq_descending": kl_ordered,
    }
    return Outcome(data=data, tables=[table], targets=targets)


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"
