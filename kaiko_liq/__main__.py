"""``python -m kaiko_liq``: the ``kaiko-liq`` command line."""

from .cli import _entry

if __name__ == "__main__":
    _entry()
