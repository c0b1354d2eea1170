"""Local files that appear whole or not at all: the one home of temp file + fsync + rename
(outputs, the store and backfills on a local disk; :mod:`kaiko_liq.fs` for object stores)."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from .errors import InvalidArgumentError

__all__ = ["atomic_write", "fsync_directory", "output_target"]


def fsync_directory(directory: Path) -> None:
    """Make a rename durable: on POSIX the directory entry needs its own fsync."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def output_target(path: str | os.PathLike[str]) -> Path:
    """The file a write to ``path`` really replaces: a symlink's target (renaming over
    the link would replace the link itself). A device, FIFO or socket is refused: renaming
    a regular file over ``/dev/null`` (as root) would replace the device, and a reader on
    a FIFO would never see the data."""
    target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    except OSError:
        return target  # said by the write itself, naming the path
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InvalidArgumentError(
            f"cannot write {os.fspath(path)}: it is not a regular file (a device, FIFO or "
            "socket); write to a file, or use -o - for stdout"
        )
    return target


@contextmanager
def atomic_write(
    path: str | os.PathLike[str], *, sync_directory: bool = True
) -> Iterator[IO[bytes]]:
    """Open a binary file that appears at ``path`` only once it is complete.

    Writes go to ``.<name>.<pid>.<random>.tmp`` in the same directory (a leading dot, so
    pyarrow's dataset discovery and ``ls`` skip it), which is fsynced and then renamed
    over ``path``: a rename within one filesystem is atomic. On any error, or on
    cancellation, the temporary file is removed and ``path`` is left as it was. An
    ``OSError`` names ``path``, never the temporary file: that name means nothing to the
    caller, and it is gone.

    ``sync_directory=False`` leaves the directory's fsync (what makes the rename itself
    survive a power loss) to the caller, who may sync once for many files
    (:func:`fsync_directory`); the file's bytes are synced before the rename either way.
    """
    target = output_target(path)
    # The writer's pid in the name: a cleanup removes only a dead writer's leftovers.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        # open() rather than mkstemp(): mkstemp's mode 0600 would end up on the final file.
        handle = open(tmp, "xb")  # noqa: SIM115  # closed below, before the rename
    except OSError as exc:
        raise _naming(exc, target) from exc
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, target) from exc
        raise
    if sync_directory:
        fsync_directory(target.parent)


def _naming(error: OSError, target: Path) -> OSError:
    """``error`` again, about ``target``; OSError() picks the subclass from the errno."""
    return OSError(error.errno, error.strerror or str(error), os.fspath(target))
