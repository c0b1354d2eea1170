"""The ``kaiko-liq`` command line: a thin shell over the library.

::

    kaiko-liq fetch ASSET [ASSET ...] --start ISO --end ISO [-o PATH|-] [--cache DIR] ...
    kaiko-liq backfill ASSET [ASSET ...] --start ISO --end ISO --out DIR ...
    kaiko-liq plot ASSET [ASSET ...] --start ISO --end ISO -o CHART.png|.svg ...
    kaiko-liq emulator [--port N] [--latency S] ...

``fetch`` is :meth:`LiquidationClient.fetch_many` written to one file set (see
:mod:`kaiko_liq.export`); ``backfill`` is :func:`kaiko_liq.backfill.backfill`; ``plot``
is ``fetch_many`` drawn by :mod:`kaiko_liq.plot`. The API key is resolved by
:func:`kaiko_liq.keys.resolve_api_key` from ``--api-key-file`` or ``KAIKO_API_KEY``,
never from a flag's value: flags end up in shell history and ``ps`` output. So that no
value can leak either, the parsers take no abbreviations (``--api`` is not
``--api-key-file``), an unknown flag is named without its value, and every message has
any argument that looks like a key hidden before it is printed.

Every failure is one line on stderr, ``kaiko-liq: error: ...``, never a traceback
(``--debug`` adds it). Exit codes: 0 done; 1 the fetch or the writing failed, or a
backfill is incomplete (what was saved stays saved); 2 a bad argument or setup, nothing
fetched; 130 interrupted (Ctrl-C), with a line saying what was kept.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import functools
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio

from .backfill import (
    AssetOnDisk,
    BackfillIncompleteError,
    BackfillProgress,
    BackfillSummary,
    backfill_targets,
    describe_backfill,
)
from .client import LiquidationClient
from .engine import Request as EngineRequest
from .errors import (
    MIN_SECRET_CHARS,
    InvalidArgumentError,
    KaikoLiqError,
    NotFoundError,
    redact,
)
from .fs import StorageError, StorageLockedError, StorageUnavailableError, is_remote
from .keys import resolve_api_key
from .models import LiquidationEvent, LiquidationRow
from .optional import MissingDependencyError, import_optional
from .outputs import (
    FORMATS,
    STDOUT,
    Format,
    check_output_location,
    check_writable,
    format_for_path,
    write_files,
    write_stdout,
)
from .plan import SubRange, buckets_in
from .progress import (
    ProgressLine,
    backfill_line,
    draw_until_cancelled,
    empty_reason,
    fetch_line,
    plural,
)
from .query import (
    SORTS,
    Request,
    format_time,
    parse_rate_limit,
    parse_time,
    validate_max_concurrency,
    validate_page_size,
    validate_request,
    validate_window,
)
from .routes import Route
from .routes.events import EVENTS, Instrument, parse_instrument_spec
from .routes.token import TOKEN, Token

if TYPE_CHECKING:
    from .tables import TableSpec

__all__ = ["main"]

PROG = "kaiko-liq"
_KEY_ENV = "KAIKO_API_KEY"
_EXIT_FAILED = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
_EXIT_TERMINATED = 143  # 128 + SIGTERM
#: How long _entry waits for threads still ending before it exits without teardown.
_THREAD_GRACE = 0.5
# What a key could look like: a long run of letters, digits and a few symbols with at
# least one digit. Dates (colons), ordinary words and short values stay readable; values
# with a "/" are paths (the key never is one) and are shown as they are.
_KEY_LIKE = re.compile(r"[A-Za-z0-9_\-+=~]{16,}")

T = TypeVar("T")


class _UsageError(Exception):
    """A bad command line; printed as one line, exit 2."""


class _Exit(Exception):
    """A failure already worded for the user, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --- keeping values out of messages ------------------------------------------------------------


def _secrets_in(argv: Sequence[str]) -> list[str]:
    """Every run of text on the command line (or in $KAIKO_API_KEY) that could be a key,
    longest first, for :func:`~kaiko_liq.errors.redact` to hide from messages."""
    found: set[str] = set()
    for arg in argv:
        value = arg.partition("=")[2] if arg.startswith("-") else arg
        if "/" not in value:
            found.update(
                m.group() for m in _KEY_LIKE.finditer(value) if any(c.isdigit() for c in m.group())
            )
    env = os.environ.get(_KEY_ENV, "").strip()
    if len(env) >= MIN_SECRET_CHARS:  # as errors.redact does for the keys it knows
        found.add(env)
    return sorted(found, key=len, reverse=True)


def _hide(text: str, secrets: Iterable[str]) -> str:
    """``text`` without the command line's key-like values. Not errors.redact: the
    library's messages are redacted already, and its ``key: value`` rule would blank
    words out of argparse's prose ("argument --api-key: api_key must be ...")."""
    for secret in secrets:
        # Any case: an asset (and so a key typed as one) is shown lower-cased.
        text = re.sub(re.escape(secret), "***", text, flags=re.IGNORECASE)
    return text


def _unrecognized(extras: Sequence[str], argv: Sequence[str]) -> str:
    """Name unknown flags without their values (as ``gh`` does); never show a stray
    positional argument at all: it may be a key that lost its flag."""
    flags = [_flag_name(arg) for arg in extras if arg.startswith("-") and arg != "-"]
    if flags:
        unique = list(dict.fromkeys(flags))
        message = f"unknown flag{'s' if len(unique) > 1 else ''}: {', '.join(unique)}"
        if any("key" in f or "token" in f for f in unique):
            message += (
                f" (the API key is never a flag's value: export {_KEY_ENV}=... or pass "
                "--api-key-file PATH)"
            )
        return message
    position = next((i for i, arg in enumerate(argv, 1) if arg == extras[0]), None)
    where = f" (argument {position})" if position is not None else ""
    return (
        f"unexpected argument{where}, not shown in case it is a secret; asset codes go "
        "together, right after the command"
    )


def _flag_name(arg: str) -> str:
    if arg.startswith("--"):
        return arg.partition("=")[0]
    return arg[:2]  # -kVALUE: the letter, not what is glued to it


class _Parser(argparse.ArgumentParser):
    """argparse without abbreviations, whose errors are one line (no usage dump) raised
    to main(), and which names unknown flags without their values."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        argv = list(sys.argv[1:] if args is None else args)
        parsed, extras = self.parse_known_args(argv, namespace)
        if extras:
            raise _UsageError(f"{_unrecognized(extras, argv)} (see '{self.prog} --help')")
        return parsed


# --- the command line ---------------------------------------------------------------------


def _max_concurrency(text: str) -> int:
    """``--max-concurrency``: the client's own check, on the flag's integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    try:
        return validate_max_concurrency(value, "max_concurrency")
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common_options() -> _Parser:
    parent = _Parser(add_help=False)
    parent.add_argument(
        "--debug",
        action="store_true",
        help="on an error, also print its traceback (keys redacted), for a bug report",
    )
    return parent


def _quiet_option() -> _Parser:
    """Not a connection setting: its own parent, shared by fetch, backfill and plot."""
    parent = _Parser(add_help=False)
    parent.add_argument(
        "--quiet", "-q", action="store_true", help="no progress line and no summary"
    )
    return parent


def _connection_options() -> _Parser:
    """Where to fetch from and how hard; shared by fetch, backfill and plot."""
    parent = _Parser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--emulator",
        action="store_true",
        help="fetch SYNTHETIC data from the built-in emulator (no key, no network)",
    )
    group.add_argument("--base-url", help="another origin, e.g. an emulator you started")
    group.add_argument(
        "--region", choices=("us", "eu"), default="us", help="Kaiko region (default: us)"
    )
    group.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help=f"read the API key from this file (default: ${_KEY_ENV})",
    )
    group.add_argument(
        "--rate-limit",
        metavar="R",
        help="requests per second, or 6000/min, 100/s (default: 6000/min, Kaiko's standard)",
    )
    group.add_argument(
        "--max-concurrency",
        type=_max_concurrency,
        metavar="N",
        help="requests in flight (default: 16)",
    )
    return parent


def _window_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("assets", nargs="+", metavar="ASSET", help="asset codes, e.g. eth btc")
    parser.add_argument("--start", required=True, help="ISO 8601, inclusive (UTC if no offset)")
    parser.add_argument("--end", required=True, help="ISO 8601, exclusive (UTC if no offset)")
    parser.add_argument(
        "--interval", default="1h", help="bucket width, 1h to 24h or 1d (default: 1h)"
    )
    parser.add_argument(
        "--page-size", type=int, metavar="N", help="rows per request, 1 to 1000 (default: 1000)"
    )


def _directory(text: str) -> str:
    """A directory argument, a local path or an ``s3://bucket/prefix`` location (kept as
    text: a ``Path`` would fold ``s3://`` into ``s3:/``); '' is refused (it would mean
    the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a directory, not ''")
    return text


def _settle_options(parser: argparse.ArgumentParser, row: str = "bucket") -> None:
    parser.add_argument(
        "--settle",
        metavar="DURATION",
        help=f"a {row} is final this long after it ends, e.g. 90m (default: 1h)",
    )
    parser.add_argument(
        "--recheck",
        metavar="DURATION",
        help=f"fetch again this far back from the newest stored {row}; 0: off (default: 24h)",
    )


def _cache_option(parser: argparse.ArgumentParser, row: str = "bucket") -> None:
    parser.add_argument(
        "--cache",
        type=_directory,
        metavar="DIR",
        help=f"keep settled {row}s in DIR and fetch only what it lacks",
    )
    _settle_options(parser, row)


class _VersionAction(argparse.Action):
    """``--version``: the installed version, looked up only when asked (importing
    importlib.metadata costs every other command ~50 ms)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> NoReturn:
        from . import __version__

        print(f"{PROG} {__version__}")
        parser.exit()


def _run_emulator(args: argparse.Namespace) -> int:
    from .emulator.command import run

    return run(args, prog=PROG)


def _build_parser(arguments: Sequence[str]) -> _Parser:
    """The parser of ``arguments``: the emulator's options (and its import, ~0.1 s) only
    when they name the ``emulator`` command, the first argument that is not a flag."""
    parser = _Parser(
        prog=PROG,
        description="Kaiko liquidation volumes and events: fetch, backfill, events, plot, emulate.",
        epilog=f"The API key is read from ${_KEY_ENV} or --api-key-file.",
    )
    parser.add_argument("--version", action=_VersionAction, help="show the version and exit")
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)  # see main()
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common_options(), _quiet_option(), _connection_options()]

    fetch = commands.add_parser(
        "fetch",
        parents=common,
        help="fetch a window into one file set, or stdout",
        description=(
            "Fetch every bucket of [start, end) for each asset. With -o PATH, CSV and "
            "Parquet write the totals to PATH and the per-exchange breakdown beside it "
            "(out.csv and out.exchanges.csv); JSON Lines keeps both in one file; a .gz "
            "ending compresses CSV and JSON Lines. Without -o, or with -o -, JSON Lines "
            "(or --format csv, totals only) goes to stdout."
        ),
    )
    _window_options(fetch)
    fetch.add_argument(
        "--sort", choices=SORTS, default="asc", help="time order of the output (default: asc)"
    )
    fetch.add_argument("-o", "--output", metavar="PATH", help="write here ('-': stdout)")
    fetch.add_argument(
        "--format", choices=FORMATS, help="default: from PATH's extension; jsonl on stdout"
    )
    _cache_option(fetch)
    fetch.set_defaults(handler=_run_fetch)

    bulk = commands.add_parser(
        "backfill",
        parents=common,
        help="fetch long ranges into a resumable Parquet dataset",
        description=(
            "Fetch [start, end) for every asset into DIR/asset=<asset>/<shard>.parquet, one "
            "file per shard, with DIR/_manifest.json recording what is done. Run the same "
            "command again to fetch only what is missing, and to repair what is damaged."
        ),
    )
    _window_options(bulk)
    bulk.add_argument(
        "--out",
        required=True,
        type=_directory,
        metavar="DIR",
        help="the dataset's directory (created if missing; a rerun resumes it)",
    )
    _settle_options(bulk)
    bulk.set_defaults(handler=_run_backfill)

    events = commands.add_parser(
        "events",
        parents=common,
        help="fetch liquidation events of instruments into a file or a dataset",
        description=(
            "Fetch every liquidation event of [start, end) for each instrument "
            "(EXCHANGE:CLASS:INSTRUMENT, e.g. binc:perpetual-future:btc-usdt; CLASS is "
            "future or perpetual-future). With -o PATH, one CSV, JSON Lines or Parquet "
            "file (a .gz ending compresses CSV and JSON Lines), or - for stdout; with "
            "--out DIR, a resumable dataset, "
            "DIR/exchange=<ex>/instrument_class=<class>/instrument=<instr>/<day>.parquet, "
            "that a rerun completes and repairs, as backfill does for volumes."
        ),
    )
    events.add_argument(
        "instruments",
        nargs="+",
        metavar="EXCHANGE:CLASS:INSTRUMENT",
        help="instruments, e.g. binc:perpetual-future:btc-usdt",
    )
    events.add_argument("--start", required=True, help="ISO 8601, inclusive (UTC if no offset)")
    events.add_argument("--end", required=True, help="ISO 8601, exclusive (UTC if no offset)")
    events.add_argument(
        "--page-size", type=int, metavar="N", help="events per request, 1 to 1000 (default: 1000)"
    )
    events.add_argument(
        "--sort", choices=SORTS, default="asc", help="time order of -o's output (default: asc)"
    )
    where = events.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", metavar="PATH", help="write one file here ('-': stdout)")
    where.add_argument(
        "--out",
        type=_directory,
        metavar="DIR",
        help="a resumable dataset's directory (created if missing; a rerun resumes it)",
    )
    events.add_argument(
        "--format", choices=FORMATS, help="with -o: default from PATH's extension; jsonl on stdout"
    )
    _cache_option(events, "event")
    events.set_defaults(handler=_run_events)

    chart = commands.add_parser(
        "plot",
        parents=common,
        help="draw a window's long and short liquidations into a PNG or SVG",
        description=(
            "Fetch [start, end) for each asset and draw one panel per asset: long and "
            "short liquidations per bucket, by exchange. The format follows -o's "
            "extension (.png or .svg). Needs matplotlib: pip install 'kaiko-liq[plot]'."
        ),
    )
    _window_options(chart)
    chart.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="FILE",
        help="the chart to write: .png or .svg (the extension picks the format)",
    )
    _cache_option(chart)
    chart.set_defaults(handler=_run_plot)

    emulator = commands.add_parser(
        "emulator",
        parents=[_common_options()],
        help="serve the built-in Kaiko emulator (synthetic data) over HTTP",
        description="Serve the built-in emulator until interrupted; prints its base URL.",
    )
    if next((a for a in arguments if not a.startswith("-")), None) == "emulator":
        from .emulator.command import add_arguments

        add_arguments(emulator)
    emulator.set_defaults(handler=_run_emulator)
    return parser


class _Termination:
    """SIGTERM (what ``timeout``, systemd, Kubernetes and cron send) handled as Ctrl-C:
    it is turned into a SIGINT, so that asyncio.run cancels the command's task and every
    ``finally`` runs (temporary files removed, manifests saved) before the one line."""

    def __init__(self) -> None:
        self.terminated = False

    def install(self) -> Callable[[], None]:
        """Install the handler; returns what restores the previous one."""
        self.terminated = False
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # signals reach the main thread only
        previous = signal.signal(signal.SIGTERM, self._on_term)

        def restore() -> None:
            signal.signal(signal.SIGTERM, previous)

        return restore

    def _on_term(self, signum: int, frame: object) -> None:
        self.terminated = True
        if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
            # SIGINT ignored (a background job of a script): no handler would raise.
            raise KeyboardInterrupt
        signal.raise_signal(signal.SIGINT)

    def word(self) -> str:
        return "terminated" if self.terminated else "interrupted"

    def code(self) -> int:
        return _EXIT_TERMINATED if self.terminated else _EXIT_INTERRUPTED


_TERM = _Termination()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Arrow's default allocator (jemalloc or mimalloc) keeps freed pages for reuse: a
    # backfill that converts a shard after another peaks ~120 MiB higher with it (see
    # README, Performance). It is read once, when pyarrow loads, hence here.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    secrets = _secrets_in(arguments)
    # Read before parsing, so that even a failure to build the parser can show its trace.
    debug = "--debug" in arguments
    library = logging.getLogger("kaiko_liq")
    library.addHandler(_WARNINGS)
    _WARNINGS.secrets = secrets
    restore = _TERM.install()
    try:
        args = _build_parser(arguments).parse_args(arguments)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except _UsageError as exc:
        return _fail(str(exc), _EXIT_USAGE, secrets)
    except SystemExit as exc:  # --help and --version exit through argparse
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else _EXIT_USAGE
    except KeyboardInterrupt:  # the commands that keep something say what themselves
        _say(_TERM.word())
        return _TERM.code()
    except BrokenPipeError:
        # The reader went away (``| head``): not an error worth a message. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return _EXIT_FAILED
    except Exception as exc:  # the last resort: one line, whatever it was
        error = _leaf(exc)
        message, code = _explain(error)
        if debug:
            trace = "".join(traceback.format_exception(exc))
            print(redact(trace, secrets), file=sys.stderr, end="")
        return _fail(message, code, secrets)
    finally:
        restore()
        library.removeHandler(_WARNINGS)
        _WARNINGS.line = None


class _WarningLines(logging.Handler):
    """The library's warnings (a damaged file moved aside, a manifest rebuilt) as
    ``kaiko-liq: warning: ...`` lines, redacted, the progress line cleared first."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.secrets: list[str] = []
        self.line: ProgressLine | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.line is not None:
            self.line.clear()
        text = _hide(redact(" ".join(record.getMessage().split())), self.secrets)
        print(f"{PROG}: warning: {text}", file=sys.stderr)


# One per process: main() attaches it to the "kaiko_liq" logger for the command's run.
_WARNINGS = _WarningLines()


def _leaf(error: BaseException) -> BaseException:
    """The error inside an ExceptionGroup a task group let out: the first that says
    something (ours, then an OSError) rather than a wall of nested tracebacks."""
    while isinstance(error, BaseExceptionGroup):
        leaves = list(_leaves(error))
        error = next(
            (e for e in leaves if isinstance(e, KaikoLiqError | _Exit)),
            next((e for e in leaves if isinstance(e, OSError)), leaves[0]),
        )
    return error


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterable[BaseException]:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


def _explain(error: BaseException) -> tuple[str, int]:
    """The one line and the exit code for an error that reached the CLI's boundary."""
    if isinstance(error, _Exit):
        return str(error), error.code
    if isinstance(error, StorageError):  # raised outside a client: see _storage_faults()
        return str(error), _EXIT_FAILED if error.saved else _EXIT_USAGE
    if isinstance(
        error,
        InvalidArgumentError
        | MissingDependencyError
        | NotFoundError
        | StorageUnavailableError
        | StorageLockedError,
    ):
        # A storage refused up front (no bucket, no access, another writer) is setup too.
        # An unknown asset is a bad argument: refused whole, nothing written.
        return str(error), _EXIT_USAGE
    if isinstance(error, KaikoLiqError):
        return str(error), _EXIT_FAILED
    if isinstance(error, OSError):  # before anything was fetched, or it would be _Exit
        return _os_error(error), _EXIT_USAGE
    return (
        f"unexpected {type(error).__name__}: {redact(str(error))} (a bug in kaiko-liq; "
        "--debug shows the traceback)",
        _EXIT_FAILED,
    )


def _fail(message: str, code: int, secrets: Iterable[str] = ()) -> int:
    text = _hide(" ".join(message.split()), secrets)
    print(f"{PROG}: error: {text}", file=sys.stderr)
    return code


def _say(message: str, *, quiet: bool = False) -> None:
    if not quiet:
        print(f"{PROG}: {message}", file=sys.stderr)


# --- filesystem faults, in words ---------------------------------------------------------------


def _os_error(error: OSError, verb: str = "cannot write") -> str:
    """``cannot write PATH: CAUSE``: the path the user named, and why, in one line."""
    if error.filename and is_remote(os.fsdecode(error.filename)):  # an s3:// URL
        return f"{verb} {os.fsdecode(error.filename)}: {error.strerror or error}"
    path = Path(os.fsdecode(error.filename)) if error.filename else None
    return f"{verb} {path}: {_cause(error, path)}" if path else f"{verb}: {error.strerror}"


def _cause(error: OSError, path: Path | None) -> str:
    if error.errno == errno.ENOENT and path is not None and not path.parent.is_dir():
        return f"directory {path.parent} does not exist"
    if error.errno == errno.ENOTDIR and path is not None:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"{blocker} is a file, not a directory"
    if error.errno == errno.EISDIR:
        return "it is a directory"
    return error.strerror or str(error)  # the system's words, as a StorageError has them


# --- shared checks and the client -------------------------------------------------------------


def _check_arguments(args: argparse.Namespace, *, sort: str | None = None) -> list[Request]:
    """Everything the client would check, checked first with the library's own checks:
    errors come before any network or emulator start-up, and name the flag. Returns one
    request per asset, in the order given, duplicates dropped."""
    _check_connection(args)
    requests: dict[str, Request] = {}
    for asset in args.assets:
        request = validate_request(
            asset,
            args.start,
            args.end,
            interval=args.interval,
            sort=sort,
            page_size=args.page_size,
            start_name="--start",
            end_name="--end",
        )
        requests.setdefault(request.asset, request)
    return list(requests.values())


def _check_connection(args: argparse.Namespace) -> None:
    no_store = getattr(args, "out", None) is None and getattr(args, "cache", False) is None
    if no_store and getattr(args, "recheck", None) is not None:
        # Nothing stored, nothing to fetch again. (--settle still says which rows of the
        # answer are not final yet.)
        raise InvalidArgumentError("--recheck goes with --cache")
    if args.emulator and args.base_url:
        raise InvalidArgumentError("--emulator and --base-url exclude each other; pick one")
    if args.rate_limit is not None:
        args.rate_limit = parse_rate_limit(args.rate_limit, "--rate-limit")


def _api_key(args: argparse.Namespace) -> str | None:
    """The key, from --api-key-file or the environment; none is needed for an emulator."""
    key = resolve_api_key(
        key_file=args.api_key_file,
        required=False,
        source_names={"file": "--api-key-file", "environment": _KEY_ENV},
    )
    if key is None and not (args.emulator or args.base_url):
        raise InvalidArgumentError(
            f"no API key found: export {_KEY_ENV}=... or pass --api-key-file PATH "
            "(or try --emulator for synthetic data)"
        )
    return key


@asynccontextmanager
async def _client(args: argparse.Namespace, key: str | None) -> AsyncIterator[LiquidationClient]:
    """The one client of a command, on Kaiko, a given origin, or an in-process emulator."""
    options: dict[str, Any] = {}
    if args.rate_limit is not None:
        options["rate_limit"] = args.rate_limit
    if args.max_concurrency is not None:
        options["max_concurrency"] = args.max_concurrency
    if args.page_size is not None:
        options["page_size"] = args.page_size
    if getattr(args, "cache", None) is not None:
        options["cache_dir"] = args.cache
    for name in ("settle", "recheck"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    if not args.emulator:
        base_url: str | None = args.base_url
        async with LiquidationClient(key, region=args.region, base_url=base_url, **options) as c:
            yield c
        return
    from .sync import builtin_emulator_client

    async with builtin_emulator_client(api_key=key, **options) as c:
        # Always said, even with --quiet: synthetic figures must never pass for Kaiko's.
        print(
            f"{PROG}: --emulator: SYNTHETIC data from the built-in emulator at "
            f"{c.base_url}, not Kaiko's",
            file=sys.stderr,
        )
        yield c


async def _with_progress(
    line: ProgressLine, render: Callable[[], str], work: Callable[[], Awaitable[T]]
) -> T:
    """Run ``work`` while redrawing the progress line; errors come out unwrapped."""
    error: Exception | KeyboardInterrupt | None = None
    result: list[T] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(draw_until_cancelled, line, render)
        try:
            result.append(await work())
        # Re-raised below, outside the group, so not wrapped in an ExceptionGroup.
        # (Cancellation is left alone: the group must see it.)
        except (Exception, KeyboardInterrupt) as exc:
            error = exc
        finally:
            tg.cancel_scope.cancel()
            line.clear()
    if error is not None:
        raise error
    return result[0]


@contextmanager
def _storage_faults(client: LiquidationClient) -> Iterator[None]:
    """A filesystem fault (a cache, a backfill directory) is exit 2 while nothing was
    fetched yet, as a bad setup is, and exit 1 once requests went out."""
    try:
        yield
    except StorageError as exc:
        started = bool(exc.saved) or client.stats.requests > 0
        raise _Exit(str(exc), _EXIT_FAILED if started else _EXIT_USAGE) from exc


def _progress_line(args: argparse.Namespace) -> ProgressLine:
    line = ProgressLine.for_stream(sys.stderr, quiet=args.quiet, prefix=f"{PROG}: ")
    _WARNINGS.line = line
    return line


# --- fetch and plot ---------------------------------------------------------------------------


def _check_output(args: argparse.Namespace, spec: TableSpec[Any]) -> tuple[str, Format]:
    """``-o``'s path (``-`` for stdout) and format, every file it names checked
    writable, before anything is fetched."""
    if args.output == "":
        raise InvalidArgumentError("-o needs a path, or - for standard output")
    output: str = STDOUT if args.output is None else args.output
    fmt = format_for_path(output, args.format)  # also refuses Parquet to stdout
    if fmt == "parquet":
        import_optional("pyarrow.parquet", "writing Parquet", extra="parquet")
    if is_remote(output):
        import_optional("botocore.session", f"writing {output}", extra="s3")
    try:
        check_output_location(output, spec, fmt)  # every file it names, or the bucket
    except OSError as exc:
        raise InvalidArgumentError(_os_error(exc)) from None
    return output, fmt


def _write_output(
    output: str, fmt: Format, spec: TableSpec[Any], rows: dict[tuple[str, ...], list[Any]]
) -> str:
    """Write fetched rows to ``-o``'s target; says where, for the summary line."""
    try:
        if output != STDOUT:
            return ", ".join(str(p) for p in write_files(output, spec, rows, fmt))
        write_stdout(spec, rows, fmt)
    except BrokenPipeError:
        raise
    except OSError as exc:  # fetched, not saved: a failure, and nothing was left behind
        raise _Exit(_os_error(exc), _EXIT_FAILED) from exc
    if fmt == "csv" and len(spec.files) > 1:
        return f"stdout ({spec.default} only; the other tables need -o PATH or jsonl)"
    return "stdout"


def _run_fetch(args: argparse.Namespace) -> int:
    requests = _check_arguments(args, sort=args.sort)
    output, fmt = _check_output(args, TOKEN.table)
    key = _api_key(args)

    started = time.monotonic()
    try:
        rows, stats = asyncio.run(_fetch(args, requests, key, sort=args.sort))
    except KeyboardInterrupt:
        _say(f"{_TERM.word()}: nothing written")
        return _TERM.code()
    # The asset column holds the codes as sent (lower case), however they were given.
    where = _write_output(output, fmt, TOKEN.table, {(a.lower(),): r for a, r in rows.items()})
    total = sum(len(r) for r in rows.values())
    _say(
        f"{plural(len(rows), 'asset')}, {plural(total, 'row')}, {plural(stats[0], 'request')}, "
        f"{plural(stats[1], 'retry', 'retries')} in {time.monotonic() - started:.1f}s to {where}",
        quiet=args.quiet,
    )
    if total == 0:
        _say(f"no rows: {empty_reason(requests[0].start, requests[0].end, _now())}")
    return 0


def _now() -> datetime:
    return datetime.now(UTC)


async def _fetch_with_progress(
    client: LiquidationClient, line: ProgressLine, reqs: Sequence[EngineRequest[Any, Any]]
) -> list[list[Any]]:
    """``client.fetch_requests`` with its shards counted for the progress line (a storage
    fault is exit 2 while nothing was fetched yet)."""
    total = sum(len(r.shards) for r in reqs)
    done = 0
    clock0 = time.monotonic()

    def count(_req: object, _shard: SubRange) -> None:
        nonlocal done
        done += 1

    def render() -> str:
        stats = client.stats
        return fetch_line(
            done=done,
            total=total,
            rows=stats.rows,
            requests=stats.requests,
            elapsed=time.monotonic() - clock0,
            retries=stats.retries,
            last_error=stats.last_error,
        )

    with _storage_faults(client):
        return await _with_progress(
            line, render, lambda: client.fetch_requests(reqs, on_shard=count)
        )


async def _fetch(
    args: argparse.Namespace, requests: list[Request], key: str | None, *, sort: str
) -> tuple[dict[str, list[LiquidationRow]], tuple[int, int]]:
    """Every asset's request under one client, with the progress line. Returns the rows
    by asset, in the order given, and the client's (requests, retries)."""
    line = _progress_line(args)
    async with _client(args, key) as client:
        reqs = [
            client.request(
                TOKEN, Token(r.asset, r.interval), r.start, r.end, sort=sort, page_size=r.page_size
            )
            for r in requests
        ]
        rows = await _fetch_with_progress(client, line, reqs)
        results = {r.target.asset: got for r, got in zip(reqs, rows, strict=True)}
        grid = requests[0].interval
        final = max(requests[0].start, client.final_before(TOKEN, reqs[0].target))
        if final < requests[0].end:
            n = buckets_in(final, requests[0].end, grid)
            _say(
                f"the last {plural(n, 'bucket')} are not final yet (they may still change)"
                if n > 1
                else "the last bucket is not final yet (it may still change)"
            )
        return results, (client.stats.requests, client.stats.retries)


def _run_plot(args: argparse.Namespace) -> int:
    requests = _check_arguments(args, sort="asc")
    output: Path = args.output
    # Everything that can refuse is asked before a request is sent: the extension,
    # matplotlib, the directory.
    from . import plot

    plot.check_chart_path(output)  # the extension, and matplotlib installed
    try:
        check_writable(output)
    except OSError as exc:
        raise InvalidArgumentError(_os_error(exc)) from None
    key = _api_key(args)
    try:
        results, _ = asyncio.run(_fetch(args, requests, key, sort="asc"))
    except KeyboardInterrupt:
        _say(f"{_TERM.word()}: nothing written")
        return _TERM.code()
    figure = plot.plot_liquidations(
        results, interval=args.interval, start=args.start, end=args.end, synthetic=args.emulator
    )
    try:
        plot.save_chart(figure, output)
    except OSError as exc:
        raise _Exit(_os_error(exc), _EXIT_FAILED) from exc
    total = sum(len(r) for r in results.values())
    _say(
        f"{plural(len(results), 'asset')}, {plural(total, 'row')} drawn to {output}",
        quiet=args.quiet,
    )
    if total == 0:
        _say(f"no rows: {empty_reason(requests[0].start, requests[0].end, _now())}")
    return 0


# --- events -----------------------------------------------------------------------------------


def _check_events_arguments(
    args: argparse.Namespace,
) -> tuple[list[Instrument], datetime, datetime]:
    """The events command's arguments, checked with the library's own checks before
    anything starts: the instruments (duplicates dropped), the window, the page size."""
    _check_connection(args)
    instruments = list(dict.fromkeys(parse_instrument_spec(spec) for spec in args.instruments))
    start, end = parse_time(args.start, "--start"), parse_time(args.end, "--end")
    validate_window(start, end, start_name="--start", end_name="--end")
    if args.page_size is not None:
        validate_page_size(args.page_size)
    return instruments, start, end


def _run_events(args: argparse.Namespace) -> int:
    instruments, start, end = _check_events_arguments(args)
    if args.out is not None:
        if args.format is not None:
            raise InvalidArgumentError("--format goes with -o; a dataset (--out) is Parquet")
        if args.cache is not None:
            raise InvalidArgumentError("--cache goes with -o; a dataset (--out) is its own store")
        return _run_events_dataset(args, instruments, start, end)
    output, fmt = _check_output(args, EVENTS.table)
    key = _api_key(args)
    started = time.monotonic()
    try:
        events, stats = asyncio.run(_events(args, instruments, start, end, key))
    except KeyboardInterrupt:
        _say(f"{_TERM.word()}: nothing written")
        return _TERM.code()
    by_key = {tuple(EVENTS.path_params(t).values()): events[str(t)] for t in instruments}
    where = _write_output(output, fmt, EVENTS.table, by_key)
    total = sum(len(e) for e in events.values())
    _say(
        f"{plural(len(events), 'instrument')}, {plural(total, 'event')}, "
        f"{plural(stats[0], 'request')}, {plural(stats[1], 'retry', 'retries')} in "
        f"{time.monotonic() - started:.1f}s to {where}",
        quiet=args.quiet,
    )
    if total == 0:
        _say(f"no events: {empty_reason(start, end, _now())}")
    return 0


async def _events(
    args: argparse.Namespace,
    instruments: list[Instrument],
    start: datetime,
    end: datetime,
    key: str | None,
) -> tuple[dict[str, list[LiquidationEvent]], tuple[int, int]]:
    """Every instrument's request under one client, days counted for the progress line."""
    line = _progress_line(args)
    async with _client(args, key) as client:
        reqs = [
            client.request(EVENTS, t, start, end, sort=args.sort, page_size=args.page_size)
            for t in instruments
        ]
        rows = await _fetch_with_progress(client, line, reqs)
        results = {str(r.target): got for r, got in zip(reqs, rows, strict=True)}
        final = client.final_before(EVENTS, instruments[0])
        if final < end:
            _say(
                f"events from {format_time(max(start, final))} on are not final yet "
                "(they may still change)"
            )
        return results, (client.stats.requests, client.stats.retries)


def _run_events_dataset(
    args: argparse.Namespace, instruments: list[Instrument], start: datetime, end: datetime
) -> int:
    from .backfill import backfill_events

    out: str = args.out
    key = _api_key(args)
    watch = _BackfillWatch(_progress_line(args), args.quiet)

    async def run(client: LiquidationClient) -> BackfillSummary:
        return await backfill_events(
            client,
            instruments,
            start,
            end,
            out,
            page_size=args.page_size,
            on_progress=watch.on_progress,
        )

    labels = [str(t) for t in instruments]
    make = functools.partial(_backfill, args, key, watch, run)
    return _finish_dataset(args, out, labels, watch, make, EVENTS)


# --- backfill ---------------------------------------------------------------------------------


class _BackfillWatch:
    """What the CLI knows of a running backfill: its latest progress, and whether it has
    said that it resumes."""

    def __init__(self, line: ProgressLine, quiet: bool) -> None:
        self.line = line
        self.quiet = quiet
        self.latest: BackfillProgress | None = None

    def on_progress(self, progress: BackfillProgress) -> None:
        if self.latest is None and progress.shards_skipped:
            self.line.clear()
            _say(
                f"resuming: {progress.shards_skipped} of {progress.shards_total} shards "
                "already on disk",
                quiet=self.quiet,
            )
        self.latest = progress


#: Extensions that say "a file" where ``backfill --out`` wants a directory.
_FILE_SUFFIXES = (".csv", ".parquet", ".jsonl", ".json", ".pq")


def _run_backfill(args: argparse.Namespace) -> int:
    requests = _check_arguments(args)
    assets = [r.asset for r in requests]
    out: str = args.out
    suffix = PurePosixPath(out).suffix.lower()
    if suffix in _FILE_SUFFIXES and (is_remote(out) or not Path(out).is_dir()):
        raise InvalidArgumentError(
            f"--out {out} looks like a file, but a backfill writes a directory of Parquet "
            f"files; name a directory (--out {out[: -len(suffix)]}), or write one file with "
            f"fetch ... -o {out}"
        )
    key = _api_key(args)
    watch = _BackfillWatch(_progress_line(args), args.quiet)

    async def run(client: LiquidationClient) -> BackfillSummary:
        return await backfill_targets(
            client,
            TOKEN,
            [Token(r.asset, r.interval) for r in requests],
            requests[0].start,
            requests[0].end,
            out,
            page_size=args.page_size,
            on_progress=watch.on_progress,
        )

    return _finish_dataset(
        args, out, assets, watch, functools.partial(_backfill, args, key, watch, run), TOKEN
    )


def _finish_dataset(
    args: argparse.Namespace,
    out: str,
    names: list[str],
    watch: _BackfillWatch,
    make: Callable[[], Awaitable[BackfillSummary]],
    route: Route[Any, Any],
) -> int:
    """Run a dataset command (``backfill``, ``events --out``) and say how it ended: what
    was saved when interrupted, the summary and what is on disk when done."""
    try:
        summary = asyncio.run(_awaited(make))
    except KeyboardInterrupt:
        p = watch.latest
        saved = (
            "nothing new saved"
            if p is None
            else f"{p.shards_done} of {p.shards_total} shards saved"
        )
        _say(f"{_TERM.word()}: {saved} in {out}; run the same command to resume")
        return _TERM.code()
    except BackfillIncompleteError as exc:
        if not args.quiet:
            _print_disk_table(out, names, route)
        return _fail(str(exc), _EXIT_FAILED)
    if not args.quiet:
        _say(f"backfill done: {summary}")
        _print_disk_table(out, names, route)
    elif summary.deferred is not None:
        _say(summary.deferred)  # said even then: part of what was asked for is not on disk
    if summary.reason_empty is not None:
        _say(f"no rows: {summary.reason_empty}")
    return 0


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def _print_disk_table(out: str, names: list[str], route: Route[Any, Any]) -> None:
    described = describe_backfill(out, assets=names, route=route)
    for row in _disk_table(described, route.noun, route.table.time):
        print(f"  {row}", file=sys.stderr)


def _disk_table(
    described: Sequence[AssetOnDisk], noun: str = "asset", time_column: str = "interval_time"
) -> list[str]:
    """What is on disk now, one line per asset (instrument) under a header, aligned."""
    header = (noun, "files", "rows", f"first {time_column}", f"last {time_column}")
    cells = [header] + [
        (
            d.asset,
            f"{d.files:,}",
            f"{d.rows:,}",
            "-" if d.first is None else format_time(d.first),
            "-" if d.last is None else format_time(d.last),
        )
        for d in described
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = (False, True, True, False, False)
    return [
        "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ).rstrip()
        for row in cells
    ]


async def _backfill(
    args: argparse.Namespace,
    key: str | None,
    watch: _BackfillWatch,
    run: Callable[[LiquidationClient], Awaitable[BackfillSummary]],
) -> BackfillSummary:
    """``run(client)`` (a backfill of some route) under the command's client, with the
    progress line drawn from its progress callbacks."""
    async with _client(args, key) as client:
        clock0 = time.monotonic()
        requests0, retries0 = client.stats.requests, client.stats.retries

        def render() -> str:
            p = watch.latest
            if p is None:
                return "planning shards..."
            stats = client.stats
            return backfill_line(
                done=p.shards_done,
                total=p.shards_total,
                skipped=p.shards_skipped,
                rows=p.rows,
                requests=stats.requests - requests0,
                elapsed=time.monotonic() - clock0,
                retries=stats.retries - retries0,
                last_error=stats.last_error,
            )

        with _storage_faults(client):
            return await _with_progress(watch.line, render, lambda: run(client))


def _entry() -> NoReturn:
    """The console script: :func:`main`, then, when nothing is left to clean up, an exit
    without the interpreter's teardown (freeing every object, ~0.3 s of a small job)."""
    code = main()
    # Files and manifests are durable when main() returns (written through atomic_write,
    # fsynced, closed). Teardown would still join the non-daemon threads (AnyIO's workers
    # were told to stop when the loop ended) and flush stdio: done here, briefly. A thread
    # that does not end, or a flush that fails, leaves the exit to the usual teardown; so
    # does a profiler or coverage tracer, which writes its data at exit.
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    deadline = time.monotonic() + _THREAD_GRACE
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a broken or closed stream: teardown reports it
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    _entry()
