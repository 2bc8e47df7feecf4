"""``ranker verify``: exit 0 when Redis and PostgreSQL agree, non-zero naming a difference."""

from __future__ import annotations

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.worker import Worker
from ranker.keys import Keys
from ranker.settings import Settings
from ranker.shards import shards_of
from tests.fixtures.ranker import Processes

#: The core tests run on the single server and on the local Redis Cluster, and on the cluster
#: with sharded boards (each player's entries on the player's shard).
pytestmark = [pytest.mark.cluster, pytest.mark.sharded]


def keys_of(settings: Settings, user_id: int) -> Keys:
    return shards_of(settings.namespace, settings.board_shards).of(user_id)


async def fill(client: httpx.AsyncClient, worker: Worker) -> None:
    for user_id in range(1, 30):
        mode = "solo" if user_id % 2 else "team"
        body = {"user_id": user_id, "score": user_id * 7 % 11, "game_mode": mode}
        assert (await client.post("/api/leaderboard/submit", json=body)).status_code == 200
    await worker.drain()


async def test_verify_exits_0_when_redis_and_sql_agree(
    client: httpx.AsyncClient, worker: Worker, processes: Processes
) -> None:
    await fill(client, worker)

    result = processes.run("verify", "--deep")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: 58 members agree" in result.stdout


async def test_verify_fails_and_prints_a_score_planted_in_redis(
    client: httpx.AsyncClient,
    worker: Worker,
    processes: Processes,
    redis: Redis,
    settings: Settings,
) -> None:
    await fill(client, worker)
    await redis.zincrby(keys_of(settings, 4).board("mode:team"), 5, "4")

    result = processes.run("verify")

    assert result.returncode == 1
    assert "difference: mode-team user 4: redis=" in result.stdout
    assert "FAILED: 1 differences" in result.stderr


async def test_verify_fails_on_a_member_missing_from_redis_or_sql(
    client: httpx.AsyncClient,
    worker: Worker,
    processes: Processes,
    redis: Redis,
    settings: Settings,
    pool: AsyncConnectionPool,
) -> None:
    await fill(client, worker)
    await redis.zrem(keys_of(settings, 3).board("global"), "3")
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM board_scores WHERE board = 'mode-solo' AND user_id = 5")

    result = processes.run("verify")

    assert result.returncode == 1
    assert "difference: global user 3: redis=None sql=" in result.stdout
    assert "difference: mode-solo user 5: redis=" in result.stdout
    assert "sql=None" in result.stdout


async def test_verify_deep_finds_a_total_that_disagrees_with_its_sessions(
    client: httpx.AsyncClient,
    worker: Worker,
    processes: Processes,
    pool: AsyncConnectionPool,
    redis: Redis,
    settings: Settings,
) -> None:
    await fill(client, worker)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE board_scores SET score = score + 1 WHERE board = 'global' AND user_id = 2"
        )
    await redis.zincrby(keys_of(settings, 2).board("global"), 1, "2")

    shallow = processes.run("verify")
    deep = processes.run("verify", "--deep")

    assert shallow.returncode == 0
    assert deep.returncode == 1
    assert "global user 2" in deep.stdout


async def test_verify_refuses_to_compare_before_the_worker_drains(
    client: httpx.AsyncClient, processes: Processes
) -> None:
    await client.post("/api/leaderboard/submit", json={"user_id": 1, "score": 1})

    result = processes.run("verify", "--wait-s", "0.2")

    assert result.returncode == 1
    assert "still wait for the worker" in result.stderr
