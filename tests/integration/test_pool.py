"""The request path's connection pool (``connections.QuickPool``): a free connection is taken at
once, and past ``max_connections`` callers wait in line, get the next released connection, or
fail within the timeout, as redis-py's blocking pool has it."""

from __future__ import annotations

import asyncio

import pytest
from redis import exceptions as redis_errors

from ranker.connections import QuickPool, request_redis
from ranker.settings import Settings


async def test_past_its_connections_a_caller_waits_for_the_next_release(settings: Settings) -> None:
    pool = QuickPool.from_url(settings.redis_url, max_connections=2, timeout=5)
    try:
        first, second = await pool.get_connection(), await pool.get_connection()
        assert first is not second
        waiting = asyncio.ensure_future(pool.get_connection())
        queued = asyncio.ensure_future(pool.get_connection())
        await asyncio.sleep(0)  # one turn: both reach the pool and find none free
        assert not waiting.done() and not queued.done()
        await pool.release(first)
        assert await asyncio.wait_for(waiting, 5) is first  # the first in line gets it
        assert not queued.done()
        await pool.release(second)
        assert await asyncio.wait_for(queued, 5) is second
        # Free again: taken at once, the same connections reused.
        await pool.release(first)
        assert await pool.get_connection() is first
    finally:
        await pool.disconnect()


async def test_none_released_within_the_timeout_fails_the_caller(settings: Settings) -> None:
    pool = QuickPool.from_url(settings.redis_url, max_connections=1, timeout=0.2)
    try:
        await pool.get_connection()
        with pytest.raises(redis_errors.ConnectionError, match="No connection available"):
            await pool.get_connection()
    finally:
        await pool.disconnect()


async def test_many_concurrent_calls_share_the_bounded_pool(settings: Settings) -> None:
    redis = request_redis(settings.model_copy(update={"redis_max_connections": 3}))
    try:
        key = f"ranker:{{{settings.namespace}}}:pool-test"
        await asyncio.gather(*(redis.incr(key) for _ in range(200)))
        assert int(await redis.get(key)) == 200
        pool = redis.connection_pool
        assert isinstance(pool, QuickPool)
        assert len(pool._available_connections) + len(pool._in_use_connections) <= 3
        await redis.delete(key)
    finally:
        await redis.aclose()
