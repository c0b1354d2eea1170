"""The README's library example runs as printed, against the built-in emulator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_library_example_runs_and_prints_rows(tmp_path: Path) -> None:
    [example] = [block for block in python_blocks() if "LiquidationClient" in block]
    script = tmp_path / "example.py"
    script.write_text(example)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    count, first_time, _amount = lines[0].split(" ", 2)
    assert int(count) > 100 and first_time.startswith("2025-02-01")
    assert len(lines) == 2, "the stream example prints one row, then leaves early"
