"""The ``ranker`` command: serve, worker, migrate, rebuild, verify, partitions, seed, dev,
healthcheck, and the moderation commands ban, unban and void.

Every command reads its settings from the environment (``RANKER_*``), built once here and passed
down, and exits non-zero with a one-line reason on failure: a bad option (2), bad settings (2),
or a failure while running (1).
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from pydantic import ValidationError

from ranker import logs, tracing
from ranker.cli import commands, dev, moderate
from ranker.errors import RankerError
from ranker.settings import Settings

Command = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, Command] = {
    "serve": commands.serve,
    "worker": commands.worker,
    "migrate": commands.migrate,
    "rebuild": commands.rebuild,
    "verify": commands.verify,
    "partitions": commands.partitions,
    "seed": commands.seed,
    "dev": dev.dev,
    "healthcheck": commands.healthcheck,
    "ban": moderate.ban,
    "unban": moderate.unban,
    "void": moderate.void,
}
#: The commands that make spans (with RANKER_OTLP_ENDPOINT set): requests, worker batches,
#: rebuilds. The others would only pay for starting OpenTelemetry.
TRACED = frozenset({"serve", "worker", "rebuild", "seed", "dev"})
#: Enough for any demo or benchmark data set, and far from what a typo could ask for.
SEED_PLAYERS_MAX = 100_000_000
SEED_SESSIONS_MAX = 1_000_000_000


class _Parser(argparse.ArgumentParser):
    """argparse, except that a bad option is one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def integer(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not from {low:,} to {high:,}")
        return value

    return parse


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, zero or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds >= 0")
    return value


PORT = integer(1, 65_535)


def parser() -> argparse.ArgumentParser:
    """The options of every command."""
    top = _Parser(prog="ranker", description="Live game leaderboards.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the HTTP API (with the worker unless --no-worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=PORT, help="default: RANKER_PORT (or PORT), else 8000")
    serve.add_argument("--workers", type=integer(1, 64), default=1, help="API processes")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="run neither the write-behind worker nor the rebuild watchdog",
    )
    worker = sub.add_parser("worker", help="persist submissions to PostgreSQL; rebuild if wiped")
    worker.add_argument("--burst", action="store_true", help="drain the backlog, then exit")
    worker.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="the address of /metrics on RANKER_METRICS_PORT (when set)",
    )
    sub.add_parser("migrate", help="apply pending database migrations")
    rebuild = sub.add_parser("rebuild", help="reload the boards in Redis from PostgreSQL")
    rebuild.add_argument(
        "--wait-s",
        type=seconds,
        default=300.0,
        help="how long to wait for a rebuild already running to end",
    )
    verify = sub.add_parser("verify", help="compare Redis with PostgreSQL (exit 1 on difference)")
    verify.add_argument(
        "--wait-s",
        type=seconds,
        default=60.0,
        help="how long to wait for the worker to drain first",
    )
    verify.add_argument(
        "--deep", action="store_true", help="also check each total against the sum of its sessions"
    )
    sub.add_parser(
        "partitions",
        help="make the session log's months ahead, drop those past the retention (if they may be)",
    )
    seed = sub.add_parser("seed", help="generate demo players and sessions, then rebuild")
    seed.add_argument("--players", type=integer(1, SEED_PLAYERS_MAX), default=10_000)
    seed.add_argument("--sessions", type=integer(0, SEED_SESSIONS_MAX), default=50_000)
    seed.add_argument("--if-empty", action="store_true", help="only when no board has a member")
    for command in (seed, rebuild):
        command.add_argument("--json", action="store_true", help="print the report as JSON")
    local = sub.add_parser("dev", help="local Redis + PostgreSQL under .ranker/, demo data, API")
    local.add_argument("--host", default="127.0.0.1")
    local.add_argument("--port", type=PORT, help="default: RANKER_PORT (or PORT), else 8000")
    local.add_argument("--players", type=integer(1, SEED_PLAYERS_MAX), default=10_000)
    health = sub.add_parser(
        "healthcheck", help="exit 0 when a running API (--url) or worker (heartbeat) is alive"
    )
    health.add_argument("--url", help="an API's /healthz, e.g. http://127.0.0.1:8000/healthz")
    health.add_argument(
        "--max-age-s",
        type=seconds,
        default=15.0,
        help="oldest heartbeat (RANKER_HEARTBEAT_FILE) still alive; with --url, the timeout",
    )
    _moderation_commands(sub)
    return top


def _moderation_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    user_id = integer(1, 2**63 - 1)
    ban = sub.add_parser("ban", help="ban a player: off every board, their sessions voided")
    ban.add_argument("user_id", type=user_id)
    ban.add_argument("--reason", required=True, help="kept in the audit log")
    unban = sub.add_parser("unban", help="lift a ban: the player's sessions count again")
    unban.add_argument("user_id", type=user_id)
    void = sub.add_parser("void", help="void one session: it counts nowhere from now on")
    void.add_argument("session_id")
    for command in (unban, void):
        command.add_argument("--reason", help="kept in the audit log and on the session")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ranker`` and ``python -m ranker``."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    # Progress lines reach a log file or a pipe as they happen, not when the buffer fills.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"ranker: invalid settings: {setting_errors(exc)}", file=sys.stderr)
        return 2
    logs.configure(settings)
    if args.command in TRACED:
        tracing.configure(settings, args.command)
    try:
        return COMMANDS[args.command](args, settings)
    except RankerError as exc:
        print(f"ranker {args.command}: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def setting_errors(exc: ValidationError) -> str:
    """Each invalid setting by its variable's name, with what is wrong and never its value
    (it may be a key)."""
    reasons = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        name = field if field.isupper() else f"RANKER_{field.upper()}"  # aliases are variables
        reasons.append(f"{name}: {message}" if field else message)
    return one_line(ValueError("; ".join(reasons)))


def one_line(exc: BaseException) -> str:
    """An error's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
