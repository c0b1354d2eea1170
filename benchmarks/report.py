"""Result tables: plain text for the terminal, Markdown for the README.

Pure formatting, no measuring: every scenario hands back :class:`Table` objects and
:class:`Target` verdicts, and this module lays them out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "Outcome",
    "Table",
    "Target",
    "fmt_bytes",
    "fmt_int",
    "fmt_rate",
    "fmt_ratio",
    "fmt_seconds",
    "render_markdown",
    "render_text",
    "targets_table",
]


@dataclass(slots=True)
class Table:
    """A titled grid of already-formatted cells, with footnotes."""

    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.headers)} columns")
        self.rows.append(tuple(str(c) for c in cells))


@dataclass(frozen=True, slots=True)
class Target:
    """One published target: what it asks, what was measured, and whether it held.

    ``ok`` is ``None`` when the scenario could not measure it (it failed or was skipped).
    """

    scenario: str
    goal: str
    measured: str
    ok: bool | None

    @property
    def verdict(self) -> str:
        return "n/a" if self.ok is None else ("pass" if self.ok else "MISS")

    def to_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "goal": self.goal,
            "measured": self.measured,
            "ok": self.ok,
        }


@dataclass(slots=True)
class Outcome:
    """What a scenario hands back: JSON-able data, tables to print, targets to judge."""

    data: dict[str, object]
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)


def targets_table(targets: Sequence[Target]) -> Table:
    table = Table("Targets", ("scenario", "target", "measured", "verdict"))
    for t in targets:
        table.add(t.scenario, t.goal, t.measured, t.verdict)
    return table


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    if seconds < 10:
        return f"{seconds:.2f} s"
    return f"{seconds:.1f} s"


def fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def fmt_ratio(x: float | None, suffix: str = "×") -> str:
    if x is None or math.isnan(x) or math.isinf(x):
        return "-"
    if x >= 100:
        return f"{x:.0f}{suffix}"
    return f"{x:.2f}{suffix}"


def fmt_rate(per_second: float | None, unit: str) -> str:
    if per_second is None:
        return "-"
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f} M{unit}/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f} k{unit}/s"
    return f"{per_second:.1f} {unit}/s"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.1f} MiB"


def _is_numeric(cell: str) -> bool:
    head = cell.lstrip("~≈<>≤≥+-").strip()
    return bool(head) and (head[0].isdigit() or head.startswith("."))


def _line(cells: Sequence[str], widths: Sequence[int], right: Sequence[bool]) -> str:
    parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
    return "  ".join(parts).rstrip()


def render_text(tables: Sequence[Table], header: str = "") -> str:
    """Aligned columns; numeric columns right-aligned."""
    out: list[str] = []
    if header:
        out += [header, ""]
    for table in tables:
        widths = [len(h) for h in table.headers]
        for row in table.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        right = [
            bool(table.rows) and all(_is_numeric(r[i]) or r[i] == "-" for r in table.rows)
            for i in range(len(table.headers))
        ]
        out.append(f"== {table.title} ==")
        out.append(_line(table.headers, widths, right))
        out.append("  ".join("-" * w for w in widths))
        out += [_line(row, widths, right) for row in table.rows]
        out += [f"  * {note}" for note in table.notes]
        out.append("")
    return "\n".join(out)


def _md_cell(cell: str) -> str:
    return cell.replace("|", "\\|").replace("*", "\\*")


def render_markdown(tables: Sequence[Table], header: str = "") -> str:
    """GitHub-flavoured Markdown tables, one ``###`` section each."""
    out: list[str] = []
    if header:
        out += [header, ""]
    for table in tables:
        right = [
            bool(table.rows) and all(_is_numeric(r[i]) or r[i] == "-" for r in table.rows)
            for i in range(len(table.headers))
        ]
        out.append(f"### {table.title}")
        out.append("")
        out.append("| " + " | ".join(_md_cell(h) for h in table.headers) + " |")
        out.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
        if table.notes:
            out.append("")
            out += [f"- {_md_cell(note)}" for note in table.notes]
        out.append("")
    return "\n".join(out)
