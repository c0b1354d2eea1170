"""Optional dependencies: imported only where needed, and a clear error when missing.

pyarrow, pandas, polars and matplotlib are extras (``kaiko-liq[parquet]``, ``[pandas]``,
``[polars]``, ``[plot]``): a user who only fetches rows never pays for importing them. A
missing one raises :class:`MissingDependencyError` (also an ``ImportError``) naming the
extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from .errors import KaikoLiqError

__all__ = ["MissingDependencyError", "import_optional", "require_optional"]

_EXTRA_FOR = {"pyarrow": "parquet", "pandas": "pandas", "polars": "polars"}


class MissingDependencyError(KaikoLiqError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def import_optional(module: str, purpose: str, extra: str | None = None) -> Any:
    """Import an optional dependency, or raise :class:`MissingDependencyError` naming the
    extra that brings it; ``purpose`` says what needed the module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(module, purpose, extra) from exc


def require_optional(module: str, purpose: str, extra: str | None = None) -> None:
    """Like :func:`import_optional`, but only finds the package, without the cost of
    importing it: for a check up front of what is loaded later (in a worker thread)."""
    if importlib.util.find_spec(module.partition(".")[0]) is None:
        raise _missing(module, purpose, extra)


def _missing(module: str, purpose: str, extra: str | None) -> MissingDependencyError:
    package = module.partition(".")[0]
    extra = extra or _EXTRA_FOR[package]
    return MissingDependencyError(
        f"{purpose} needs {package}, which is not installed: pip install 'kaiko-liq[{extra}]'"
    )
