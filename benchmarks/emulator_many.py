"""``python -m benchmarks.emulator_many [EMULATOR-OPTIONS]``: the emulator with 20 assets.

The emulator knows nine assets; the job sizes of issue 20 go up to twenty. This runs the
same emulator (``python -m kaiko_liq.emulator``'s ``main``) after adding eleven more,
each a copy of an existing asset's profile under a code of its own (its rows are drawn
from a generator seeded with that code, so they differ from the original's). Only the
benchmark does this: the emulator itself stays as the docs describe.
"""

from __future__ import annotations

import sys

__all__ = ["EXTRA_ASSETS", "main"]

#: Extra asset code -> the known asset whose profile it copies.
EXTRA_ASSETS: dict[str, str] = {
    "avax": "sol",
    "dot": "xrp",
    "bnb": "eth",
    "trx": "doge",
    "atom": "ada",
    "near": "link",
    "apt": "ltc",
    "arb": "ada",
    "op": "link",
    "sui": "sol",
    "uni": "ltc",
}


def _add_assets() -> None:
    from kaiko_liq.emulator import data

    profiles = data._PROFILES
    for code, like in EXTRA_ASSETS.items():
        profiles.setdefault(code, profiles[like])
    assets = tuple(profiles)
    # Modules that imported ``ASSETS`` by name hold the old tuple: replace it everywhere.
    for name, module in list(sys.modules.items()):
        if name.startswith("kaiko_liq.emulator") and isinstance(
            getattr(module, "ASSETS", None), tuple
        ):
            module.ASSETS = assets  # type: ignore[attr-defined]


def main() -> int:
    import kaiko_liq.emulator.app  # noqa: F401  (imports ASSETS by name; patched below)
    from kaiko_liq.emulator.__main__ import main as emulator_main

    _add_assets()
    return emulator_main()


if __name__ == "__main__":
    raise SystemExit(main())
