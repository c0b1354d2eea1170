"""``python -m kaiko_liq.emulator``: serve the emulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse

from .command import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kaiko_liq.emulator",
        description="Serve an emulator of Kaiko's token-level liquidation endpoint "
        "(synthetic data). Prints its base URL as the first line on stdout.",
    )
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
