"""The commands users run return what one plain query paged to its end returns, against
a server that sizes pages by time: the sparse asset's quiet days give empty pages that
still carry a ``next_url``, and each one must be followed (issue: trust)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from kaiko_liq.backfill import read_backfill
from kaiko_liq.emulator import SPARSE_ASSET
from kaiko_liq.models import LiquidationRow
from tests.conftest import EmulatorFactory
from tests.stores import tok, token_store
from tests.test_cli import cli
from tests.test_client_e2e import KEY, reference

START = datetime(2025, 1, 8, tzinfo=UTC)
END = datetime(2025, 7, 1, tzinfo=UTC)
WINDOW = ["--start", "2025-01-08", "--end", "2025-07-01"]
#: Time paging with an empty page after the last, and a cap that makes pages short.
SERVERS = [{"paging": "time"}, {"paging": "time", "empty_last_page": True, "page_cap": 200}]


@pytest.mark.parametrize("config", SERVERS, ids=["time", "time-capped-empty_last_page"])
async def test_cli_fetch_equals_one_query_paged_to_its_end(
    make_emulator: EmulatorFactory, tmp_path: Path, config: dict[str, object]
) -> None:
    emu = await make_emulator(api_key=KEY, **config)
    want, requests = await reference(emu.base_url, SPARSE_ASSET, START, END, "1h", "asc", 1000)
    out = tmp_path / "pepe.jsonl"
    done = await cli(
        "fetch", SPARSE_ASSET, *WINDOW, "--base-url", emu.base_url, "-o", str(out), key=KEY
    )
    assert done.code == 0, done.err
    got = [msgspec.json.decode(line, type=LiquidationRow) for line in out.read_bytes().splitlines()]
    assert got == want
    # The window has quiet stretches: some pages really were empty and still followed.
    assert len(want) < (END - START).days * 24 / 2 and requests > 1


async def test_cli_backfill_equals_one_query_paged_to_its_end(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await make_emulator(api_key=KEY, paging="time", page_cap=300)
    want, _ = await reference(emu.base_url, SPARSE_ASSET, START, END, "1h", "asc", 1000)
    out = tmp_path / "ds"
    args = ("backfill", SPARSE_ASSET, *WINDOW, "--base-url", emu.base_url, "--out", str(out))
    done = await cli(*args, key=KEY)
    assert done.code == 0, done.err
    assert token_store(out, "1h").read_rows(tok(SPARSE_ASSET), START, END) == want
    assert read_backfill(out).num_rows == len(want)
