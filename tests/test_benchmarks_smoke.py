"""Smoke test of the benchmark runner: its pure parts (the decode core, the per-page
steps, the tables), and the pieces that run the real ``kaiko-liq backfill`` command
against an emulator process, on a two-day window.

No timing assertions: the benchmarks themselves are run with ``python -m benchmarks.run``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks.backfill import backfill_args
from benchmarks.bounds import bound_seconds, n_min
from benchmarks.cli_proc import run_command
from benchmarks.config import BackfillMemoryRun, Settings, settings_for
from benchmarks.decode import (
    ARROW_NESTED,
    DECODE,
    INFLATE_ZLIB,
    JSON_LOADS,
    MODELS,
    Page,
    measure_decoders,
    measure_steps,
)
from benchmarks.emulator_proc import Emulator
from benchmarks.memory import backfill_memory
from benchmarks.report import Table, Target, render_markdown, render_text, targets_table
from benchmarks.rows import canonical_dict, canonical_struct, read_backfill_rows, summarize
from kaiko_liq import LiquidationClient
from kaiko_liq.models import decode_page


def _row(hour: int) -> dict[str, object]:
    # The shape of the endpoint doc's response example (two exchanges; a 0 amount).
    return {
        "interval_time": f"2025-02-27T{hour:02d}:00:00Z",
        "interval_timestamp": 1740614400000000000 + hour * 3_600_000_000_000,
        "total_trades": 40,
        "total_amount": 474520.3599480028,
        "long_trades": 2,
        "long_amount": 11062.85615080547,
        "short_trades": 38,
        "short_amount": 463457.50379719737,
        "exchanges": [
            {
                "exchange": "bbit",
                "total_trades": 17,
                "total_amount": 281481.78156436956,
                "long_trades": 0,
                "long_amount": 0,
                "short_trades": 17,
                "short_amount": 281481.78156436956,
            },
            {
                "exchange": "okex",
                "total_trades": 23,
                "total_amount": 193038.57838363323,
                "long_trades": 2,
                "long_amount": 11062.85615080547,
                "short_trades": 21,
                "short_amount": 181975.72223282777,
            },
        ],
    }


def _body(n: int) -> bytes:
    data = [_row(h) for h in reversed(range(n))]
    envelope = {"query": {"page_size": "2", "token": "eth"}, "data": data}
    return json.dumps(envelope).encode()


def test_measure_decoders_counts_every_row() -> None:
    bodies = [_body(24), _body(3)]
    results = measure_decoders(bodies, repeat=2)
    by_name = {r.decoder: r for r in results}
    assert {MODELS, JSON_LOADS} <= set(by_name)
    for r in results:
        assert r.rows == 27
        assert r.bytes == sum(len(b) for b in bodies)
        assert r.seconds > 0
        assert r.rows_per_s > 0
    kept = measure_decoders(bodies, repeat=1, keep=True)
    assert [r.rows for r in kept] == [27] * len(kept)


def test_checksums_agree_between_dicts_and_structs() -> None:
    body = _body(5)
    structs = decode_page(body).data or []
    dicts = json.loads(body)["data"]
    a = summarize({"eth": [canonical_struct(r) for r in structs]})
    b = summarize({"eth": [canonical_dict(r) for r in reversed(dicts)]})
    assert a.same_data(b)
    assert a.rows == 5
    assert a.duplicates == 0
    changed = dict(dicts[0], total_trades=41)
    c = summarize({"eth": [canonical_dict(r) for r in [changed, *dicts[1:]]]})
    assert not a.same_data(c)


def test_tables_render_as_text_and_markdown() -> None:
    table = Table("Backfill", ("client", "wall", "requests"))
    table.add("kaiko-liq", "1.02 s", "90")
    table.add("sequential | loop", "88.1 s*", "876*")
    table.notes.append("* scaled")
    verdicts = targets_table(
        [
            Target("backfill", "wall ≤ 1.3× bound", "1.13×", True),
            Target("decode", "≥ 4×", "3.1×", False),
            Target("memory", "growth < 20%", "failed", None),
        ]
    )
    text = render_text([table, verdicts], header="machine")
    assert text.startswith("machine")
    assert "== Backfill ==" in text
    assert "pass" in text and "MISS" in text and "n/a" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("client"))
    row = next(line for line in lines if line.startswith("kaiko-liq"))
    assert len(row) == len(header) or row.endswith("90")

    md = render_markdown([table, verdicts])
    assert "### Backfill" in md
    assert "| client | wall | requests |" in md
    assert "|---|---:|---:|" in md
    assert "sequential \\| loop" in md
    assert "| 88.1 s\\* |" in md
    assert "- \\* scaled" in md


def test_settings_quick_is_smaller() -> None:
    quick, full = settings_for(quick=True), settings_for(quick=False)
    assert len(quick.assets) < len(full.assets)
    assert quick.end < full.end
    assert json.dumps(full.to_json())
    assert settings_for(quick=False, sequential_assets=0).sequential_assets == len(full.assets)
    assert json.dumps(quick.to_json())
    assert len(quick.memory_backfills) < len(full.memory_backfills)


def test_measure_steps_times_every_step_of_a_page() -> None:
    start = datetime(2025, 2, 27, tzinfo=UTC)
    pages = [Page(gzip.compress(_body(24)), "eth", start, datetime(2025, 2, 28, tzinfo=UTC))]
    steps = {r.step: r for r in measure_steps(pages, repeat=1)}
    assert {INFLATE_ZLIB, DECODE, ARROW_NESTED, "row checks (token route)"} <= set(steps)
    assert any("Parquet" in step for step in steps)
    for r in steps.values():
        assert r.pages == 1
        assert r.ms_per_page > 0


def test_the_bound_is_the_issue_scenario() -> None:
    # 5 assets x 15,888 hours at 1000 rows a page: 80 requests; at 100/s plus 100 ms.
    full = settings_for(quick=False)
    nmin = n_min(full.assets, full.start, full.end, full.interval, full.page_size)
    assert nmin == 80
    assert bound_seconds(nmin, full.rate_limit, full.latency) == pytest.approx(0.90)


_DAY0, _DAY2 = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 3, tzinfo=UTC)


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[Emulator]:
    with Emulator(seed=7) as emu:
        yield emu


def _tiny() -> Settings:
    return dataclasses.replace(
        settings_for(quick=True),
        assets=("btc",),
        start=_DAY0,
        end=_DAY2,
        rate_limit=1000.0,
        run_timeout=60.0,
        memory_backfills=(BackfillMemoryRun("1 asset x 2 days", ("btc",), _DAY0, _DAY2),),
    )


async def _fetch(base_url: str) -> list[object]:
    async with LiquidationClient("smoke", base_url=base_url, rate_limit=1000.0) as client:
        return list(await client.fetch("btc", _DAY0, _DAY2))


def test_the_backfill_command_writes_the_rows_fetch_returns(
    emulator_process: Emulator, tmp_path: Path
) -> None:
    settings = _tiny()
    url = emulator_process.base_url
    outside = run_command(
        backfill_args(settings, tmp_path / "a", url), api_key="smoke-a", timeout=60.0
    )
    assert outside.status == 0 and outside.wall > 0 and outside.process_cpu > 0
    fetched = asyncio.run(_fetch(url))
    want = summarize({"btc": [canonical_struct(r) for r in fetched]})  # type: ignore[arg-type]
    assert want.rows == 48
    assert summarize(read_backfill_rows(tmp_path / "a")).same_data(want)


def test_the_instrumented_backfill_reports_loop_cpu_requests_and_peak(
    emulator_process: Emulator,
) -> None:
    # backfill_memory runs the command through benchmarks.cli_worker (run_instrumented).
    settings = _tiny()
    [spec] = settings.memory_backfills
    result = backfill_memory(emulator_process.base_url, settings, spec)
    assert (result.rows, result.files) == (48, 1)
    inside = result.run
    assert inside.requests == 1  # 48 hours: one page
    assert inside.loop_cpu is not None and 0 < inside.loop_cpu <= inside.process_cpu
    assert inside.peak_rss_bytes is not None and inside.peak_rss_bytes > 20 * 2**20


def test_the_job_sizes_are_the_issue_s_with_their_bounds() -> None:
    full = settings_for(quick=False)
    jobs = {job.label: job for job in full.backfill_jobs}
    assert [len(j.assets) for j in jobs.values()] == [1, 5, 20]
    assert len(set(jobs["20 assets x 22 months"].assets)) == 20
    mins = {
        label: n_min(j.assets, j.start, j.end, full.interval, full.page_size)
        for label, j in jobs.items()
    }
    assert list(mins.values()) == [1, 80, 320]
    assert bound_seconds(320, full.rate_limit, full.latency) == pytest.approx(3.30)
    assert json.dumps(full.to_json()) and json.dumps(settings_for(quick=True).to_json())


def test_the_twenty_asset_emulator_serves_the_extra_assets() -> None:
    emu = Emulator(seed=7)
    emu.command = (sys.executable, "-m", "benchmarks.emulator_many")
    with emu:
        url = f"{emu.base_url}/v2/data/liquidation.v1/token/bnb"
        query = "?start_time=2025-03-01T00:00:00Z&end_time=2025-03-02T00:00:00Z&interval=1h"
        request = urllib.request.Request(url + query, headers={"X-Api-Key": "smoke"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = answer.read()
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    assert 0 < len(decode_page(body).data or []) <= 24  # a copy of eth's profile: busy
