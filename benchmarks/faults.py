"""Scenario 4, faults: the kaiko-liq fetch with injected faults against none.

Two emulator processes with the same seed (so the same data): one healthy, one that
fails ``fault_rate`` of its answers (``--fault-rate``: 5xx, 429s, cut bodies, as the
emulator chooses). Same assets, window, latency and key limit as the backfill. The
rows must be identical, and the wall time at most 1.5x the fault-free run's.
"""

from __future__ import annotations

from .backfill import run_kaiko_liq
from .config import Settings
from .report import Outcome, Table, Target, fmt_int, fmt_ratio, fmt_seconds

__all__ = ["run"]


def run(settings: Settings) -> Outcome:
    clean = run_kaiko_liq(settings, label="no faults").run
    faulty_result = run_kaiko_liq(
        settings, fault_rate=settings.fault_rate, label=f"fault rate {settings.fault_rate:g}"
    )
    faulty, faulty_ordered = faulty_result.run, faulty_result.descending
    same = clean.rowset.same_data(faulty.rowset) and faulty_ordered
    ratio = faulty.wall / clean.wall
    table = Table(
        "Faults (kaiko-liq fetch)",
        (
            "emulator",
            "wall",
            "requests",
            "retries",
            "429s",
            "rows",
            "checksum",
            "vs no faults",
            "client CPU",
            "emulator CPU",
        ),
    )
    for r in (clean, faulty):
        table.add(
            r.client,
            fmt_seconds(r.wall),
            fmt_int(r.requests),
            fmt_int(r.retries),
            fmt_int(r.rate_limited),
            fmt_int(r.rowset.rows),
            r.rowset.checksum[:12],
            fmt_ratio(r.wall / clean.wall),
            f"{r.client_cpu_share:.0%}",
            f"{r.emulator_cpu_share:.0%}",
        )
    table.notes.append(
        f"the same fetch as in the backfill scenario ({len(settings.assets)} assets); "
        f"separate emulator processes, "
        f"seed {settings.seed}; median of {len(clean.walls)} run(s) each; "
        f"rows identical: {'yes' if same else 'NO'}."
    )
    if clean.emulator_cpu_share * clean.wall > max(1.0, 0.5 * clean.wall):
        table.notes.append(
            "WARNING: the emulator's CPU set the fault-free time, and a slow server hides "
            "retry delays (a retried request waits while the server is busy anyway); the "
            "ratio is a lower bound on what a fast server would show."
        )
    return Outcome(
        data={
            "fault_rate": settings.fault_rate,
            "no_faults": clean.to_json(),
            "faults": faulty.to_json(),
            "same_rows": same,
            "wall_ratio": round(ratio, 3),
        },
        tables=[table],
        targets=[
            Target("faults", "rows identical with faults", "yes" if same else "NO", same),
            Target(
                "faults",
                "wall ≤ 1.5× fault-free",
                f"{faulty.wall:.2f} s vs {clean.wall:.2f} s = {ratio:.2f}×",
                ratio <= 1.5,
            ),
        ],
    )
