"""Where the API key comes from: the one function the library and the CLI both call.

Sources, first found wins: the ``api_key`` argument, then a key file, then the
``KAIKO_API_KEY`` environment variable. Whatever the source, surrounding whitespace (so a
file's trailing newline, or a pasted space) is dropped the same way, and the key must
then be printable ASCII without spaces, what an HTTP header carries unchanged.

A key file is read as UTF-8 with or without a byte order mark, or as UTF-16 with one
(Windows Notepad's "Unicode"). Every error is one line that names the source and never
shows the contents: a file given by mistake may hold the key itself, or something else
secret.

Example::

    key = resolve_api_key(key_file="~/.kaiko-key")  # or the argument, or $KAIKO_API_KEY
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Mapping
from pathlib import Path

from .errors import InvalidArgumentError

__all__ = ["API_KEY_ENV", "resolve_api_key"]

API_KEY_ENV = "KAIKO_API_KEY"
#: Printable ASCII without spaces: what a header value can carry unchanged.
_KEY_RE = re.compile(r"[\x21-\x7e]+")
#: A key is a few dozen characters; a bigger file is not a key file.
_MAX_FILE_BYTES = 64 * 1024
#: How messages call each source; the CLI passes its flag names instead.
_DEFAULT_NAMES = {"argument": "api_key", "file": "key_file", "environment": API_KEY_ENV}


def resolve_api_key(
    api_key: str | None = None,
    *,
    key_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    required: bool = True,
    source_names: Mapping[str, str] | None = None,
) -> str | None:
    """The API key from the argument, else ``key_file``, else ``$KAIKO_API_KEY``.

    Args:
        api_key: the key itself.
        key_file: a file holding the key (``~`` is expanded).
        environ: where to look up ``KAIKO_API_KEY`` (default ``os.environ``). Set but
            blank counts as not set.
        required: raise when no source has a key; otherwise return ``None``.
        source_names: how messages call the sources, by ``"argument"``, ``"file"`` and
            ``"environment"`` (defaults ``api_key``, ``key_file``, ``KAIKO_API_KEY``). A
            source left out of a given mapping is not offered in the "no API key" hint:
            the CLI has no argument source.

    Raises:
        InvalidArgumentError: an empty or unreadable source, a key with characters a
            header cannot carry, or (``required``) no key at all; one line, no contents.
    """
    names = _DEFAULT_NAMES if source_names is None else dict(source_names)
    argument = names.get("argument", _DEFAULT_NAMES["argument"])
    file_name = names.get("file", _DEFAULT_NAMES["file"])
    env_name = names.get("environment", _DEFAULT_NAMES["environment"])
    if api_key is not None:
        if not isinstance(api_key, str):
            raise InvalidArgumentError(f"{argument} must be a string, got {type(api_key).__name__}")
        return _checked(api_key.strip(), argument)
    if key_file is not None:
        path = Path(key_file).expanduser()
        # A key passed where its file's path belongs is the classic slip: a value that
        # names no existing file and has no path separator is not shown.
        looks_like_a_path = os.sep in os.fspath(key_file) or path.exists()
        shown = f"{file_name} {path}" if looks_like_a_path else f"{file_name} (value not shown)"
        return _checked(_read_key_file(path, shown), shown)
    env = os.environ if environ is None else environ
    raw = env.get(API_KEY_ENV)
    if raw is not None and raw.strip():
        return _checked(raw.strip(), f"${env_name}")
    if not required:
        return None
    ways = [f"pass {names[k]}" for k in ("argument", "file") if k in names]
    ways.append(f"set {env_name}")
    blank = f" (${env_name} is set but empty)" if raw is not None else ""
    raise InvalidArgumentError(f"no API key; {', or '.join(ways)}{blank}")


def _checked(key: str, source: str) -> str:
    if not key:
        raise InvalidArgumentError(f"{source} is empty; it must hold your Kaiko API key")
    if _KEY_RE.fullmatch(key) is None:
        # The key itself is never shown: not even a bad one belongs in a message.
        raise InvalidArgumentError(
            f"the key from {source} has characters an HTTP header cannot carry (spaces "
            "inside it, control characters or non-ASCII); a key is one line of letters, "
            "digits and punctuation"
        )
    return key


def _read_key_file(path: Path, shown: str) -> str:
    try:
        with path.open("rb") as stream:
            data = stream.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read {shown}: {exc.strerror or exc}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise InvalidArgumentError(
            f"{shown} is larger than {_MAX_FILE_BYTES // 1024} KiB; it should hold only the key"
        )
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16").strip()
        return data.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        # from None: the exception's repr carries the undecodable bytes.
        raise InvalidArgumentError(
            f"{shown} is not text in UTF-8 (with or without a BOM) or UTF-16 with a BOM; "
            "save it as UTF-8"
        ) from None
