"""No lost updates: concurrent submissions for one player over real HTTP connections each count
exactly once, in Redis at once and in PostgreSQL once the worker has drained."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.verify import wait_drained
from ranker.settings import Settings
from ranker.shards import shards_of
from tests.fixtures.ranker import Processes, auth_headers

#: The core tests run on the single server and on the local Redis Cluster.
pytestmark = [pytest.mark.cluster, pytest.mark.sharded]

SUBMISSIONS = 2_000
CONNECTIONS = 32
PLAYER = 77


async def sql_state(pool: AsyncConnectionPool) -> tuple[int, int]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT score FROM board_scores WHERE board = 'global' AND user_id = %s),"
            " (SELECT count(*) FROM game_sessions WHERE user_id = %s)",
            (PLAYER, PLAYER),
        )
        row = await cur.fetchone()
        assert row is not None
        return row[0], row[1]


async def test_concurrent_submissions_for_one_player_are_all_counted(
    processes: Processes,
    redis: Redis,
    pool: AsyncConnectionPool,
    settings: Settings,
) -> None:
    url, _ = await processes.serve()  # API and worker in one process, as deployed
    shards = shards_of(settings.namespace, settings.board_shards)
    keys = shards.of(PLAYER)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(url, connector=connector, headers=auth_headers()) as http:
        async with http.post(
            "/api/leaderboard/submit", json={"user_id": PLAYER, "score": 500}
        ) as r:
            assert r.status == 200, await r.text()
        await wait_drained(redis, shards, 30)
        redis_before = int(float(await redis.zscore(keys.board("global"), PLAYER) or 0))
        sql_before = await sql_state(pool)

        async def connection(index: int) -> list[int]:
            statuses = []
            for _ in range(index, SUBMISSIONS, CONNECTIONS):
                body = {"user_id": PLAYER, "score": 1, "game_mode": "team"}
                async with http.post("/api/leaderboard/submit", json=body) as response:
                    statuses.append(response.status)
            return statuses

        results = await asyncio.gather(*(connection(i) for i in range(CONNECTIONS)))

    statuses = [status for batch in results for status in batch]
    assert statuses.count(200) == SUBMISSIONS
    redis_after = int(float(await redis.zscore(keys.board("global"), PLAYER) or 0))
    team = int(float(await redis.zscore(keys.board("mode:team"), PLAYER) or 0))
    assert redis_after - redis_before == SUBMISSIONS
    assert team == SUBMISSIONS
    await wait_drained(redis, shards, 60)
    total, rows = await sql_state(pool)
    assert total - sql_before[0] == SUBMISSIONS
    assert rows - sql_before[1] == SUBMISSIONS
