"""I1 and the idempotency window: a retry inside RANKER_IDEMPOTENCY_TTL_S is not counted
again; one after it is a new submission in Redis and in SQL alike."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.rebuild import Rebuild
from persistence.worker import Worker
from ranker.api.app import create_app
from ranker.keys import Keys
from ranker.settings import Settings
from ranker.shards import shards_of
from tests.fixtures.ranker import Processes, auth_headers, snapshot, wait_for

#: The core tests run on the single server and on the local Redis Cluster.
pytestmark = pytest.mark.cluster

SUBMIT = "/api/leaderboard/submit"


async def session_rows(pool: AsyncConnectionPool, session_id: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM game_sessions WHERE session_id = %s", (session_id,)
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.sharded  # the key is on the player's board shard
async def test_retry_inside_the_window_counts_once_and_after_it_counts_again(
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
    worker: Worker,
    processes: Processes,
    loaded: None,
) -> None:
    settings = make_settings(idempotency_ttl_s=1)
    seen = shards_of(settings.namespace, settings.board_shards).of(7).seen("match-7")
    app = create_app(settings)
    body = {"user_id": 7, "score": 40, "session_id": "match-7"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://r", headers=auth_headers()
        ) as client:
            first = (await client.post(SUBMIT, json=body)).json()
            inside = (await client.post(SUBMIT, json=body)).json()
            await worker.drain()
            assert await session_rows(pool, "match-7") == 1

            async def window_over() -> bool:
                return not await redis.exists(seen)

            await wait_for(window_over, 5, "the idempotency key to expire")
            after = (await client.post(SUBMIT, json=body)).json()
            await worker.drain()

    assert (first["duplicate"], first["total_score"]) == (False, 40)
    assert (inside["duplicate"], inside["total_score"]) == (True, 40)
    assert (after["duplicate"], after["total_score"]) == (False, 80)
    assert after["event_id"] != first["event_id"]
    assert await session_rows(pool, "match-7") == 2
    result = processes.run("verify", "--deep", settings=settings)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_idempotency_keys_expire_with_the_configured_window(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    await client.post(SUBMIT, json={"user_id": 1, "score": 1, "session_id": "s1"})

    ttl_ms = await redis.pttl(Keys(settings.namespace).seen("s1"))

    assert 0 < ttl_ms <= settings.idempotency_ttl_s * 1000
    assert ttl_ms > (settings.idempotency_ttl_s - 60) * 1000


async def test_a_session_id_reused_with_other_data_is_a_409_before_and_after_a_wipe(
    client: httpx.AsyncClient,
    settings: Settings,
    redis: Redis,
    pool: AsyncConnectionPool,
    worker: Worker,
) -> None:
    body = {"user_id": 5, "score": 70, "game_mode": "solo", "session_id": "match-5"}
    assert (await client.post(SUBMIT, json=body)).status_code == 200
    await worker.drain()
    before = await snapshot(redis, pool, settings)
    reused = {**body, "user_id": 6}

    refused = await client.post(SUBMIT, json=reused)
    unchanged = await snapshot(redis, pool, settings)
    await redis.delete(
        *[key async for key in redis.scan_iter(f"ranker:{{{settings.namespace}}}:*")]
    )
    await Rebuild(settings, redis, pool).run()  # Redis wiped: the keys come back from SQL
    refused_after_wipe = await client.post(SUBMIT, json={**body, "score": 71})
    retried_after_wipe = await client.post(SUBMIT, json=body)

    assert refused.status_code == refused_after_wipe.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in refused.json()["errors"]] == ["session_id"]
    assert unchanged == before
    assert retried_after_wipe.status_code == 200 and retried_after_wipe.json()["duplicate"]
    assert await session_rows(pool, "match-5") == 1


async def test_the_digest_named_key_is_what_submit_writes_and_the_rebuild_restores(
    client: httpx.AsyncClient,
    settings: Settings,
    redis: Redis,
    pool: AsyncConnectionPool,
    worker: Worker,
) -> None:
    keys = Keys(settings.namespace)
    body = {"user_id": 8, "score": 30, "game_mode": "team", "session_id": "match-8"}
    first = (await client.post(SUBMIT, json=body)).json()
    written = await redis.get(keys.seen("match-8"))
    ttl_ms = await redis.pttl(keys.seen("match-8"))
    await worker.drain()
    await redis.delete(
        *[key async for key in redis.scan_iter(f"ranker:{{{settings.namespace}}}:*")]
    )

    await Rebuild(settings, redis, pool).run()
    restored = await redis.get(keys.seen("match-8"))
    retry = (await client.post(SUBMIT, json=body)).json()
    reused = await client.post(SUBMIT, json={**body, "game_mode": "solo"})

    assert written is not None and len(written) == 28
    assert restored == written
    assert 0 < await redis.pttl(keys.seen("match-8")) <= ttl_ms
    assert not await redis.exists(keys.seen_legacy("match-8"))
    assert (retry["duplicate"], retry["event_id"]) == (True, first["event_id"])
    assert reused.status_code == 409
    assert await session_rows(pool, "match-8") == 1
