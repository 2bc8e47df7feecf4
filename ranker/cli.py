"""The ``ranker`` command: serve, worker, migrate, rebuild, verify, seed, dev.

Every command reads its settings from the environment (``RANKER_*``) and exits non-zero with
a one-line reason on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from ranker.errors import RankerError
from ranker.settings import Settings

log = logging.getLogger("ranker")
Command = Callable[[argparse.Namespace, Settings], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ranker", description="Live game leaderboards.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the HTTP API (with the worker unless --no-worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="API processes")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="run neither the write-behind worker nor the rebuild watchdog",
    )
    worker = sub.add_parser("worker", help="persist submissions to PostgreSQL; rebuild if wiped")
    worker.add_argument("--burst", action="store_true", help="drain the backlog, then exit")
    sub.add_parser("migrate", help="apply pending database migrations")
    rebuild = sub.add_parser("rebuild", help="reload the boards in Redis from PostgreSQL")
    rebuild.add_argument(
        "--wait-s",
        type=float,
        default=300.0,
        help="how long to wait for a rebuild already running to end",
    )
    verify = sub.add_parser("verify", help="compare Redis with PostgreSQL (exit 1 on difference)")
    verify.add_argument(
        "--wait-s", type=float, default=60.0, help="how long to wait for the worker to drain first"
    )
    verify.add_argument(
        "--deep", action="store_true", help="also check each total against the sum of its sessions"
    )
    seed = sub.add_parser("seed", help="generate demo players and sessions, then rebuild")
    seed.add_argument("--players", type=int, default=10_000)
    seed.add_argument("--sessions", type=int, default=50_000)
    seed.add_argument("--if-empty", action="store_true", help="only when no board has a member")
    for command in (seed, rebuild):
        command.add_argument("--json", action="store_true", help="print the report as JSON")
    loadgen = sub.add_parser(
        "loadgen",
        help="drive a running ranker over HTTP (python -m loadgen --help)",
        add_help=False,
    )
    loadgen.add_argument("options", nargs=argparse.REMAINDER)
    dev = sub.add_parser("dev", help="local Redis + PostgreSQL under .ranker/, demo data, API")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--players", type=int, default=10_000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ranker`` and ``python -m ranker``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["loadgen"]:
        # The load generator parses its own options; it needs none of ranker's settings.
        from loadgen.cli import main as loadgen_main

        return loadgen_main(argv[1:])
    args = _parser().parse_args(argv)
    # Progress lines reach a log file or a pipe as they happen, not when the buffer fills.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"ranker: invalid settings: {_one_line(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from ranker import commands

    command: Command = getattr(commands, args.command)
    try:
        return command(args, settings)
    except RankerError as exc:
        print(f"ranker {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Run ``main(stop)`` on a new event loop; SIGTERM and SIGINT set ``stop``."""

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # SIGTERM: a supervisor asks us to stop; SIGINT: Ctrl-C. Both finish the batch in hand.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await main(stop)

    return asyncio.run(runner())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
