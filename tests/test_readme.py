"""Every Python block of the README runs as printed, each in a fresh directory.

The library's examples (sync, async, cache, follow) are checked on what they print; a
block that reads a backfill directory gets a small one made first (what it reads is
checked in detail by tests/test_reading.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

#: Made before a block that reads ``liq`` (a backfill directory), as its comment says.
_BACKFILL = """
import asyncio
from kaiko_liq import LiquidationClient
from kaiko_liq.backfill import backfill
from kaiko_liq.emulator import running_emulator

async def main():
    async with running_emulator() as emu, LiquidationClient(base_url=emu.base_url) as c:
        await backfill(c, ["btc", "eth"], "2025-02-01", "2025-02-06", "liq")

asyncio.run(main())
"""


def python_blocks() -> list[tuple[str, str]]:
    """(the heading it sits under, the code) for each python block, in order."""
    blocks: list[tuple[str, str]] = []
    heading = ""
    for match in re.finditer(
        r"^(#{2,4} [^\n]*)$|^```python\n(.*?)^```", README.read_text(), re.S | re.M
    ):
        if match.group(1):
            heading = match.group(1).lstrip("# ").strip()
        else:
            blocks.append((heading, match.group(2)))
    return blocks


def run(
    code: str, cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> list[str]:
    """Run a block as a script would (``__main__``, in ``cwd``), in this process: the
    imports and the emulator's generated data are shared, which keeps this fast."""
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("KAIKO_API_KEY", raising=False)
    capsys.readouterr()
    exec(compile(code, str(README), "exec"), {"__name__": "__main__"})
    return capsys.readouterr().out.splitlines()


BLOCKS = python_blocks()


def test_the_library_section_opens_with_the_sync_one_liner() -> None:
    library = [code for heading, code in BLOCKS if heading == "The library"]
    assert len(library) == 4, "sync, async, cache, follow"
    assert "kaiko_liq.fetch_frame(" in library[0] and "emulator=True" in library[0]
    assert "async def" not in library[0]
    assert "LiquidationClient" in library[1] and "cache_dir=" in library[2]
    assert ".follow(" in library[3]


@pytest.mark.parametrize(
    ("heading", "code"), BLOCKS, ids=[f"{i}-{h}" for i, (h, _) in enumerate(BLOCKS)]
)
def test_every_python_block_runs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    heading: str,
    code: str,
) -> None:
    if 'DIR = "liq"' in code:
        run(_BACKFILL, tmp_path, monkeypatch, capsys)
    lines = run(code, tmp_path, monkeypatch, capsys)
    if "kaiko_liq.fetch_frame(" in code and heading == "The library":
        # The frame's per-asset sums, then the sync fetch's count and first (newest) time.
        assert lines[0].split() == ["asset"]
        assert [line.split()[0] for line in lines[1:3]] == ["btc", "eth"]
        count, first = lines[-1].split(" ", 1)
        assert count == "6" and first.startswith("2025-02-01 20:00:00")
    elif "client.stream(" in code:
        count, first_time, _amount = lines[0].split(" ", 2)
        assert int(count) > 100 and first_time.startswith("2025-02-01")
        assert lines[1].startswith("{'btc': ") and "'sol': " in lines[1]
        assert "'exchange'" in lines[2]
        assert len(lines) == 4, "the stream example prints one row, then leaves early"
    elif "cache_dir=" in code:
        first, again, wider = (line.split() for line in lines)
        assert first == ["first:", "10", "requests"]  # 4,416 hours each: five pages
        assert again == ["again:", "2", "requests"]  # the recheck: one page per asset
        assert wider == ["wider:", "3", "requests"]  # 1,248 new hours, and the recheck
    elif ".follow(" in code:
        assert len(lines) >= 2 and lines[-1].startswith("resume with since = ")
