"""The README's "Reading the data" lines, run as written against a real backfill: every
reader sees every row once, skips the manifest, the lock, temporary and moved-aside files,
and agrees with what the client fetches."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import polars as pl
import pytest

from kaiko_liq.backfill import backfill, read_backfill
from kaiko_liq.client import LiquidationClient
from kaiko_liq.emulator import RunningEmulator
from kaiko_liq.export import to_arrow, to_pandas, to_polars
from kaiko_liq.models import LiquidationRow

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "2025-02-01", "2025-02-06"
ASSETS = ("btc", "eth")


def readme_block() -> str:
    """The Python block of the README's "### Reading the data" section."""
    text = README.read_text()
    section = text[text.index("### Reading the data") :]
    after = re.search(r"\n##+ ", section[1:])  # the next heading ends the section
    section = section if after is None else section[: after.start() + 1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in 'Reading the data'"
    return match.group(1)


@pytest.fixture
async def dataset(
    emulator: RunningEmulator, tmp_path: Path
) -> tuple[Path, dict[str, list[LiquidationRow]]]:
    out = tmp_path / "liq"
    async with LiquidationClient(base_url=emulator.base_url, page_size=48) as client:
        await backfill(client, list(ASSETS), START, END, out)
        want = {a: await client.fetch(a, START, END, sort="asc") for a in ASSETS}
    await anyio.to_thread.run_sync(leave_litter, out)
    return out, want


def leave_litter(out: Path) -> None:
    """What a directory can hold besides data, all of which readers must skip."""
    part = out / "asset=btc"
    (part / ".20250201T000000Z_20250203T000000Z.parquet.0a1b2c.tmp").write_bytes(b"PAR1 half")
    (part / ".20250203T000000Z_20250205T000000Z.parquet.damaged-abc123").write_bytes(b"junk")
    assert (out / "_manifest.json").exists() and (out / ".lock").exists()


def run_block(directory: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(directory.parent)
    space: dict[str, Any] = {}
    exec(compile(readme_block(), str(README), "exec"), space)
    return space


async def test_every_reading_line_in_the_readme_reads_the_backfill(
    dataset: tuple[Path, dict[str, list[LiquidationRow]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, want = dataset
    got = await anyio.to_thread.run_sync(run_block, out, monkeypatch)
    rows = sum(len(r) for r in want.values())
    exchange_rows = sum(len(row.exchanges) for r in want.values() for row in r)

    totals = to_arrow(want)
    assert got["totals"].equals(totals)
    frame = got["totals_pd"].assign(asset=lambda f: f["asset"].astype(str))
    frame = frame.sort_values(["asset", "interval_time"]).reset_index(drop=True)
    expected = to_pandas(want).sort_values(["asset", "interval_time"]).reset_index(drop=True)
    assert frame[list(expected.columns)].equals(expected)
    assert (
        got["totals_pl"]
        .sort("asset", "interval_time")
        .select(to_polars(want).columns)
        .equals(to_polars(want))
    )
    assert got["totals_ds"].num_rows == rows
    daily = got["daily"]
    assert daily.height == len(ASSETS) * 5  # five days each
    assert daily["usd"].sum() == pytest.approx(
        sum(r.total_amount for v in want.values() for r in v)
    )

    long = to_arrow(want, shape="exchanges")
    assert got["by_exchange"].equals(long)
    by_pl = got["by_exchange_pl"]
    assert by_pl.height == exchange_rows
    assert by_pl.sort("asset", "interval_time", maintain_order=True).equals(
        to_polars(want, shape="exchanges")
    )
    by_db = got["by_exchange_db"]
    assert len(by_db) == exchange_rows
    assert list(by_db.columns) == list(long.column_names)
    assert by_db["total_amount"].tolist() == long.column("total_amount").to_pylist()
    # UTC, as the README says: zoned in pandas, and days cut at midnight UTC.
    assert str(by_db["interval_time"].dt.tz) in ("UTC", "Etc/UTC")
    assert by_db["interval_time"].tolist() == long.column("interval_time").to_pylist()
    assert str(daily.schema["day"].time_zone) in ("UTC", "Etc/UTC")
    assert all(t.hour == 0 and t.tzinfo is not None for t in daily["day"].to_list())


async def test_polars_on_the_bare_directory_fails_as_the_readme_says(
    dataset: tuple[Path, dict[str, list[LiquidationRow]]],
) -> None:
    """The README explains the glob by this failure; if polars learns to skip the
    manifest, this says the README can offer the bare directory instead."""
    out, _ = dataset
    with pytest.raises(pl.exceptions.InvalidOperationError, match="different file extensions"):
        pl.scan_parquet(out).collect()


async def test_a_numeric_looking_asset_stays_a_string(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    out = tmp_path / "liq"
    (out / "asset=1000").mkdir(parents=True)
    import pyarrow.parquet as pq

    from kaiko_liq.export import arrow_schema

    pq.write_table(
        arrow_schema("nested", asset=False).empty_table(), out / "asset=1000" / "x.parquet"
    )
    lf = pl.scan_parquet(f"{out}/*/*.parquet", hive_schema={"asset": pl.String})
    assert lf.collect_schema()["asset"] == pl.String
    assert read_backfill(out).schema.field("asset").type == "string"


def test_routes_are_found_by_the_name_a_manifest_records() -> None:
    from kaiko_liq.errors import InvalidArgumentError
    from kaiko_liq.routes import all_routes, route_named
    from kaiko_liq.routes.events import EVENTS
    from kaiko_liq.routes.token import TOKEN

    routes = all_routes()
    assert routes["token"] is TOKEN and routes["events"] is EVENTS
    for name, route in routes.items():
        # A reader imports kaiko_liq.routes.<name> to find a route it has not seen yet.
        assert type(route).__module__ == f"kaiko_liq.routes.{name}"
        assert route_named(name) is route
    with pytest.raises(InvalidArgumentError, match="route 'nope' is not one of events, token"):
        route_named("nope")
