"""``python -m kaiko_liq``: the ``kaiko-liq`` command line."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
