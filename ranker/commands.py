"""The commands of the ``ranker`` CLI, one function each: ``(args, settings) -> exit status``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from ranker.cli import run_until_signalled
from ranker.errors import RankerError
from ranker.settings import Settings


@contextlib.asynccontextmanager
async def _connections(settings: Settings) -> AsyncIterator[tuple[Redis, AsyncConnectionPool]]:
    from persistence.database import pool_for
    from persistence.service import background_redis

    # One-shot commands end with a one-line reason; the pool's own retry warnings would only
    # repeat it (long-running serve and worker keep them: they show an outage as it happens).
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    redis = background_redis(settings)
    try:
        async with pool_for(settings) as pool:
            yield redis, pool
    finally:
        await redis.aclose()


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the API (and, unless ``--no-worker``, the worker and the rebuild watchdog)."""
    import uvicorn

    from ranker.metrics import MULTIPROC_ENV as metrics_dir_env
    from ranker.serve import NO_WORKER_ENV

    if args.no_worker:
        os.environ[NO_WORKER_ENV] = "1"
    with contextlib.ExitStack() as cleanup:
        if args.workers > 1 and not os.environ.get(metrics_dir_env):
            # Each API process writes its metrics to this directory; /metrics adds them up.
            directory = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="ranker-metrics-"))
            os.environ[metrics_dir_env] = directory
        uvicorn.run(
            "ranker.serve:app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=settings.log_level,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    return 0


def worker(args: argparse.Namespace, settings: Settings) -> int:
    """Persist the stream until SIGTERM/SIGINT (or, with ``--burst``, until it is drained)."""
    from persistence.service import Persistence, workers

    async def run(stop: asyncio.Event) -> int:
        if args.burst:
            async with _connections(settings) as (redis, pool):
                drained = await asyncio.gather(*(w.drain() for w in workers(settings, redis, pool)))
                handled = sum(drained)
            print(f"persisted {handled} events")
            return 0
        await Persistence(settings).run(stop)
        return 0

    return run_until_signalled(run)


def migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Apply pending migrations."""
    from persistence.database import translate_db_errors
    from persistence.migrate import migrate as apply

    async def run() -> list[int]:
        import psycopg

        with translate_db_errors():
            async with await psycopg.AsyncConnection.connect(
                settings.database_url, autocommit=True
            ) as conn:
                return await apply(conn)

    applied = asyncio.run(run())
    print(f"applied migrations {applied}" if applied else "database schema is up to date")
    return 0


def rebuild(args: argparse.Namespace, settings: Settings) -> int:
    """Reload every board from PostgreSQL."""
    from persistence.rebuild import Rebuild

    async def run() -> None:
        async with _connections(settings) as (redis, pool):
            report = await Rebuild(settings, redis, pool).run(wait_s=args.wait_s)
        if args.json:
            print(json.dumps(dataclasses.asdict(report)))
            return
        print(
            f"rebuilt {report.members} members of {len(settings.boards)} boards in "
            f"{report.duration_s:.2f} s (stream: +{report.stream_added} "
            f"-{report.stream_subtracted}; idempotency keys restored: "
            f"{report.sessions_restored})"
        )

    asyncio.run(run())
    return 0


def verify(args: argparse.Namespace, settings: Settings) -> int:
    """Compare Redis with PostgreSQL once the worker has drained; 1 on any difference."""
    from persistence import repository
    from persistence.verify import Verifier, wait_drained
    from ranker.keys import Keys

    async def run() -> int:
        async with _connections(settings) as (redis, pool):
            await wait_drained(redis, Keys(settings.namespace), args.wait_s)
            report = await Verifier(settings, redis, pool).run()
            mismatched = []
            if args.deep:
                async with pool.connection() as conn:
                    mismatched = await repository.select_session_sums(conn, 20)
        for diff in report.differences:
            print(f"difference: {diff}")
        for board, user_id, total, points in mismatched:
            print(f"difference: {board} user {user_id}: total={total} sum of sessions={points}")
        if report.ok and not mismatched:
            print(f"ok: {report.members} members agree")
            return 0
        print(f"FAILED: {report.total_differences} differences", file=sys.stderr)
        return 1

    return asyncio.run(run())


def seed(args: argparse.Namespace, settings: Settings) -> int:
    """Generate demo data in PostgreSQL, then rebuild the boards."""
    from rich.progress import Progress

    from persistence import repository
    from persistence.rebuild import Rebuild
    from persistence.seed import seed as generate

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


def dev(args: argparse.Namespace, settings: Settings) -> int:
    """Local Redis and PostgreSQL under ``.ranker/`` (unless URLs are set), migrations, demo
    data when the boards are empty, and the API; Ctrl-C stops all of it."""
    from ranker.devenv import local_stack

    with local_stack(Path(".ranker")) as env:
        os.environ.update(env)
        key, source = _development_key(Path(".ranker"))
        settings = Settings()
        for step in (migrate, _seed_if_empty(args)):
            if step(args, settings) != 0:
                raise RankerError("could not prepare the local database")
        url = f"http://{args.host}:{args.port}"
        print(
            f"\n  ranker is serving on {url}/  (Ctrl-C stops it)\n"
            f"  development API key (from {source}): {key}\n"
            f"  curl -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
            f'       -d \'{{"user_id": 42, "score": 1500}}\' {url}/api/leaderboard/submit\n'
        )
        args.workers, args.no_worker = 1, False
        return serve(args, settings)


def _development_key(root: Path) -> tuple[str, str]:
    """A key the service will accept for writes, and where it comes from: the first of
    ``RANKER_API_KEYS`` when set, else the key file (``RANKER_API_KEY_FILE``, by default
    ``<root>/api-key``, made with a fresh key the first time)."""
    from ranker.auth import KeyRing, Scope, new_key, read_key_file, write_key_file

    configured = Settings()
    if configured.api_keys:
        return configured.api_keys[0].get_secret_value(), "RANKER_API_KEYS"
    path = (configured.api_key_file or root / "api-key").resolve()
    if not path.exists():
        write_key_file(path, new_key())
    os.environ["RANKER_API_KEY_FILE"] = str(path)
    entries = read_key_file(path)
    KeyRing(entries)  # a malformed key stops here, before anything starts
    for scope, key in entries:
        if scope is Scope.WRITE:
            return key, str(path)
    raise RankerError(f"{path} holds no write key")


def _seed_if_empty(args: argparse.Namespace) -> Callable[[argparse.Namespace, Settings], int]:
    def step(_: argparse.Namespace, settings: Settings) -> int:
        seed_args = argparse.Namespace(
            players=args.players, sessions=args.players * 5, if_empty=True, json=False
        )
        return seed(seed_args, settings)

    return step
