"""The commands of the ``ranker`` CLI, one function each: ``(args, settings) -> exit status``.

This is where the API and ``persistence`` meet: ``serve`` hands the worker and the watchdog to
the app as a background service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import uvicorn
from psycopg_pool import AsyncConnectionPool
from rich.progress import Progress
from uvicorn.supervisors import Multiprocess

from persistence import repository
from persistence.archive import Archive
from persistence.binding import BoundElsewhere, bound_to, claim, database_identity, pool_identity
from persistence.database import pool_for, translate_db_errors
from persistence.definitions import restore_definitions
from persistence.migrate import migrate as apply_migrations
from persistence.moderation import Moderator
from persistence.partitions import maintain, month_id, session_months
from persistence.rebuild import Rebuild
from persistence.seed import seed as generate
from persistence.service import Persistence, workers
from persistence.verify import Verifier, wait_drained
from ranker import metrics
from ranker.api.app import create_app, key_ring
from ranker.api.protocol import ConnectionLimits, EdgeConfig
from ranker.api.state import BackgroundService
from ranker.catalog import Catalog, apply_boards
from ranker.cli.serve import NO_WORKER_ENV
from ranker.connections import Client, background_redis
from ranker.definitions import read_boards
from ranker.errors import ConfigurationError, DatabaseError, RankerError, RedisUnavailable
from ranker.metrics import MULTIPROC_ENV
from ranker.models import Limits
from ranker.settings import Settings
from ranker.shards import home, shards_of

log = logging.getLogger("ranker.cli")
#: How long the start-up check of the namespace's binding waits for PostgreSQL.
BINDING_CONNECT_TIMEOUT_S = 5


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


@contextlib.asynccontextmanager
async def _connections(settings: Settings) -> AsyncIterator[tuple[Client, AsyncConnectionPool]]:
    # One-shot commands end with a one-line reason; the pool's own retry warnings would only
    # repeat it (long-running serve and worker keep them: they show an outage as it happens).
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    redis = background_redis(settings)
    try:
        async with pool_for(settings) as pool:
            yield redis, pool
    finally:
        await redis.aclose()


async def _restore_definitions(settings: Settings) -> None:
    """Give a Redis that lost the board definitions those PostgreSQL holds, so that the API
    accepts submissions at once (the watchdog then loads the boards). A server out of reach is
    no reason not to start: the watchdog restores them once it answers."""
    try:
        async with _connections(settings) as (redis, pool):
            if await restore_definitions(redis, settings, pool):
                log.info("restored the board definitions from PostgreSQL")
    except (DatabaseError, RedisUnavailable) as exc:
        log.warning("could not restore the board definitions, starting anyway: %s", exc)


async def _apply_boards_file(settings: Settings) -> None:
    """Apply ``RANKER_BOARDS_FILE`` (``ConfigurationError``, the CLI's one line, for a bad
    file or a board it contradicts), after ``_restore_definitions``: the file is compared with
    the definitions PostgreSQL holds, not with none."""
    assert settings.boards_file is not None
    try:
        text = settings.boards_file.read_text(encoding="utf-8")
        wanted = read_boards(text, Limits.from_settings(settings))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"RANKER_BOARDS_FILE {settings.boards_file}: {exc}") from None
    redis = background_redis(settings)
    try:
        for change in await apply_boards(Catalog(redis, settings), wanted):
            log.info("%s (%s)", change, settings.boards_file)
    finally:
        await redis.aclose()


async def _claim_namespace(settings: Settings) -> None:
    """Refuse to start (``BoundElsewhere``, the CLI's one line) when the namespace is bound to
    another database; bind it when it is bound to none (docs/design.md, "Invariants", I6).

    A server out of reach now is no reason not to start: the API serves without PostgreSQL
    and the worker waits outages out, checking the binding before each batch anyway."""
    redis = background_redis(settings)
    try:
        with translate_db_errors():
            async with await psycopg.AsyncConnection.connect(
                settings.database_url, autocommit=True, connect_timeout=BINDING_CONNECT_TIMEOUT_S
            ) as conn:
                mine = await database_identity(conn)
        await claim(redis, settings.namespace, mine)
    except DatabaseError as exc:
        if isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
            raise ConfigurationError(f"{exc}: run `ranker migrate` first") from exc
        log.warning("could not check the namespace's database binding, starting anyway: %s", exc)
    except RedisUnavailable as exc:
        log.warning("could not check the namespace's database binding, starting anyway: %s", exc)
    finally:
        await redis.aclose()


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the API (and, unless ``--no-worker``, the worker and the rebuild watchdog).

    One process serves the app built here from ``settings``. With ``--workers N`` uvicorn
    starts N processes that each build theirs from the same environment (``ranker.cli.serve``);
    the settings were checked here first, so a bad one stops ``serve`` before any starts.
    """
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port or settings.port,
        "log_level": settings.log_level,
        "access_log": False,  # ranker's own request log has the request id and key id
        # No logging config of uvicorn's own: its records reach the root logger, so they take
        # ranker's format and file (ranker.logs).
        "log_config": None,
        "server_header": False,  # a `server: uvicorn` answer tells an attacker the stack
        # X-Forwarded-For only from the proxies named (uvicorn's default trusts 127.0.0.1, so
        # any local client could pick its own address and rate-limit budget).
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": list(settings.trusted_proxies),
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "timeout_graceful_shutdown": 10,
    }
    limits = ConnectionLimits.of(settings)
    key_ring(settings)  # no key: one line here, not a traceback from every API process
    # Even with --no-worker: an API on another deployment's namespace would serve its boards
    # and feed its database while its operator believes otherwise.
    asyncio.run(_claim_namespace(settings))
    asyncio.run(_restore_definitions(settings))
    if settings.boards_file is not None:
        asyncio.run(_apply_boards_file(settings))
    if args.workers == 1:
        archive = Archive(settings)
        records = Moderator(settings)
        background: list[BackgroundService] = [archive, records]
        if not args.no_worker:
            background.append(Persistence(settings))
        app = create_app(settings, background, archive, records)
        if settings.metrics_port is not None:
            metrics.serve_on_own_port(args.host, settings.metrics_port)
        server = uvicorn.Server(EdgeConfig(app, limits=limits, **options))
        # uvicorn re-raises the signal it stopped on once it has shut down: Ctrl-C is a
        # KeyboardInterrupt here, and a clean stop.
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        return 0 if server.started else 1
    if args.no_worker:
        os.environ[NO_WORKER_ENV] = "1"
    with contextlib.ExitStack() as cleanup:
        if not os.environ.get(MULTIPROC_ENV):
            # Each API process writes its metrics to this directory; /metrics adds them up.
            directory = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="ranker-metrics-"))
            os.environ[MULTIPROC_ENV] = directory
        if settings.metrics_port is not None:
            metrics.serve_on_own_port(args.host, settings.metrics_port)
        config = EdgeConfig(
            "ranker.cli.serve:app", limits=limits, factory=True, workers=args.workers, **options
        )
        # What uvicorn.run does for workers > 1, with the config that carries the limits.
        with contextlib.suppress(KeyboardInterrupt):
            Multiprocess(config, sockets=[config.bind_socket()]).run()
    return 0


def worker(args: argparse.Namespace, settings: Settings) -> int:
    """Persist the stream until SIGTERM/SIGINT (or, with ``--burst``, until it is drained)."""

    async def run(stop: asyncio.Event) -> int:
        await _claim_namespace(settings)
        if args.burst:
            async with _connections(settings) as (redis, pool):
                drained = await asyncio.gather(*(w.drain() for w in workers(settings, redis, pool)))
                handled = sum(drained)
            print(f"persisted {handled} events")
            return 0
        await Persistence(settings).run(stop)
        return 0

    if settings.metrics_port is not None and not args.burst:
        # Its lag, batches, commits and rebuilds, for Prometheus to scrape where it runs alone.
        metrics.serve_on_own_port(args.metrics_host, settings.metrics_port)
    return run_until_signalled(run)


def migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Apply pending migrations."""

    async def run() -> list[int]:
        with translate_db_errors():
            async with await psycopg.AsyncConnection.connect(
                settings.database_url, autocommit=True
            ) as conn:
                return await apply_migrations(conn)

    applied = asyncio.run(run())
    print(f"applied migrations {applied}" if applied else "database schema is up to date")
    return 0


def rebuild(args: argparse.Namespace, settings: Settings) -> int:
    """Reload every board from PostgreSQL."""

    async def run() -> None:
        async with _connections(settings) as (redis, pool):
            report = await Rebuild(settings, redis, pool).run(wait_s=args.wait_s)
        if args.json:
            print(json.dumps(dataclasses.asdict(report)))
            return
        print(
            f"rebuilt {report.members} members of {report.periods} board periods in "
            f"{report.duration_s:.2f} s (stream: +{report.stream_added} "
            f"-{report.stream_subtracted}; idempotency keys restored: "
            f"{report.sessions_restored})"
        )

    asyncio.run(run())
    return 0


def verify(args: argparse.Namespace, settings: Settings) -> int:
    """Compare Redis with PostgreSQL once the worker has drained; 1 on any difference, and
    on a namespace bound to another database (nothing is compared then)."""

    async def run() -> int:
        async with _connections(settings) as (redis, pool):
            keys = home(settings.namespace, settings.board_shards)
            # Boards bound to another database are compared with the wrong one: one line, 1.
            bound, mine = await bound_to(redis, keys), await pool_identity(pool)
            if bound is not None and bound.id != mine.id:
                raise BoundElsewhere(settings.namespace, bound, mine)
            await wait_drained(
                redis, shards_of(settings.namespace, settings.board_shards), args.wait_s
            )
            verifier = Verifier(settings, redis, pool)
            report = await verifier.run()
            drift = await verifier.deep() if args.deep else []
            dropped, since = await verifier.horizon() if args.deep else (0, None)
        if since is not None:
            print(
                f"deep: over the sessions since {since:%Y-%m-%d} and the scores carried from "
                f"the {dropped} months retention dropped before"
            )
        for diff in report.differences:
            print(f"difference: {diff}")
        for line in drift:
            print(f"difference from the session log: {line}")
        if report.ok and not drift:
            print(f"ok: {report.members} members agree")
            return 0
        count = report.total_differences + len(drift)
        print(f"FAILED: {count} differences", file=sys.stderr)
        return 1

    return asyncio.run(run())


def partitions(args: argparse.Namespace, settings: Settings) -> int:
    """One round of the session log's partitions now (the watchdog runs one every hour): the
    months ahead made, those past ``RANKER_SESSIONS_RETENTION_MONTHS`` dropped if they may be."""

    async def run() -> None:
        async with _connections(settings) as (redis, pool):
            done = await maintain(settings, redis, pool)
            with translate_db_errors():
                async with pool.connection() as conn:
                    months = await session_months(conn)
        if done.created:
            print(f"made the partitions of {', '.join(map(month_id, done.created))}")
        if done.dropped:
            print(
                f"dropped the sessions of {', '.join(map(month_id, done.dropped))}"
                " (their scores carried)"
            )
        span = f"{month_id(months[0])} .. {month_id(months[-1])}" if months else "none"
        print(f"months stored: {span} ({len(months)}), and the default partition")
        if done.kept:
            print(f"retention: {done.kept}")
        elif settings.sessions_retention_months is None:
            print("retention: none (RANKER_SESSIONS_RETENTION_MONTHS is not set)")

    asyncio.run(run())
    return 0


def seed(args: argparse.Namespace, settings: Settings) -> int:
    """Generate demo data in PostgreSQL, then rebuild the boards."""

    async def run() -> None:
        async with _connections(settings) as (redis, pool):
            if args.if_empty:
                async with pool.connection() as conn:
                    if await repository.has_totals(conn):
                        print("boards are not empty: not seeding")
                        return
            started = time.perf_counter()
            with Progress(transient=False, disable=args.json) as bar:
                tasks = {
                    "players": bar.add_task("players", total=args.players),
                    "sessions": bar.add_task("sessions", total=args.sessions),
                    "totals": bar.add_task("board totals", total=1),
                    "indexes": bar.add_task("indexes", total=1),
                }
                seeded = await generate(
                    settings,
                    pool,
                    args.players,
                    args.sessions,
                    lambda task, done: bar.advance(tasks[task], done),
                )
            generated = time.perf_counter() - started
            report = await Rebuild(settings, redis, pool).run(wait_s=settings.rebuild_ttl_s)
        if args.json:
            summary = {
                "players": args.players,
                "sessions": args.sessions,
                "generate_s": generated,
                "phases_s": seeded.phases_s,
                "rebuild": dataclasses.asdict(report),
            }
            print(json.dumps(summary))
            return
        phases = ", ".join(f"{name} {secs:.1f} s" for name, secs in seeded.phases_s.items())
        print(
            f"seeded {args.players} players, {args.sessions} sessions in {generated:.1f} s "
            f"({phases}); rebuilt {report.members} members in {report.duration_s:.1f} s"
        )

    asyncio.run(run())
    return 0


def healthcheck(args: argparse.Namespace, settings: Settings) -> int:
    """Whether a running ranker is alive, for a container's healthcheck: with ``--url``, that
    the URL (an API's ``/healthz``) answers 200; otherwise that the heartbeat file of a worker
    (``RANKER_HEARTBEAT_FILE``) was touched within ``--max-age-s``."""
    if args.url:
        try:
            with urllib.request.urlopen(args.url, timeout=args.max_age_s) as answer:
                status = answer.status
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
            raise RankerError(f"{args.url} did not answer: {exc}") from exc
        if status != 200:
            raise RankerError(f"{args.url} answered {status}")
        return 0
    beat = settings.heartbeat_file
    if beat is None:
        raise RankerError("no --url, and RANKER_HEARTBEAT_FILE is not set")
    try:
        age_s = time.time() - beat.stat().st_mtime
    except OSError as exc:
        raise RankerError(f"no heartbeat: {exc}") from exc
    if age_s > args.max_age_s:
        raise RankerError(f"the heartbeat in {beat} is {age_s:.0f} s old")
    return 0
