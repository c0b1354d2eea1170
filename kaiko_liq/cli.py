"""The ``kaiko-liq`` command line: a thin shell over the library.

::

    kaiko-liq fetch ASSET [ASSET ...] --start ISO --end ISO [-o PATH] [--format F] ...
    kaiko-liq backfill ASSET [ASSET ...] --start ISO --end ISO --out DIR ...
    kaiko-liq emulator [--port N] [--latency S] ...

``fetch`` writes one file set (see :mod:`kaiko_liq.export` for the tables); ``backfill``
writes a resumable Parquet dataset (see :mod:`kaiko_liq.backfill`). The API key comes from
``KAIKO_API_KEY`` or ``--api-key-file``, never from a flag's value: flags end up in shell
history and ``ps`` output. ``--emulator`` runs the built-in emulator in-process instead
of calling Kaiko, and says on stderr that the data is synthetic.

Every failure is one line on stderr, ``kaiko-liq: error: ...``, never a traceback. Exit
codes: 0 done, 1 the fetch or the writing failed, 2 a bad argument or setup (nothing was
fetched), 130 interrupted (Ctrl-C; a backfill keeps every shard already written).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import anyio

from .backfill import (
    AssetOnDisk,
    BackfillProgress,
    BackfillSummary,
    backfill,
    describe_backfill,
)
from .client import MAX_CONCURRENCY_RANGE, RATE_LIMIT_RANGE, LiquidationClient
from .errors import IncompleteFetchError, InvalidArgumentError, KaikoLiqError
from .export import (
    FORMATS,
    Format,
    MissingDependencyError,
    exchanges_path,
    format_for_path,
    import_optional,
    write_csv,
    write_files,
    write_jsonl,
)
from .models import LiquidationRow
from .plan import SubRange
from .progress import ProgressLine, backfill_line, draw_until_cancelled, fetch_line, plural
from .query import SORTS, Request, format_time, validate_request

__all__ = ["main"]

PROG = "kaiko-liq"
_KEY_ENV = "KAIKO_API_KEY"
_EXIT_FAILED = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
# LiquidationClient's own bounds, checked here as well so that a bad flag is refused
# before anything starts (tests/test_cli.py keeps the two in step).

T = TypeVar("T")


class _UsageError(Exception):
    """A bad command line; printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, except that errors are one line (no usage dump) and go through main()."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# --- the command line ---------------------------------------------------------------------


def _rate_limit(text: str) -> float:
    """``--rate-limit``: a finite number of requests per second in the client's range."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    low, high = RATE_LIMIT_RANGE
    if not (math.isfinite(value) and low <= value <= high):
        raise argparse.ArgumentTypeError(
            f"rate_limit {value} is out of range; use requests per second, {low:g} to {high:g}"
        )
    return value


def _max_concurrency(text: str) -> int:
    """``--max-concurrency``: an integer in the client's range."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    low, high = MAX_CONCURRENCY_RANGE
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"max_concurrency {value} is out of range; allowed: {low} to {high}"
        )
    return value


def _connection_options() -> _Parser:
    """Where to fetch from and how hard; shared by fetch and backfill."""
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
        "--rate-limit", type=_rate_limit, metavar="R", help="requests per second (default: 15)"
    )
    group.add_argument(
        "--max-concurrency",
        type=_max_concurrency,
        metavar="N",
        help="requests in flight (default: 16)",
    )
    group.add_argument("--quiet", "-q", action="store_true", help="no progress line and no summary")
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


def _build_parser() -> _Parser:
    from .emulator.command import add_arguments as add_emulator_arguments
    from .emulator.command import run as run_emulator

    parser = _Parser(
        prog=PROG,
        description="Kaiko token-level liquidation volumes: fetch, backfill, emulate.",
        epilog=f"The API key is read from ${_KEY_ENV} or --api-key-file.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    connection = _connection_options()

    fetch = commands.add_parser(
        "fetch",
        parents=[connection],
        help="fetch a window into one file set, or stdout",
        description=(
            "Fetch every bucket of [start, end) for each asset. With -o PATH, CSV and "
            "Parquet write the totals to PATH and the per-exchange breakdown beside it "
            "(out.csv and out.exchanges.csv); JSON Lines keeps both in one file. Without "
            "-o, JSON Lines (or --format csv, totals only) goes to stdout."
        ),
    )
    _window_options(fetch)
    fetch.add_argument(
        "--sort", choices=SORTS, default="asc", help="time order of the output (default: asc)"
    )
    fetch.add_argument("-o", "--output", type=Path, metavar="PATH", help="write here")
    fetch.add_argument(
        "--format", choices=FORMATS, help="default: from PATH's extension; jsonl on stdout"
    )
    fetch.set_defaults(handler=_run_fetch)

    bulk = commands.add_parser(
        "backfill",
        parents=[connection],
        help="fetch long ranges into a resumable Parquet dataset",
        description=(
            "Fetch [start, end) for every asset into DIR/asset=<asset>/<shard>.parquet, one "
            "file per shard, with DIR/_manifest.json recording what is done. Run the same "
            "command again to fetch only what is missing."
        ),
    )
    _window_options(bulk)
    bulk.add_argument("--out", required=True, type=Path, metavar="DIR", help="dataset dir")
    bulk.set_defaults(handler=_run_backfill)

    emulator = commands.add_parser(
        "emulator",
        help="serve the built-in Kaiko emulator (synthetic data) over HTTP",
        description="Serve the built-in emulator until interrupted; prints its base URL.",
    )
    add_emulator_arguments(emulator)
    emulator.set_defaults(handler=functools.partial(run_emulator, prog=PROG))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    try:
        parser = _build_parser()
        args = parser.parse_args(argv)
    except _UsageError as exc:
        return _fail(str(exc), _EXIT_USAGE)
    except SystemExit as exc:  # --help exits through argparse
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else _EXIT_USAGE
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except KeyboardInterrupt:
        return _EXIT_INTERRUPTED
    except (InvalidArgumentError, MissingDependencyError) as exc:
        return _fail(str(exc), _EXIT_USAGE)
    except KaikoLiqError as exc:
        return _fail(str(exc), _EXIT_FAILED)
    except BrokenPipeError:
        # The reader went away (``| head``): not an error worth a message. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return _EXIT_FAILED
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        return _fail(f"cannot write{where}: {exc.strerror or exc}", _EXIT_FAILED)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _say(message: str, *, quiet: bool = False) -> None:
    if not quiet:
        print(f"{PROG}: {message}", file=sys.stderr)


# --- shared checks and the client -------------------------------------------------------------


def _check_arguments(args: argparse.Namespace, *, sort: str | None = None) -> list[Request]:
    """Everything the client would check, checked first: errors come before any network
    or emulator start-up, and name the flag (the rate and concurrency flags are checked by
    argparse already). Returns one request per asset, duplicates dropped."""
    if args.emulator and args.base_url:
        raise InvalidArgumentError("--emulator and --base-url exclude each other; pick one")
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


def _check_writable(path: Path) -> None:
    """Refuse an output nobody could write before fetching anything for it."""
    parent = path.parent
    if not parent.is_dir():
        raise InvalidArgumentError(f"cannot write {path}: {parent} is not a directory")
    if path.is_dir():
        raise InvalidArgumentError(f"cannot write {path}: it is a directory")
    if not os.access(parent, os.W_OK):
        raise InvalidArgumentError(f"cannot write {path}: {parent} is not writable")
    # access() says yes to root everywhere, and some filesystems (/proc, sysfs) refuse
    # anyway: create (and drop) a nameless file where the output's temporary file goes.
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot write {path}: cannot create a file in {parent} ({exc.strerror or exc})"
        ) from None


def _api_key(args: argparse.Namespace) -> str | None:
    """The key from --api-key-file or the environment; None only where none is needed."""
    path: Path | None = args.api_key_file
    if path is not None:
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InvalidArgumentError(
                f"cannot read --api-key-file {path}: {exc.strerror or exc}"
            ) from None
        if not key:
            raise InvalidArgumentError(f"--api-key-file {path} is empty")
        return key
    key = os.environ.get(_KEY_ENV, "").strip()
    if key:
        return key
    if args.emulator or args.base_url:
        return None
    raise InvalidArgumentError(
        f"no API key: export {_KEY_ENV}=... or pass --api-key-file PATH "
        "(or try --emulator for synthetic data)"
    )


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
    if not args.emulator:
        base_url: str | None = args.base_url
        async with LiquidationClient(key, region=args.region, base_url=base_url, **options) as c:
            yield c
        return
    from .emulator import EmulatorConfig, running_emulator

    async with running_emulator(EmulatorConfig(), host="127.0.0.1", port=0) as emu:
        # Always said, even with --quiet: synthetic figures must never pass for Kaiko's.
        print(
            f"{PROG}: --emulator: SYNTHETIC data from the built-in emulator at "
            f"{emu.base_url}, not Kaiko's",
            file=sys.stderr,
        )
        async with LiquidationClient(key, base_url=emu.base_url, **options) as c:
            yield c


async def _with_progress(
    line: ProgressLine, render: Callable[[], str], work: Callable[[], Awaitable[T]]
) -> T:
    """Run ``work`` while redrawing the progress line; errors come out unwrapped."""
    error: Exception | None = None
    result: list[T] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(draw_until_cancelled, line, render)
        try:
            result.append(await work())
        except Exception as exc:  # re-raised below, outside the group (no ExceptionGroup)
            error = exc
        finally:
            tg.cancel_scope.cancel()
            line.clear()
    if error is not None:
        raise error
    return result[0]


# --- fetch ------------------------------------------------------------------------------------


def _run_fetch(args: argparse.Namespace) -> int:
    requests = _check_arguments(args, sort=args.sort)
    output: Path | None = args.output
    fmt: Format
    if output is not None:
        fmt = format_for_path(output, args.format)
        for path in (output, exchanges_path(output)):
            _check_writable(path)
    else:
        fmt = format_for_path("-", args.format or "jsonl")
        if fmt == "parquet":
            raise InvalidArgumentError(
                "Parquet is not written to stdout; pass -o PATH.parquet (two files: totals "
                "and .exchanges), or --format csv|jsonl for stdout"
            )
    if fmt == "parquet":
        import_optional("pyarrow.parquet", "writing Parquet", extra="parquet")
    key = _api_key(args)

    started = time.monotonic()
    rows, stats = asyncio.run(_fetch(args, requests, key))
    if output is not None:
        written = write_files(output, rows, fmt)
        where = ", ".join(str(p) for p in written)
    elif fmt == "csv":
        write_csv(sys.stdout, rows)
        sys.stdout.flush()
        where = "stdout (totals only; the per-exchange breakdown needs -o PATH or jsonl)"
    else:
        write_jsonl(sys.stdout.buffer, rows)
        sys.stdout.buffer.flush()
        where = "stdout"
    total = sum(len(r) for r in rows.values())
    _say(
        f"{plural(len(rows), 'asset')}, {plural(total, 'row')}, {plural(stats[0], 'request')}, "
        f"{plural(stats[1], 'retry', 'retries')} in {time.monotonic() - started:.1f}s to {where}",
        quiet=args.quiet,
    )
    return 0


async def _fetch(
    args: argparse.Namespace, requests: list[Request], key: str | None
) -> tuple[dict[str, list[LiquidationRow]], tuple[int, int]]:
    """Every asset concurrently under one client, each one ``client.fetch``; its
    ``on_shard`` callback counts shards for the progress line.

    A failure that every shard would hit cancels the rest (the output is all or nothing,
    so they would be wasted); an asset whose shards failed after their retries does not,
    and its IncompleteFetchError (naming every failed shard) is raised at the end."""
    line = ProgressLine.for_stream(sys.stderr, quiet=args.quiet)
    async with _client(args, key) as client:
        total = sum(
            len(
                client.plan(
                    r.asset, r.start, r.end, interval=r.interval.text, page_size=r.page_size
                )
            )
            for r in requests
        )
        results: dict[str, list[LiquidationRow]] = {}
        incomplete: dict[str, IncompleteFetchError] = {}
        fatal: list[KaikoLiqError] = []
        done = 0
        clock0 = time.monotonic()

        def count(_shard: SubRange) -> None:
            nonlocal done
            done += 1

        async def one(r: Request, scope: anyio.CancelScope) -> None:
            try:
                results[r.asset] = await client.fetch(
                    r.asset,
                    r.start,
                    r.end,
                    interval=r.interval.text,
                    sort=args.sort,
                    page_size=r.page_size,
                    on_shard=count,
                )
            except IncompleteFetchError as exc:  # some shards, after their retries
                incomplete[r.asset] = exc
            except KaikoLiqError as exc:
                fatal.append(exc)
                scope.cancel()

        async def fetch_all() -> None:
            async with anyio.create_task_group() as tg:
                for r in requests:
                    tg.start_soon(one, r, tg.cancel_scope)

        def render() -> str:
            stats = client.stats
            return fetch_line(
                done=done,
                total=total,
                rows=stats.rows,
                requests=stats.requests,
                elapsed=time.monotonic() - clock0,
            )

        await _with_progress(line, render, fetch_all)
        if fatal:
            raise fatal[0]
        for r in requests:
            if r.asset in incomplete:
                raise incomplete[r.asset]
        return results, (client.stats.requests, client.stats.retries)


# --- backfill ---------------------------------------------------------------------------------


def _run_backfill(args: argparse.Namespace) -> int:
    requests = _check_arguments(args)
    assets = [r.asset for r in requests]
    import_optional("pyarrow.parquet", "backfill", extra="parquet")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"--out {out} exists and is not a directory")
    key = _api_key(args)
    summary = asyncio.run(_backfill(args, assets, key))
    _say(f"backfill done: {summary}", quiet=args.quiet)
    if args.quiet:
        # Said even then: part of what was asked for is not on disk.
        if summary.deferred is not None:
            _say(summary.deferred)
        return 0
    for row in _disk_table(describe_backfill(out, assets=assets)):
        print(f"  {row}", file=sys.stderr)
    return 0


def _disk_table(described: Sequence[AssetOnDisk]) -> list[str]:
    """What is on disk now, one line per asset under a header, columns aligned."""
    header = ("asset", "files", "rows", "first interval_time", "last interval_time")
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
    args: argparse.Namespace, assets: list[str], key: str | None
) -> BackfillSummary:
    line = ProgressLine.for_stream(sys.stderr, quiet=args.quiet)
    latest: list[BackfillProgress] = []
    async with _client(args, key) as client:
        clock0 = time.monotonic()
        requests0 = client.stats.requests

        def render() -> str:
            if not latest:
                return "planning shards..."
            p = latest[-1]
            return backfill_line(
                done=p.shards_done,
                total=p.shards_total,
                skipped=p.shards_skipped,
                rows=p.rows,
                requests=client.stats.requests - requests0,
                elapsed=time.monotonic() - clock0,
            )

        def on_progress(progress: BackfillProgress) -> None:
            latest[:] = [progress]

        async def work() -> BackfillSummary:
            return await backfill(
                client,
                assets,
                args.start,
                args.end,
                args.out,
                interval=args.interval,
                page_size=args.page_size,
                on_progress=on_progress,
            )

        return await _with_progress(line, render, work)


def _entry() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
