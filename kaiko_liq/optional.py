"""TEMP until w18t lands."""

from .export import MissingDependencyError, import_optional, require_optional

__all__ = ["MissingDependencyError", "import_optional", "require_optional"]
