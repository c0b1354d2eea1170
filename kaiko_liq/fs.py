"""Where stored bytes live: a local directory or an S3 prefix, behind one small interface.

A store (cache or dataset) names its files by keys relative to a root (``"eth/2026-01.parquet"``)
and calls :class:`Storage`; :func:`open_storage` picks the implementation from the location::

    storage = open_storage("s3://lake/kaiko", storage_options={"endpoint_url": "http://..."})
    storage.check()                           # no bucket, access denied, unreachable: one error
    with storage.lock(".lock"):               # one writer at a time
        storage.write_atomic("eth/a.parquet", body)   # whole, or not at all
        [e.key for e in storage.list("eth/")]

Both implementations keep the same promises:

- :meth:`~Storage.write_atomic` makes a key appear whole or not at all. Locally: a dot-named
  temporary file in the same directory, fsynced, then ``os.replace``. On S3: the complete body
  in ONE ``PutObject`` (Content-Length and a checksum, so a body cut short is refused by the
  server), never renamed, so a failed upload leaves no object and no reader ever sees half of
  one. pyarrow's output stream is not used for this: it uploads what was written even when the
  writer fails (apache/arrow#40502) and uses multipart uploads by default.
- :meth:`~Storage.lock` is exclusive across processes. Locally ``flock`` on a lock file (gone
  with the process). On S3 a lock object created with ``If-None-Match: *``, holding an owner
  token; it expires ``ttl`` seconds after its last write, judged on the server's clock (its
  ``Date`` against the object's ``Last-Modified``), and an expired one is taken over with
  ``If-Match`` on its ETag, so two takers cannot both win. A server that ignores or refuses
  conditional writes still has a second writer detected: the lock is read back after it is
  written, and :meth:`WriterLock.refresh` / release check that it is still ours.
- Failures of single operations are ``OSError`` subclasses naming the key's URL
  (``FileNotFoundError`` for a missing key, ``PermissionError`` for access denied), as the
  local filesystem raises them, so a store handles both alike. :meth:`~Storage.check` says up
  front, as one :class:`StorageUnavailableError`, why a location cannot be used.

S3 settings come the way the ecosystem has them: the standard AWS environment
(``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_PROFILE`` and
``~/.aws/config``) read by botocore, overridden by ``storage_options`` (names as polars and
fsspec spell them, see :data:`STORAGE_OPTIONS`). Credentials are registered with
:func:`~kaiko_liq.errors.register_secret`, so no :class:`~kaiko_liq.errors.KaikoLiqError`
message carries them, and no repr shows them.

S3 operations go through botocore (the ``s3`` extra): it sends one PUT per object, has
conditional writes and typed errors. :meth:`Storage.arrow` hands pyarrow a filesystem and a
path for its Parquet and dataset readers. Nothing heavy is imported until it is used.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import secrets
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from .errors import InvalidArgumentError, KaikoLiqError, register_secret

__all__ = [
    "DEFAULT_LOCK_TTL",
    "STORAGE_OPTIONS",
    "Entry",
    "LocalStorage",
    "S3Settings",
    "S3Storage",
    "Storage",
    "StorageError",
    "StorageLockedError",
    "StorageUnavailableError",
    "WriterLock",
    "is_remote",
    "open_storage",
]

logger = logging.getLogger(__name__)

#: Seconds an S3 lock object stays valid after its last write; a holder calls
#: :meth:`WriterLock.refresh` more often than this. A run killed with its lock held blocks
#: the next one for at most this long.
DEFAULT_LOCK_TTL = 600.0

#: ``storage_options`` names (as polars / object_store and fsspec / s3fs spell them) and the
#: :class:`S3Settings` field each sets.
STORAGE_OPTIONS: Mapping[str, str] = {
    "endpoint_url": "endpoint_url",
    "aws_endpoint_url": "endpoint_url",
    "region": "region",
    "region_name": "region",
    "aws_region": "region",
    "profile": "profile",
    "aws_profile": "profile",
    "key": "access_key_id",
    "aws_access_key_id": "access_key_id",
    "secret": "secret_access_key",
    "aws_secret_access_key": "secret_access_key",
    "token": "session_token",
    "aws_session_token": "session_token",
    "max_attempts": "max_attempts",
    "connect_timeout": "connect_timeout",
    "lock_ttl": "lock_ttl",
}
_REMOTE_SCHEMES = ("s3://", "s3a://")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_DENIED = {
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "InvalidToken",
    "ExpiredToken",
}


class StorageError(KaikoLiqError):
    """The storage refused: disk full, read-only, missing, permission denied, a file where
    a directory should be, an object store that failed. ``location`` is what was being
    touched (a path or an ``s3://`` URL, as given: never credentials), ``reason`` the
    system's words, ``errno`` its number. A backfill adds what it had saved by then:
    ``written``, the shards this run wrote, and ``saved``, a sentence saying where they
    are (``None`` when nothing was written); both are ``None`` when a store alone raises
    it, and then nothing was fetched for it: the CLI exits 2."""

    def __init__(
        self,
        location: str | os.PathLike[str],
        reason: str,
        *,
        doing: str = "write",
        errno: int | None = None,
        saved: str | None = None,
        written: int | None = None,
    ) -> None:
        self.location = location if isinstance(location, str) else os.fspath(location)
        self.reason = reason
        self.doing = doing
        self.errno = errno
        self.saved = saved
        self.written = written
        tail = f"; {saved}" if saved else "; nothing fetched was saved" if written == 0 else ""
        super().__init__(f"cannot {doing} {self.location}: {reason}{tail}")

    @classmethod
    def from_os_error(
        cls, exc: OSError, location: str | os.PathLike[str], *, doing: str = "write"
    ) -> StorageError:
        """``exc`` (which names the file or object it hit, else ``location``) as one error."""
        where = exc.filename if isinstance(exc.filename, str) else location
        return StorageError(where, exc.strerror or str(exc), doing=doing, errno=exc.errno)

    def with_saved(self, saved: str | None, written: int) -> StorageError:
        """The same failure, saying what had been saved before it."""
        again = StorageError(
            self.location,
            self.reason,
            doing=self.doing,
            errno=self.errno,
            saved=saved,
            written=written,
        )
        again.__cause__ = self.__cause__
        return again


class StorageUnavailableError(StorageError):
    """A location cannot be used at all: no bucket, access denied, endpoint unreachable, no
    credentials, a file where a directory should be. Raised by :meth:`Storage.check` before
    anything is fetched; ``location`` is the URL (no credentials), ``reason`` what was wrong,
    ``hint`` what would be right."""

    def __init__(self, location: str, reason: str, hint: str) -> None:
        self.hint = hint
        super().__init__(location, f"{reason}; {hint}", doing="use")
        self.reason = reason


class StorageLockedError(StorageError):
    """Another writer holds (or took over) a location's lock; ``holder`` says who."""

    def __init__(self, location: str, holder: str, *, lost: bool = False) -> None:
        self.holder = holder
        self.lost = lost
        super().__init__(location, holder, doing="lock")
        if lost:
            text = (
                f"the lock on {location} was taken over by {holder} while this run held it: "
                "a second writer ran; run one writer at a time, then run again to heal"
            )
        else:
            text = (
                f"another writer holds {location} ({holder}); wait for it or use another location"
            )
        KaikoLiqError.__init__(self, text)


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored object: its key relative to the root, its size in bytes, and a version
    that changes whenever it is rewritten (an ETag; locally mtime and inode)."""

    key: str
    size: int
    version: str = field(default="", compare=False)
    #: When it was last written (seconds since the epoch), where the storage says.
    modified: float | None = field(default=None, compare=False)


def is_remote(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` names an object store (``s3://``) rather than a local path."""
    return isinstance(location, str) and location.lower().startswith(_REMOTE_SCHEMES)


def open_storage(
    location: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> Storage:
    """The :class:`Storage` rooted at ``location``: a local directory, or ``s3://bucket/prefix``.

    ``storage_options`` apply to object stores only (see :data:`STORAGE_OPTIONS`); given with
    a local path they are refused, as is any other URL scheme. Nothing is contacted here:
    call :meth:`Storage.check` for that.
    """
    if not is_remote(location):
        text = os.fspath(location)
        if "://" in text:
            raise InvalidArgumentError(
                f"cannot store at {text!r}: only local paths and s3://bucket/prefix are supported"
            )
        if storage_options:
            raise InvalidArgumentError(
                "storage_options apply to s3:// locations only; "
                f"{text!r} is a local path: drop them"
            )
        return LocalStorage(Path(text))
    assert isinstance(location, str)
    bucket, _, prefix = location.split("://", 1)[1].partition("/")
    if not bucket:
        raise InvalidArgumentError(
            f"cannot store at {location!r}: no bucket; write s3://bucket or s3://bucket/prefix"
        )
    return S3Storage(bucket, prefix.strip("/"), S3Settings.from_options(storage_options or {}))


class Storage(ABC):
    """A root where keys (``/``-separated names relative to it) are stored.

    Every operation on one key raises an ``OSError`` subclass naming :meth:`url_of` the key
    when the storage refuses (``FileNotFoundError`` for a key that is not there).
    """

    #: The root, for messages: a path or ``s3://bucket/prefix`` (never credentials).
    url: str

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`StorageUnavailableError` if this location cannot be used at all
        (created where it is missing, for a local directory)."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The whole of ``key``; ``FileNotFoundError`` if it is not there."""

    def open_read(self, key: str) -> BinaryIO:
        """``key`` as a seekable binary file, for a reader that needs only part of it (a
        Parquet footer); ``FileNotFoundError`` if it is not there. The whole object, read
        at once, unless the storage can do better (a local file is opened as it is)."""
        return io.BytesIO(self.read_bytes(key))

    @abstractmethod
    def write_atomic(
        self, key: str, data: bytes | bytearray | memoryview, *, durable: bool = True
    ) -> None:
        """Store ``data`` at ``key``, replacing it: visible whole or not at all.

        ``durable=False`` leaves the key's folder entry to :meth:`sync_folders` (one sync
        per folder for a batch of writes, on a local disk): the bytes themselves are
        synced before the key appears either way, so a crash leaves the old state or the
        whole new file, but a key written so may be lost with power until its folder is
        synced."""

    def sync_folders(self, folders: Iterable[str]) -> None:
        """Make the entries of keys written with ``durable=False`` under ``folders``
        (``"asset=btc"``; ``""`` for the root) survive a power loss. Nothing to do where
        a write is durable when it returns (an object store)."""
        del folders

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[Entry]:
        """Every stored key under ``prefix`` (a string prefix of keys: ``"eth/"`` for a
        folder), at any depth, sorted, with sizes."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; one that is not there is no error."""

    @abstractmethod
    def move_aside(self, key: str, to: str) -> bool:
        """Move ``key`` to ``to`` (a quarantine name); ``False`` if ``key`` had gone already."""

    def lock(
        self, key: str = ".lock", *, ttl: float | None = None, wait: float = 0.0
    ) -> WriterLock:
        """Take the writer lock ``key``: at once, or within ``wait`` seconds of trying;
        else raise :class:`StorageLockedError` saying who holds it. ``ttl`` (S3 only; the
        location's ``lock_ttl`` for ``None``) is how long the lock outlives a holder that
        stops refreshing it. Use it as a context manager, which releases it."""
        deadline = time.monotonic() + wait
        pause = 0.01
        while True:
            try:
                return self._take_lock(key, ttl)
            except StorageLockedError:
                if time.monotonic() + pause > deadline:
                    raise
            # In a worker thread, waiting on another process: no event loop to yield to.
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    @abstractmethod
    def _take_lock(self, key: str, ttl: float | None) -> WriterLock:
        """The lock ``key`` now, or :class:`StorageLockedError`."""

    @abstractmethod
    def arrow(self, key: str = "") -> tuple[Any, str]:
        """A ``pyarrow.fs.FileSystem`` and the path of ``key`` (the root for ``""``) on it,
        for pyarrow's Parquet and dataset readers."""

    @abstractmethod
    def url_of(self, key: str) -> str:
        """``key`` as a path or URL, for messages."""


class WriterLock(ABC):
    """A held writer lock: a context manager that releases it."""

    #: Seconds between :meth:`refresh` calls that keep it (``None``: it never expires).
    refresh_every: float | None = None
    #: What changed under the lock when it was taken (a writer's last :meth:`mark` and the
    #: folder's state): the same stamp at two takings says nobody changed the folder in
    #: between, so a holder may trust what it saw then. ``None``: not known (look again).
    stamp: str | None = None

    def mark(self) -> None:
        """Say that this holder changed the folder the lock guards (a new :attr:`stamp`,
        which every other holder will see differs from the one it remembers)."""
        self.stamp = None  # a lock that cannot say: every holder looks again

    @abstractmethod
    def refresh(self) -> None:
        """Prove the lock is still ours (and extend its expiry, where it has one); raise
        :class:`StorageLockedError` (``lost=True``) if a second writer took it."""

    @abstractmethod
    def release(self) -> None:
        """Give the lock up; raise :class:`StorageLockedError` (``lost=True``) if a second
        writer had taken it meanwhile. Releasing twice is no error."""

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _check_key(key: str) -> str:
    parts = key.split("/")
    if key.startswith("/") or any(p in (".", "..") for p in parts) or "" in parts[:-1]:
        raise InvalidArgumentError(
            f"storage key {key!r} must be a relative name like 'eth/2026-01.parquet'"
        )
    return key


# --- local ------------------------------------------------------------------------------------


class LocalStorage(Storage):
    """A local directory. Writes are a fsynced temporary file renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = os.fspath(root)

    def __repr__(self) -> str:
        return f"LocalStorage({self.url!r})"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key) if key else self.root

    def url_of(self, key: str) -> str:
        return os.fspath(self._path(key))

    def check(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StorageUnavailableError(
                self.url, "it exists and is not a directory", "give a directory"
            )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailableError(
                self.url, exc.strerror or str(exc), "give a directory you can create"
            ) from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageUnavailableError(
                self.url, "the directory is not writable", "give a directory you can write"
            )

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def open_read(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")  # the caller closes it

    def write_atomic(
        self, key: str, data: bytes | bytearray | memoryview, *, durable: bool = True
    ) -> None:
        from .atomic import atomic_write  # the one home of the local temp+fsync+rename

        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, sync_directory=durable) as handle:
            handle.write(data)

    def sync_folders(self, folders: Iterable[str]) -> None:
        from .atomic import fsync_directory

        for folder in sorted(set(folders)):
            fsync_directory(self._path(folder))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[Entry]:
        # Walk only the folder the prefix names; its last part filters names.
        folder, _, _ = prefix.rpartition("/")
        base = self._path(folder)
        found: list[Entry] = []
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    with suppress(FileNotFoundError):  # removed meanwhile: not there
                        st = os.stat(os.path.join(dirpath, name))
                        found.append(
                            Entry(key, st.st_size, f"{st.st_mtime_ns}:{st.st_ino}", st.st_mtime)
                        )
        return sorted(found, key=lambda e: e.key)

    def delete(self, key: str) -> None:
        with suppress(FileNotFoundError):
            self._path(key).unlink()

    def move_aside(self, key: str, to: str) -> bool:
        target = self._path(to)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self._path(key), target)
        except FileNotFoundError:
            return False
        return True

    def _take_lock(self, key: str, ttl: float | None) -> WriterLock:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return _FlockLock(path)

    def arrow(self, key: str = "") -> tuple[Any, str]:
        from .optional import import_optional

        pafs = import_optional("pyarrow.fs", "reading a store with pyarrow", extra="parquet")
        return pafs.LocalFileSystem(), os.fspath(self._path(key).absolute())


class _FlockLock(WriterLock):
    """``flock`` on a lock file: held until released or the process ends (even by kill -9).

    The file holds the last :meth:`mark`'s token (fixed length, overwritten in place: a
    truncate would make ext4 flush the file), part of :attr:`stamp`."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            import fcntl
        except ImportError:  # not POSIX: run unlocked rather than not at all
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise StorageLockedError(os.fspath(path), "another process on this machine") from None
        # The folder's mtime moves too when a writer that never marks (an older version)
        # renames a file in.
        self.stamp = self._stamp(os.pread(self._fd, _TOKEN_BYTES, 0))

    def _stamp(self, token: bytes) -> str:
        st = os.stat(self._path.parent)
        return f"{token.hex()}:{st.st_mtime_ns}:{st.st_ino}"

    def mark(self) -> None:
        if self.stamp is None or self._fd is None:
            return  # not locked (not POSIX): nothing to trust anyway
        token = secrets.token_bytes(_TOKEN_BYTES)
        os.pwrite(self._fd, token, 0)
        self.stamp = self._stamp(token)

    def refresh(self) -> None:
        """Nothing to do: a flock does not expire."""

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the flock


#: The length of a lock file's token.
_TOKEN_BYTES = 16


# --- S3 ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class S3Settings:
    """What :func:`open_storage` was told about an S3 endpoint; ``None`` leaves a value to the
    AWS environment (botocore's lookup: variables, profile, config files). Credentials never
    show in the repr."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    #: Attempts per request (botocore's "standard" retry mode), and seconds to connect.
    max_attempts: int = 3
    connect_timeout: float = 10.0
    #: Seconds a lock object outlives a holder that stops refreshing it (a killed run).
    lock_ttl: float = DEFAULT_LOCK_TTL

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> S3Settings:
        """Settings from ``storage_options``; an unknown name is refused, listing the known."""
        values: dict[str, Any] = {}
        for name, value in options.items():
            target = STORAGE_OPTIONS.get(name.lower())
            if target is None:
                raise InvalidArgumentError(
                    f"unknown storage option {name!r}; known: {', '.join(sorted(STORAGE_OPTIONS))}"
                )
            values[target] = value
        for name in ("access_key_id", "secret_access_key", "session_token"):
            register_secret(values.get(name))
        try:
            return cls(**values)
        except TypeError as exc:  # pragma: no cover - every field has a default
            raise InvalidArgumentError(str(exc)) from None


class S3Storage(Storage):
    """Keys under ``s3://bucket/prefix``, through botocore (the ``s3`` extra)."""

    def __init__(self, bucket: str, prefix: str, settings: S3Settings) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.settings = settings
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._client_: Any = None
        self._session: Any = None

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r}, endpoint={self.settings.endpoint_url!r})"

    # -- plumbing

    @property
    def _client(self) -> Any:
        if self._client_ is None:
            self._client_ = self._make_client()
        return self._client_

    def _make_client(self) -> Any:
        from .optional import import_optional

        session_mod = import_optional("botocore.session", "storing on s3://", extra="s3")
        config_mod = import_optional("botocore.config", "storing on s3://", extra="s3")
        exceptions = import_optional("botocore.exceptions", "storing on s3://", extra="s3")
        s = self.settings
        session = session_mod.Session(profile=s.profile)
        # Each new session would parse the S3 service model again (~0.25 s): share the
        # loader, not the session (a session caches credentials, which may change).
        session.register_component("data_loader", _shared_loader())
        try:
            region = s.region or session.get_config_variable("region") or "us-east-1"
            client = session.create_client(
                "s3",
                region_name=region,
                endpoint_url=s.endpoint_url,
                aws_access_key_id=s.access_key_id,
                aws_secret_access_key=s.secret_access_key,
                aws_session_token=s.session_token,
                config=config_mod.Config(
                    # total_max_attempts counts the first request; max_attempts would not.
                    retries={"mode": "standard", "total_max_attempts": s.max_attempts},
                    connect_timeout=s.connect_timeout,
                ),
            )
        except exceptions.ProfileNotFound:
            raise StorageUnavailableError(
                self.url,
                f"no AWS profile {s.profile or os.environ.get('AWS_PROFILE')!r}",
                "name a profile from ~/.aws/config, or unset AWS_PROFILE",
            ) from None
        self._session = session
        credentials = session.get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            for secret in (frozen.access_key, frozen.secret_key, frozen.token):
                register_secret(secret)
        return client

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to (for messages)."""
        return str(self._client.meta.endpoint_url)

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix and key else self.prefix or key

    def url_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _os_error(self, exc: Exception, key: str) -> OSError:
        """A botocore failure as the ``OSError`` a local filesystem would raise."""
        url = self.url_of(key)
        code = _code(exc)
        if code == "NoSuchBucket":
            return FileNotFoundError(errno.ENOENT, f"no bucket {self.bucket!r}", url)
        if code in _NOT_FOUND:
            return FileNotFoundError(errno.ENOENT, "no such object", url)
        if code in _DENIED:
            return PermissionError(errno.EACCES, f"access denied ({code})", url)
        if code is not None:
            return OSError(errno.EIO, f"{code}: {_message(exc)}", url)
        if _is_unreachable(exc):
            return ConnectionRefusedError(
                errno.ECONNREFUSED, f"endpoint {self.endpoint} unreachable", url
            )
        if _is_connection_error(exc):
            return ConnectionResetError(
                errno.ECONNRESET, f"connection to {self.endpoint} broke ({type(exc).__name__})", url
            )
        return OSError(errno.EIO, f"{type(exc).__name__}: {exc}", url)

    @contextmanager
    def _calling(self, key: str) -> Iterator[None]:
        from .optional import import_optional

        exceptions = import_optional("botocore.exceptions", "storing on s3://", extra="s3")
        try:
            yield
        except (exceptions.BotoCoreError, exceptions.ClientError) as exc:
            raise self._os_error(exc, key) from None

    # -- the interface

    def check(self) -> None:
        from .optional import import_optional

        exceptions = import_optional("botocore.exceptions", "storing on s3://", extra="s3")
        client = self._client
        where = f"at {self.endpoint}"
        try:
            client.head_bucket(Bucket=self.bucket)
        except exceptions.NoCredentialsError:
            raise StorageUnavailableError(
                self.url,
                "no AWS credentials found",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
                "or pass them in storage_options",
            ) from None
        except exceptions.ClientError as exc:
            code = _code(exc)
            if code in ("404", "NoSuchBucket"):
                raise StorageUnavailableError(
                    self.url,
                    f"no bucket {self.bucket!r} {where}",
                    "create it, or check the bucket name and AWS_ENDPOINT_URL",
                ) from None
            if code in _DENIED:
                raise StorageUnavailableError(
                    self.url,
                    f"access denied to bucket {self.bucket!r} {where}",
                    "check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                    "AWS_PROFILE or storage_options) and the bucket's policy",
                ) from None
            if code in ("301", "PermanentRedirect"):
                region = _header(exc, "x-amz-bucket-region") or "its own region"
                raise StorageUnavailableError(
                    self.url,
                    f"bucket {self.bucket!r} is in {region}",
                    f"set AWS_REGION={region} or storage_options region",
                ) from None
            raise StorageUnavailableError(
                self.url, f"{code} {where}: {_message(exc)}", "check the bucket and endpoint"
            ) from None
        except exceptions.BotoCoreError as exc:
            if _is_unreachable(exc):
                raise StorageUnavailableError(
                    self.url,
                    f"endpoint {self.endpoint} unreachable",
                    "check AWS_ENDPOINT_URL (or storage_options endpoint_url) and the network",
                ) from None
            raise StorageUnavailableError(
                self.url, f"{type(exc).__name__}: {exc}", "check the S3 settings"
            ) from None

    def read_bytes(self, key: str) -> bytes:
        with self._calling(key):
            answer = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            # StreamingBody checks Content-Length: a body cut short raises, never returns.
            return bytes(answer["Body"].read())

    def write_atomic(
        self, key: str, data: bytes | bytearray | memoryview, *, durable: bool = True
    ) -> None:
        # One PutObject with the whole body: S3 stores it whole or not at all.
        with self._calling(key):
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=bytes(data))

    def exists(self, key: str) -> bool:
        try:
            with self._calling(key):
                self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except FileNotFoundError as exc:
            if exc.strerror == "no such object":
                return False
            raise
        return True

    def list(self, prefix: str = "") -> list[Entry]:
        root = f"{self.prefix}/" if self.prefix else ""
        found: list[Entry] = []
        with self._calling(prefix):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=root + prefix
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    found.append(
                        Entry(
                            item["Key"][len(root) :],
                            int(item["Size"]),
                            str(item["ETag"]),
                            item["LastModified"].timestamp(),
                        )
                    )
        return sorted(found, key=lambda e: e.key)

    def delete(self, key: str) -> None:
        with self._calling(key):  # S3 answers 204 for a key that is not there
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def move_aside(self, key: str, to: str) -> bool:
        # S3 has no rename: a server-side copy (whole at once), then the original deleted.
        try:
            with self._calling(key):
                self._client.copy_object(
                    Bucket=self.bucket,
                    Key=self._key(to),
                    CopySource={"Bucket": self.bucket, "Key": self._key(key)},
                )
        except FileNotFoundError as exc:
            if exc.strerror == "no such object":
                return False
            raise
        self.delete(key)
        return True

    def _take_lock(self, key: str, ttl: float | None) -> WriterLock:
        return _S3Lock(self, key, self.settings.lock_ttl if ttl is None else ttl)

    def arrow(self, key: str = "") -> tuple[Any, str]:
        from .optional import import_optional

        pafs = import_optional("pyarrow.fs", "reading a store with pyarrow", extra="parquet")
        client = self._client
        # What botocore resolved (options, environment or profile), so both clients agree.
        s = self.settings
        credentials = self._session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
        if s.access_key_id and s.secret_access_key:
            frozen = _Frozen(s.access_key_id, s.secret_access_key, s.session_token)
        options: dict[str, Any] = {"region": client.meta.region_name}
        if frozen is not None:
            options.update(
                access_key=frozen.access_key,
                secret_key=frozen.secret_key,
                session_token=frozen.token,
            )
        else:
            options["anonymous"] = True
        endpoint = urlsplit(client.meta.endpoint_url)
        if not (endpoint.hostname or "").endswith("amazonaws.com"):
            options.update(endpoint_override=endpoint.netloc, scheme=endpoint.scheme)
        path = f"{self.bucket}/{self._key(key)}".rstrip("/")
        return pafs.S3FileSystem(**options), path


@dataclass(frozen=True, slots=True)
class _Frozen:
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    token: str | None = field(repr=False)


class _S3Lock(WriterLock):
    """A lock object: created with ``If-None-Match: *``, rewritten and deleted with
    ``If-Match`` on our own ETag, so whoever else writes it is noticed."""

    def __init__(self, storage: S3Storage, key: str, ttl: float) -> None:
        self._storage = storage
        self._key = key
        self._ttl = ttl
        self.refresh_every = max(ttl / 3, 0.05)
        self._token = secrets.token_hex(8)
        self._etag: str | None = None
        self._body = json.dumps(
            {"owner": self._token, "host": socket.gethostname(), "pid": os.getpid(), "ttl": ttl}
        ).encode()
        self._acquire()

    @property
    def _where(self) -> str:
        return self._storage.url_of(self._key)

    def _put(self, **condition: str) -> str | None:
        """PUT our lock body with ``condition``; its ETag, or ``None`` if the condition
        failed (412). A server that does not implement the condition answers 501."""
        s = self._storage
        try:
            answer = s._client.put_object(
                Bucket=s.bucket, Key=s._key(self._key), Body=self._body, **condition
            )
        except _botocore_errors() as exc:
            code = _code(exc)
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return None
            if code == "NotImplemented" and condition:
                raise _NoConditions from None
            raise s._os_error(exc, self._key) from None
        return str(answer["ETag"])

    def _holder(self) -> tuple[str, str | None, bool]:
        """Who holds the lock, its ETag, and whether it has expired (on the server's clock)."""
        s = self._storage
        try:
            answer = s._client.get_object(Bucket=s.bucket, Key=s._key(self._key))
            raw = answer["Body"].read()
        except _botocore_errors() as exc:
            if _code(exc) in _NOT_FOUND:
                return "nobody", None, True
            raise s._os_error(exc, self._key) from None
        try:
            body = json.loads(raw)
            who = f"{body['host']} pid {body['pid']}"
            owner, ttl = str(body["owner"]), float(body["ttl"])
        except (ValueError, KeyError, TypeError):
            who, owner, ttl = "an unreadable lock object", "", self._ttl
        if owner == self._token:
            who = "this run"
        server_now = _server_time(answer)
        modified: datetime = answer["LastModified"]
        age = (server_now - modified).total_seconds() if server_now else 0.0
        expired = age > ttl
        if not expired:
            who += f", for {max(0.0, ttl - age):.0f} s more unless refreshed"
        return who, str(answer["ETag"]), expired

    def _acquire(self) -> None:
        etag = self._conditional_put(IfNoneMatch="*")
        if etag is None:
            who, stale, expired = self._holder()
            if not expired:
                raise StorageLockedError(self._where, who)
            logger.warning("%s: taking over the expired lock of %s", self._where, who)
            # If-Match on the stale ETag: of two runs taking it over, one wins.
            etag = self._conditional_put(IfMatch=stale) if stale else self._put_checked()
            if etag is None:
                raise StorageLockedError(self._where, self._holder()[0])
        self._etag = etag

    def _conditional_put(self, **condition: str) -> str | None:
        try:
            return self._put(**condition)
        except _NoConditions:
            pass
        # The server has no conditional writes: write, then read back to detect a race.
        return self._put_checked()

    def _put_checked(self) -> str | None:
        etag = self._put()
        who, now_etag, _expired = self._holder()
        return etag if who == "this run" or now_etag == etag else None

    def refresh(self) -> None:
        if self._etag is None:
            raise StorageLockedError(self._where, "nobody: it was released", lost=True)
        etag = self._conditional_put(IfMatch=self._etag)
        if etag is None:
            self._etag = None
            raise StorageLockedError(self._where, self._holder()[0], lost=True)
        self._etag = etag

    def release(self) -> None:
        if self._etag is None:
            return
        etag, self._etag = self._etag, None
        s = self._storage
        try:
            s._client.delete_object(Bucket=s.bucket, Key=s._key(self._key), IfMatch=etag)
        except _botocore_errors() as exc:
            code = _code(exc)
            if code in ("PreconditionFailed", "412"):
                raise StorageLockedError(self._where, self._holder()[0], lost=True) from None
            if code in _NOT_FOUND:
                raise StorageLockedError(self._where, "nobody: it was deleted", lost=True) from None
            if code != "NotImplemented":
                raise s._os_error(exc, self._key) from None
            who, _, _ = self._holder()  # no conditional delete: check, then delete
            if who != "this run":
                raise StorageLockedError(self._where, who, lost=True) from None
            s.delete(self._key)


_loader: Any = None
_loader_guard = threading.Lock()


def _shared_loader() -> Any:
    global _loader
    with _loader_guard:
        if _loader is None:
            from botocore.loaders import create_loader

            _loader = create_loader()
        return _loader


class _NoConditions(Exception):
    """The server answered 501 to a conditional write: it has none."""


def _botocore_errors() -> tuple[type[Exception], ...]:
    from botocore import exceptions

    return (exceptions.BotoCoreError, exceptions.ClientError)


def _code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


def _header(exc: BaseException, name: str) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    value = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get(name)
    return str(value) if value else None


def _server_time(answer: Mapping[str, Any]) -> datetime | None:
    """The server's clock, from the ``Date`` header of its answer."""
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not date:
        return None
    with suppress(TypeError, ValueError):
        return parsedate_to_datetime(date)
    return None


def _is_unreachable(exc: BaseException) -> bool:
    from botocore import exceptions

    return isinstance(exc, exceptions.EndpointConnectionError | exceptions.ConnectTimeoutError)


def _is_connection_error(exc: BaseException) -> bool:
    from botocore import exceptions

    return isinstance(
        exc,
        exceptions.EndpointConnectionError
        | exceptions.ConnectTimeoutError
        | exceptions.ReadTimeoutError
        | exceptions.ConnectionClosedError,
    )
