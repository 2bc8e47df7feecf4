"""The write-behind worker: acknowledged only after COMMIT, and PostgreSQL outages waited out."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.database import pool_for
from persistence.stream import ensure_group, unpersisted
from persistence.verify import Verifier
from persistence.worker import Worker
from ranker.dev import servers as devservers
from ranker.keys import Keys
from ranker.models import SubmitRequest
from ranker.ranking import Ranking
from ranker.settings import Settings
from tests.fixtures.ranker import wait_for

#: The core tests run on the single server and on the local Redis Cluster.
pytestmark = pytest.mark.cluster


async def count_sessions(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM game_sessions")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def submit_many(ranking: Ranking, count: int, first: int = 0) -> None:
    for n in range(first, first + count):
        await ranking.submit(SubmitRequest(user_id=1 + n % 7, score=n % 13, session_id=f"w{n}"))


async def test_a_batch_committed_but_never_acknowledged_is_not_counted_twice(
    settings: Settings, redis: Redis, pool: AsyncConnectionPool, loaded: None
) -> None:
    ranking = Ranking(redis, settings)
    await submit_many(ranking, 10)
    crashing = Worker(settings, redis, pool, consumer="crashing")
    await ensure_group(redis, Keys(settings.namespace))

    async def die_before_ack(*args: object, **kwargs: object) -> int:
        raise RuntimeError("killed between COMMIT and XACK")

    crashing.scripts = dataclasses.replace(crashing.scripts, ack=die_before_ack)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await crashing.step(block_ms=None)
    assert await count_sessions(pool) == 10

    survivor = Worker(settings, redis, pool)

    async def drained() -> bool:
        await survivor.step(block_ms=None)  # claims the entries once they are idle long enough
        return await unpersisted(redis, Keys(settings.namespace)) == 0

    await wait_for(drained, 10, "the survivor to claim and settle the crashed batch")
    assert await count_sessions(pool) == 10
    assert (await Verifier(settings, redis, pool).run()).ok


async def test_a_player_row_is_made_once_for_each_new_player(
    settings: Settings, redis: Redis, pool: AsyncConnectionPool, loaded: None
) -> None:
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO players (user_id, username) VALUES (3, 'known')")
    ranking = Ranking(redis, settings)
    worker = Worker(settings, redis, pool)
    await ensure_group(redis, Keys(settings.namespace))
    for first in (0, 10):  # the second batch updates the totals the first one created
        await submit_many(ranking, 10, first)
        await worker.step(block_ms=None)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT user_id, username FROM players ORDER BY user_id")
        players = await cur.fetchall()
        cur = await conn.execute("SELECT DISTINCT user_id FROM board_scores ORDER BY user_id")
        with_totals = [row[0] for row in await cur.fetchall()]
    assert [user_id for user_id, _ in players] == with_totals == list(range(1, 8))
    assert dict(players)[3] == "known"


async def test_postgres_down_for_a_while_loses_nothing(
    make_settings: Callable[..., Settings],
    redis: Redis,
    own_database: tuple[Path, int, str],
) -> None:
    data_dir, port, url = own_database
    settings = make_settings(database_url=url)
    keys = Keys(settings.namespace)
    ranking = Ranking(redis, settings)
    stop = asyncio.Event()
    with devservers.postgres_server(data_dir, port):
        async with pool_for(settings) as pool:
            from persistence.rebuild import Rebuild

            await Rebuild(settings, redis, pool).run()
    async with pool_for(settings, wait=False) as pool:
        worker = Worker(settings, redis, pool, retry_wait_max_s=0.05)
        running = asyncio.create_task(worker.run(stop))
        await submit_many(ranking, 300)  # PostgreSQL is down: accepted, kept in the stream

        async def backlog_held() -> bool:
            return await unpersisted(redis, keys) == 300

        await wait_for(backlog_held, 5, "the backlog to hold every submission")
        with devservers.postgres_server(data_dir, port):

            async def drained() -> bool:
                return await unpersisted(redis, keys) == 0

            await wait_for(drained, 60, "the worker to drain once PostgreSQL is back")
            await submit_many(ranking, 50, first=300)
            await wait_for(drained, 30, "the worker to persist new submissions")
            stop.set()
            await running
            assert await count_sessions(pool) == 350
            assert (await Verifier(settings, redis, pool).run()).ok


async def test_lag_and_backlog_are_measured_for_the_metrics(
    settings: Settings, redis: Redis, pool: AsyncConnectionPool, worker: Worker, loaded: None
) -> None:
    from persistence.stream import lag_s
    from ranker import metrics

    keys = Keys(settings.namespace)
    await submit_many(Ranking(redis, settings), 20)

    async def aged() -> bool:
        return await lag_s(redis, keys) > 0.05

    await wait_for(aged, 5, "the oldest waiting submission to age")
    await worker.sample()
    waiting = (metrics.backlog._value.get(), metrics.worker_lag._value.get())
    await worker.drain()
    await worker.sample()

    assert waiting[0] == 20 and waiting[1] > 0.05
    assert (metrics.backlog._value.get(), metrics.worker_lag._value.get()) == (0, 0)
