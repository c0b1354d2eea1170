"""Scenario 1, backfill: several assets x 22 months hourly, against the best possible.

The bound: with a per-key limit of ``rate`` requests/s, no client can send the fewest
requests that cover the window, ``N_min`` (one per 1000 buckets of each asset's snapped
window), in less than ``N_min / rate``, and the last answer takes one round trip more:
``bound = N_min / rate + latency``. ``N_min`` counts *buckets*, not rows: a client
cannot know in advance which hours have no liquidations.

Against one emulator process (each client with a key of its own, so a fresh rate-limit
bucket): the library's ``fetch`` (in this process, every asset at once); the real
``kaiko-liq backfill`` command (a subprocess, start-up included, files written), timed
from outside and once more from inside (:mod:`benchmarks.cli_worker`) for its event
loop's CPU and peak RSS. Then, each against a fresh emulator: Kaiko's sequential
``next_url`` loop and one request per day gathered behind a semaphore. Every client
must return the same rows (count and checksum; the backfill's are read back from its
files) or the run says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kaiko_liq.models import LiquidationRow
from kaiko_liq.plan import buckets_in
from kaiko_liq.query import DEFAULT_SERVER_PAGE_SIZE, format_time, parse_interval

from . import baselines, jobs
from .bounds import bound_seconds, n_min
from .cli_proc import CliRun, run_command, run_instrumented
from .config import Settings
from .emulator_proc import Emulator
from .measure import ClientRun, median_run, timed_run
from .report import Outcome, Table, Target, fmt_bytes, fmt_int, fmt_ratio, fmt_seconds
from .rows import Canonical, RowSet, canonical_dict, canonical_struct, read_backfill_rows, summarize

__all__ = [
    "KaikoLiqResult",
    "backfill_args",
    "bound_seconds",
    "n_min",
    "read_backfill_rows",
    "run",
    "run_kaiko_liq",
    "warm_up",
]

#: Targets (reported, never asserted): wall over the bound, and the event loop's CPU
#: per 1000-row page.
FETCH_BOUND_RATIO = 1.1
BACKFILL_BOUND_RATIO = 1.2
FETCH_LOOP_MS_PER_PAGE = 5.0
BACKFILL_LOOP_MS_PER_PAGE = 7.0


#: A process busy this share of a run's wall time is taken to be its bottleneck.
_BUSY = 0.7


def backfill_args(
    settings: Settings,
    out: Path,
    base_url: str,
    *,
    assets: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    rate_limit: float | None = None,
) -> list[str]:
    """``kaiko-liq backfill`` arguments for the scenario (quiet: no progress line)."""
    return [
        "backfill",
        *(settings.assets if assets is None else assets),
        "--start",
        format_time(settings.start if start is None else start),
        "--end",
        format_time(settings.end if end is None else end),
        "--interval",
        settings.interval,
        "--base-url",
        base_url,
        "--rate-limit",
        f"{settings.rate_limit if rate_limit is None else rate_limit:g}",
        "--out",
        str(out),
        "--quiet",
    ]


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
    """kaiko-liq's ``fetch``: the median measured run, the warm-up run, and the rows;
    with ``with_cli``, the ``kaiko-liq backfill`` command's median run beside it, its
    instrumented run, and the rows read back from its files."""

    run: ClientRun
    cold: ClientRun | None
    canonical: dict[str, list[Canonical]]
    descending: bool
    cli: ClientRun | None = None
    cli_inside: CliRun | None = None


def _cli_runs(
    emu: Emulator, settings: Settings, expected_requests: int
) -> tuple[ClientRun, CliRun]:
    """``kaiko-liq backfill`` ``kaiko_repeats`` times from outside (the median), then once
    through the instrumented worker; each with a fresh key and a fresh directory."""
    runs: list[ClientRun] = []
    with tempfile.TemporaryDirectory(prefix="kaiko-liq-bench-") as tmp:
        for i in range(settings.kaiko_repeats):
            out = Path(tmp) / f"run{i}"
            cpu0 = emu.cpu_seconds()
            done = run_command(
                backfill_args(settings, out, emu.base_url),
                api_key=f"bench-cli-{i}",
                timeout=settings.run_timeout,
            )
            emu_cpu = emu.cpu_seconds() - cpu0
            emu.check_alive()
            rowset = summarize(read_backfill_rows(out))
            runs.append(
                ClientRun(
                    client="kaiko-liq backfill (CLI)",
                    assets=settings.assets,
                    wall=done.wall,
                    requests=expected_requests,
                    rate_limited=0,
                    retries=None,
                    rowset=rowset,
                    emulator_cpu_share=emu_cpu / done.wall,
                    client_cpu_share=done.process_cpu / done.wall,
                    client_cpu=done.process_cpu,
                )
            )
        inside = run_instrumented(
            backfill_args(settings, Path(tmp) / "instrumented", emu.base_url),
            api_key="bench-cli-instrumented",
            timeout=settings.run_timeout,
        )
    median = median_run(runs)
    requests = inside.requests if inside.requests is not None else expected_requests
    median = dataclasses.replace(
        median,
        requests=requests,
        loop_cpu=inside.loop_cpu,
        peak_rss_bytes=inside.peak_rss_bytes,
    )
    if len({r.rowset.checksum for r in runs}) != 1:
        median = dataclasses.replace(median, client="kaiko-liq backfill (CLI; RUNS DISAGREE)")
    return median, inside


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
        client_cpu=timed.client_cpu,
        loop_cpu=timed.loop_cpu,
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
    settings: Settings,
    *,
    fault_rate: float = 0.0,
    label: str = "kaiko-liq fetch (library)",
    with_cli: bool = False,
    emu: Emulator | None = None,
) -> KaikoLiqResult:
    """kaiko-liq's ``fetch`` against one emulator (``emu``, or a fresh one): a warm-up
    run, then ``kaiko_repeats`` measured runs, each with a fresh key (so a fresh
    rate-limit bucket); the median run. ``with_cli`` adds the ``kaiko-liq backfill``
    command against the same emulator.
    """
    if emu is None:
        with emulator_for(settings, fault_rate=fault_rate) as own:
            return run_kaiko_liq(settings, label=label, with_cli=with_cli, emu=own)
    runs: list[ClientRun] = []
    canonical: dict[str, list[Canonical]] = {}
    descending = True
    cli: ClientRun | None = None
    inside: CliRun | None = None
    cold = warm_up(emu, settings, settings.assets)
    for i in range(settings.kaiko_repeats):
        run, rows = _kaiko_liq_once(emu, settings, settings.assets, f"bench-kaiko-liq-{i}", label)
        descending = descending and _descending(rows)
        canonical = _struct_rows(rows)
        runs.append(run)
    if with_cli:
        cli, inside = _cli_runs(emu, settings, median_run(runs).requests)
    return KaikoLiqResult(median_run(runs), cold, canonical, descending, cli, inside)


def _run_baseline(
    settings: Settings, name: str, assets: tuple[str, ...], emu: Emulator
) -> tuple[ClientRun, dict[str, list[Canonical]]]:
    """A baseline against ``emu``, already warm, with a key of its own."""
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
        client_cpu=timed.client_cpu,
    )
    return run, canonical


def _default_pages(rows_per_asset: Mapping[str, int], assets: Sequence[str]) -> int:
    """Pages Kaiko's loop needs at the server's default page size: ceil(rows / 100)."""
    return sum(max(1, math.ceil(rows_per_asset[a] / DEFAULT_SERVER_PAGE_SIZE)) for a in assets)


def _subset(rows: Mapping[str, list[Canonical]], assets: Sequence[str]) -> RowSet:
    return summarize({a: rows.get(a, []) for a in assets})


def _per_page_ms(seconds: float | None, pages: int) -> str:
    return "-" if seconds is None or pages <= 0 else f"{seconds / pages * 1000:.1f} ms"


def run(settings: Settings) -> Outcome:
    assets = settings.assets
    nmin = n_min(assets, settings.start, settings.end, settings.interval, settings.page_size)
    bound = bound_seconds(nmin, settings.rate_limit, settings.latency)
    buckets = buckets_in(settings.start, settings.end, parse_interval(settings.interval))

    seq_assets = assets[: settings.sequential_assets]
    # One emulator for every client, warmed once; each client has a key of its own, so
    # each starts with a full rate-limit bucket.
    with emulator_for(settings) as emu:
        kaiko = run_kaiko_liq(settings, with_cli=True, emu=emu)
        seq, seq_rows = _run_baseline(settings, "sequential", seq_assets, emu)
        day, _ = _run_baseline(settings, "per-day", assets, emu)
    kl, kl_rows, kl_ordered = kaiko.run, kaiko.canonical, kaiko.descending
    cli = kaiko.cli
    assert cli is not None

    # The sequential loop's time is its page count x one round trip, and its pages per
    # asset are ceil(rows / 100): scale the measured subset by pages, not by assets.
    seq_scaled = len(seq_assets) < len(assets)
    per_asset = kl.rowset.per_asset
    scale = _default_pages(per_asset, assets) / _default_pages(per_asset, seq_assets)
    seq_wall_all = seq.wall * scale
    seq_requests_all = round(seq.requests * scale)

    seq_match = _subset(kl_rows, seq_assets).same_data(_subset(seq_rows, seq_assets))
    day_match = kl.rowset.same_data(day.rowset)
    cli_match = kl.rowset.same_data(cli.rowset)
    data_ok = seq_match and day_match and cli_match and kl.rowset.duplicates == 0 and kl_ordered

    table = Table(
        "Backfill",
        (
            "client",
            "wall",
            "wall / bound",
            "requests",
            "429s",
            "rows",
            "checksum",
            "same rows",
            "CPU / page",
            "loop CPU / page",
            "peak RSS",
            "client CPU",
            "emulator CPU",
        ),
    )
    lines: list[tuple[ClientRun, float, int, int, str]] = [
        (kl, kl.wall, kl.requests, kl.rate_limited, "-"),
        (cli, cli.wall, cli.requests, cli.rate_limited, _yes(cli_match)),
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
            fmt_ratio(wall / bound),
            fmt_int(requests) + star,
            fmt_int(n429) + star,
            fmt_int(client_run.rowset.rows),
            client_run.rowset.checksum[:12],
            match,
            _per_page_ms(client_run.client_cpu, client_run.requests),
            _per_page_ms(client_run.loop_cpu, client_run.requests),
            fmt_bytes(client_run.peak_rss_bytes),
            f"{client_run.client_cpu_share:.0%}",
            f"{client_run.emulator_cpu_share:.0%}",
        )
    kl_loop_ms = (kl.loop_cpu or 0.0) / kl.requests * 1000
    cli_loop_ms = (cli.loop_cpu or 0.0) / max(1, cli.requests) * 1000
    inside = kaiko.cli_inside
    table.notes += [
        f"{len(assets)} assets ({', '.join(assets)}) x {settings.start:%Y-%m-%d} → "
        f"{settings.end:%Y-%m-%d}, interval {settings.interval}: {buckets:,} buckets per asset; "
        f"emulator (its own process) latency {settings.latency * 1000:.0f} ms"
        + (f" + 0-{settings.jitter * 1000:.0f} ms jitter" if settings.jitter else "")
        + f", key limit {settings.rate_limit:g} req/s; answer bodies cached (warm).",
        f"bound = N_min / rate + latency = {nmin} / {settings.rate_limit:g} + "
        f"{settings.latency:g} = {bound:.2f} s, N_min = Σ ceil(buckets / {settings.page_size}).",
        f"kaiko-liq fetch: {len(assets)} concurrent client.fetch calls in this process, "
        f"rate_limit={settings.rate_limit:g}; median of {len(kl.walls)} "
        f"({', '.join(f'{w:.2f}' for w in kl.walls)} s); {kl.retries} retries.",
        f"kaiko-liq backfill: the console script as a subprocess (interpreter start-up, "
        f"imports, Parquet files and manifest included), --rate-limit "
        f"{settings.rate_limit:g}; median of {len(cli.walls)} "
        f"({', '.join(f'{w:.2f}' for w in cli.walls)} s); rows read back from its files. "
        f"Loop CPU, requests and peak RSS from one more run through benchmarks.cli_worker"
        + (
            f" (wall {inside.wall:.2f} s, process CPU {inside.process_cpu:.2f} s, loop "
            f"thread {inside.loop_cpu or 0:.2f} s)."
            if inside is not None
            else "."
        ),
        "CPU / page = the client process's CPU (every thread; for the CLI start-up and "
        "imports too) / requests; loop CPU / page = the CPU of the thread running the "
        "event loop, while it ran (time.thread_time) / requests. client CPU, emulator CPU "
        "= each process's CPU / wall (100% = one core).",
    ]
    if kaiko.cold is not None:
        table.notes.append(
            "the emulator is warmed by one kaiko-liq pass over the window with another key "
            "before the measured clients (it generates its synthetic rows on first use); "
            "'cold emulator' is that warm-up pass. --cold skips it."
        )
    emulator_cpu = kl.emulator_cpu_share * kl.wall
    if emulator_cpu > bound or kl.emulator_cpu_share >= _BUSY:
        table.notes.append(
            "WARNING: the emulator's own CPU (generating and encoding pages) limited the "
            "kaiko-liq run; its wall time measures the emulator more than the client."
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
            f"DATA MISMATCH: backfill files same={cli_match}, sequential same={seq_match}, "
            f"per-day same={day_match}, kaiko-liq duplicates={kl.rowset.duplicates}, "
            f"kaiko-liq descending={kl_ordered}."
        )

    speedup = seq_wall_all / kl.wall
    request_cap = 1.1 * nmin + len(assets)
    targets = [
        Target("backfill", "rows identical (fetch, CLI files, baselines)", _yes(data_ok), data_ok),
        Target(
            "backfill",
            f"kaiko-liq backfill (CLI) wall ≤ {BACKFILL_BOUND_RATIO}× bound",
            f"{cli.wall:.2f} s = {cli.wall / bound:.2f}× bound ({bound:.2f} s)",
            cli.wall <= BACKFILL_BOUND_RATIO * bound,
        ),
        Target(
            "backfill",
            f"kaiko-liq fetch wall ≤ {FETCH_BOUND_RATIO}× bound",
            f"{kl.wall:.2f} s = {kl.wall / bound:.2f}× bound ({bound:.2f} s)",
            kl.wall <= FETCH_BOUND_RATIO * bound,
        ),
        Target(
            "backfill",
            f"event-loop thread CPU ≤ {FETCH_LOOP_MS_PER_PAGE:g} ms / page (fetch)",
            f"{kl_loop_ms:.1f} ms",
            kl_loop_ms <= FETCH_LOOP_MS_PER_PAGE,
        ),
        Target(
            "backfill",
            f"event-loop thread CPU ≤ {BACKFILL_LOOP_MS_PER_PAGE:g} ms / page (backfill)",
            f"{cli_loop_ms:.1f} ms",
            cli_loop_ms <= BACKFILL_LOOP_MS_PER_PAGE,
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
            f"{kl.requests} fetch, {cli.requests} backfill ≤ {request_cap:.0f} (N_min {nmin})",
            max(kl.requests, cli.requests) <= request_cap,
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
            "kaiko_liq_fetch": kl.to_json(),
            "kaiko_liq_backfill_cli": cli.to_json(),
            "kaiko_liq_backfill_cli_instrumented": None if inside is None else inside.to_json(),
            "sequential": {
                **seq.to_json(),
                "scaled_to_all_assets": seq_scaled,
                "scale": scale,
                "wall_s_all_assets": round(seq_wall_all, 3),
                "requests_all_assets": seq_requests_all,
            },
            "per_day": day.to_json(),
        },
        "loop_cpu_ms_per_page": {"fetch": round(kl_loop_ms, 2), "backfill": round(cli_loop_ms, 2)},
        "same_rows": {"backfill_files": cli_match, "sequential": seq_match, "per_day": day_match},
        "kaiko_liq_descending": kl_ordered,
    }
    sizes = jobs.run(settings)
    data["job_sizes"] = sizes.data
    return Outcome(data=data, tables=[table, *sizes.tables], targets=targets + sizes.targets)


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"
