"""One namespace is bound to one database (docs/design.md, "Invariants", I6): a second
deployment on the same Redis namespace with another PostgreSQL database is refused at start and,
if the binding changes while it runs, persists nothing; a rebuild binds the namespace again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
import psycopg
import pytest
from redis.asyncio import Redis

from persistence.service import Persistence
from persistence.stream import unpersisted
from ranker.api.app import create_app
from ranker.dev import servers as devservers
from ranker.keys import Keys
from ranker.settings import Settings
from tests.fixtures.ranker import Processes, auth_headers, wait_for


async def identity_of(url: str) -> str:
    """The id in a database's ``database_identity`` row (made on first use)."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT database_id::text FROM database_identity")
        row = await cur.fetchone()
    assert row is not None, "the database has no identity yet"
    return str(row[0])


async def session_count(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT count(*) FROM game_sessions")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def bound_id(redis: Redis, keys: Keys) -> str | None:
    """The database id the namespace's key records, if any."""
    raw = await redis.get(keys.bound_database)
    return None if raw is None else raw.decode().split(" ", 1)[0]


def db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def submit(http: httpx.AsyncClient, session_id: str, user_id: int = 1) -> None:
    body = {"user_id": user_id, "score": 10, "session_id": session_id}
    answer = await http.post("/api/leaderboard/submit", json=body, headers=auth_headers())
    assert answer.status_code == 200, answer.text


async def test_a_second_deployment_on_the_namespace_with_another_database_is_refused(
    make_settings: Callable[..., Settings],
    make_database: Callable[..., str],
    processes: Processes,
    redis: Redis,
) -> None:
    first = make_settings()
    second = make_settings(database_url=make_database())  # same namespace, another database
    keys = Keys(first.namespace)
    url, server = await processes.serve(settings=first)
    async with httpx.AsyncClient(base_url=url) as http:

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await wait_for(ready, 30, "the first deployment to load its boards")
        await submit(http, "before")

        port = str(devservers.free_port())
        api = await asyncio.to_thread(processes.run, "serve", "--port", port, settings=second)
        worker = await asyncio.to_thread(processes.run, "worker", settings=second)
        verify = await asyncio.to_thread(processes.run, "verify", "--wait-s", "5", settings=second)

        await submit(http, "after")  # the first deployment goes on as before

        async def persisted() -> bool:
            return await session_count(first.database_url) == 2

        await wait_for(persisted, 30, "the first deployment to persist both submissions")
        verified = await asyncio.to_thread(processes.run, "verify", "--deep", settings=first)

    first_id = await identity_of(first.database_url)
    second_id = await identity_of(second.database_url)
    assert first_id != second_id
    assert await bound_id(redis, keys) == first_id
    for refused in (api, worker, verify):
        assert refused.returncode == 1, refused
        reason = refused.stderr.strip()
        assert "\n" not in reason and "Traceback" not in reason, refused.stderr
        assert f"namespace {first.namespace} is bound to database {first_id}" in reason
        assert f"({db_name(first.database_url)} on " in reason  # what a person recognises
        assert f"not to this one, {second_id} ({db_name(second.database_url)}" in reason
        assert "password" not in reason.lower()
    assert api.stderr.startswith("ranker serve: namespace")
    assert worker.stderr.startswith("ranker worker: namespace")
    assert await session_count(second.database_url) == 0
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert server.poll() is None, processes.log_of(server)


async def test_a_running_worker_whose_namespace_is_rebound_elsewhere_persists_nothing(
    make_settings: Callable[..., Settings],
    make_database: Callable[..., str],
    processes: Processes,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = make_settings()
    second = make_settings(database_url=make_database())
    keys = Keys(first.namespace)
    app = create_app(first, [Persistence(first)])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as http:

            async def readiness() -> httpx.Response:
                return await http.get("/readyz")

            async def ready() -> bool:
                return (await readiness()).status_code == 200

            await wait_for(ready, 30, "the watchdog's first rebuild")
            first_id = await identity_of(first.database_url)
            # The other deployment's rebuild binds the namespace to its database.
            rebuilt = await asyncio.to_thread(processes.run, "rebuild", settings=second)
            assert rebuilt.returncode == 0, rebuilt.stderr
            second_id = await identity_of(second.database_url)
            await submit(http, "while-bound-elsewhere")

            async def refused() -> bool:
                answer = await readiness()
                return answer.status_code == 503 and "detail" in answer.json()

            await wait_for(refused, 30, "/readyz to report the refusal")
            refusal = (await readiness()).json()
            held = await unpersisted(redis, keys)
            stored_while_refused = await session_count(first.database_url)

            # Its own rebuild binds the namespace to it again: the worker resumes by itself.
            back = await asyncio.to_thread(processes.run, "rebuild", settings=first)
            assert back.returncode == 0, back.stderr

            async def persisted() -> bool:
                return await session_count(first.database_url) == 1

            await wait_for(persisted, 30, "the worker to persist once bound again")
            await wait_for(ready, 30, "/readyz to be 200 again")

    assert refusal["ready"] is False
    assert refusal["detail"].startswith(
        f"namespace {first.namespace} is bound to database {second_id}, not to this one "
        f"({first_id})"
    )
    # /readyz is public: ids, never a database's name or host.
    assert db_name(first.database_url) not in refusal["detail"]
    assert "127.0.0.1" not in refusal["detail"]
    assert held == 1 and stored_while_refused == 0
    assert await session_count(second.database_url) == 0
    errors = [
        r for r in caplog.records if r.name == "ranker.binding" and r.levelno >= logging.ERROR
    ]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # once, however many checks
    assert await bound_id(redis, keys) == first_id


async def test_a_rebuild_after_a_redis_wipe_binds_the_namespace_again(
    settings: Settings, processes: Processes, redis: Redis
) -> None:
    keys = Keys(settings.namespace)
    seeded = await asyncio.to_thread(processes.run, "seed", "--players", "5", "--sessions", "20")
    assert seeded.returncode == 0, seeded.stderr
    before = await redis.get(keys.bound_database)
    await redis.delete(*[k async for k in redis.scan_iter(f"ranker:{{{settings.namespace}}}:*")])
    wiped = await redis.get(keys.bound_database)

    rebuilt = await asyncio.to_thread(processes.run, "rebuild", settings=settings)
    verified = await asyncio.to_thread(processes.run, "verify", settings=settings)

    assert before is not None and wiped is None
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert await redis.get(keys.bound_database) == before
    assert await bound_id(redis, keys) == await identity_of(settings.database_url)
    assert verified.returncode == 0, verified.stderr


def test_a_worker_on_a_database_not_migrated_yet_says_to_migrate(
    make_settings: Callable[..., Settings],
    processes: Processes,
    make_database: Callable[..., str],
) -> None:
    settings = make_settings(database_url=make_database(migrated=False))
    result = processes.run("worker", settings=settings)

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "database_identity" in result.stderr
    assert result.stderr.strip().endswith("run `ranker migrate` first")
