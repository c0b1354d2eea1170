"""The benchmark runner: ``python -m benchmarks.run [--quick] [--out PATH]``.

Runs each scenario (each starts its own emulator processes), prints one table per
scenario and a pass/miss table of the targets, and writes the results as JSON and as
Markdown (same path, ``.md``). Targets are reported, never asserted: a miss does not
change the exit status; a scenario that crashes does (exit 1), after the others ran.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import backfill, decode, events, faults, memory
from .config import Settings, settings_for
from .machine import machine_info, machine_line
from .report import Outcome, Table, Target, render_markdown, render_text, targets_table

__all__ = ["SCENARIOS", "main"]

SCENARIOS: dict[str, Callable[[Settings], Outcome]] = {
    "backfill": backfill.run,
    "decode": decode.run,
    "memory": memory.run,
    "faults": faults.run,
    "events": events.run,
}

_RESULTS = Path(__file__).resolve().parent / "results"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark kaiko-liq against the emulator (run in its own process).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 assets x 6 months, fewer repeats (~1 min); writes to the temporary "
        "directory by default, never over the tracked results",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results path; the Markdown table goes next to it as .md "
        "(default: benchmarks/results/latest.json; with --quick, "
        "kaiko-liq-benchmarks/quick.json in the temporary directory)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default: all of {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--sequential-assets",
        type=int,
        default=None,
        help="assets the sequential loop is measured on, the rest scaled linearly "
        "(default: 1 in the full run, all with --quick; 0 = all)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="skip the warm-up pass that fills the emulator's data cache before each "
        "measured client (then the emulator's data generation is part of the time)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    settings = settings_for(
        quick=args.quick, sequential_assets=args.sequential_assets, warm_up=not args.cold
    )
    # A smoke run's numbers are not the published ones: kept out of the tracked results.
    quick_out = Path(tempfile.gettempdir()) / "kaiko-liq-benchmarks" / "quick.json"
    out: Path = args.out or (quick_out if args.quick else _RESULTS / "latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    info = machine_info()
    tables: list[Table] = []
    targets: list[Target] = []
    scenarios: dict[str, object] = {}
    failed = False
    started = time.perf_counter()
    for name in only:
        print(f"[{name}] running ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            outcome = SCENARIOS[name](settings)
        except Exception as exc:
            failed = True
            print(traceback.format_exc(), file=sys.stderr)
            error = f"{type(exc).__name__}: {exc}"
            scenarios[name] = {"error": error}
            table = Table(name.capitalize(), ("error",))
            table.add(error.splitlines()[0][:200])
            tables.append(table)
            targets.append(Target(name, "scenario ran", "failed", None))
            continue
        took = time.perf_counter() - t0
        print(f"[{name}] done in {took:.1f} s", file=sys.stderr, flush=True)
        scenarios[name] = {**outcome.data, "scenario_wall_s": round(took, 2)}
        tables += outcome.tables
        targets += outcome.targets
    tables.append(targets_table(targets))
    total = time.perf_counter() - started

    header = f"kaiko-liq benchmarks{' (--quick)' if args.quick else ''}: {machine_line(info)}"
    if args.quick:
        header += "\n--quick: small windows, one run each; the targets are judged on the full run."
    print(render_text(tables, header=header))
    print(f"total {total:.0f} s; results in {out} and {out.with_suffix('.md')}")

    out.parent.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": info,
        "settings": settings.to_json(),
        "scenarios": scenarios,
        "targets": [t.to_json() for t in targets],
        "total_wall_s": round(total, 1),
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    md_header = (
        f"Measured with `python -m benchmarks.run{' --quick' if args.quick else ''}` "
        f"on {machine_line(info)}."
    )
    out.with_suffix(".md").write_text(render_markdown(tables, header=md_header), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
