"""Redis memory is bounded and announced: above RANKER_REDIS_MEMORY_WATERMARK of maxmemory submit
answers 503 with Retry-After (nothing stored), reads and retries still answer, /readyz says why;
a write Redis refuses at its maxmemory (OOM) is a 503 naming it, not a 500."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis
from starlette.applications import Starlette

from persistence.rebuild import Rebuild
from ranker.api.app import create_app
from ranker.api.state import AppState
from ranker.settings import Settings
from tests.fixtures.ranker import auth_headers, snapshot, wait_for

SUBMIT = "/api/leaderboard/submit"
#: The filler keys sit outside the namespace, so the snapshots of the namespace ignore them.
FILLER = "test-filler"


@pytest.fixture
def memory_settings(make_settings: Callable[..., Settings], own_redis_url: str) -> Settings:
    return make_settings(redis_url=own_redis_url, redis_memory_watermark="90%")


@pytest.fixture
async def own_redis(memory_settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(memory_settings.redis_url)
    await client.config_set("maxmemory-policy", "noeviction")
    yield client
    await client.aclose()


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    app: Starlette = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ranker", headers=auth_headers()
        ) as client:
            yield client, app.state.ranker


async def used_memory(redis: Redis) -> int:
    info: dict[str, Any] = await redis.info("memory")
    return int(info["used_memory"])


async def fill_to(redis: Redis, fraction: float) -> int:
    """Set a maxmemory four times today's use and fill it to ``fraction`` with keys of 32 KB
    (one big SET would overshoot: its argument counts while it is read); returns the
    maxmemory."""
    maxmemory = 4 * await used_memory(redis)
    await redis.config_set("maxmemory", maxmemory)
    n = 0
    while await used_memory(redis) < fraction * maxmemory:
        await redis.set(f"{FILLER}:{n}", b"x" * 32_768)
        n += 1
    return maxmemory


async def empty(redis: Redis) -> None:
    await redis.delete(*[key async for key in redis.scan_iter(f"{FILLER}:*")])


def gauge(scraped: str, name: str) -> float:
    [value] = [line.split()[1] for line in scraped.splitlines() if line.startswith(f"{name} ")]
    return float(value)


def assert_names_no_address(answer: httpx.Response, settings: Settings) -> None:
    host_port = settings.redis_url.split("//", 1)[1].split("/", 1)[0]
    host = host_port.rsplit(":", 1)[0]
    # ":<port>" rather than the bare port, which may be digits of a byte count in the body.
    for text in (host_port, host, f":{host_port.rsplit(':', 1)[1]}", "redis://"):
        assert text not in answer.text


async def test_above_the_watermark_submit_is_refused_reads_answer_and_below_it_works_again(
    memory_settings: Settings, own_redis: Redis, pool: AsyncConnectionPool
) -> None:
    settings = memory_settings
    await Rebuild(settings, own_redis, pool).run()
    kept = {"user_id": 1, "score": 10, "session_id": "kept"}
    new = {"user_id": 2, "score": 20, "session_id": "new"}
    async with served(settings) as (client, state):
        first = await client.post(SUBMIT, json=kept)
        maxmemory = await fill_to(own_redis, 0.95)

        async def pressed() -> bool:  # the background watcher, no request involved
            return state.memory.pressure() is not None

        await wait_for(pressed, 10, "the watcher to read memory above the watermark")
        before = await snapshot(own_redis, pool, settings)
        refused = await client.post(SUBMIT, json=new)
        after = await snapshot(own_redis, pool, settings)
        retry = await client.post(SUBMIT, json=kept)
        top = await client.get("/api/leaderboard/top")
        rank = await client.get("/api/leaderboard/rank/1")
        ready = await client.get("/readyz")
        scraped = (await client.get("/metrics")).text

        await empty(own_redis)

        async def relieved() -> bool:
            return state.memory.pressure() is None

        await wait_for(relieved, 10, "the watcher to read memory below the watermark")
        accepted = await client.post(SUBMIT, json=new)
        ready_again = await client.get("/readyz")

    assert first.status_code == 200
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == str(settings.retry_after_s)
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["detail"].startswith("Redis memory is 9")
    assert "full (watermark 90%)" in refused.json()["detail"]
    assert_names_no_address(refused, settings)
    assert after == before
    assert (retry.status_code, retry.json()["duplicate"]) == (200, True)
    assert (top.status_code, rank.status_code) == (200, 200)
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert ready.json()["redis_memory"]["full"] is True
    assert ready.json()["redis_memory"]["maxmemory_bytes"] == maxmemory
    assert "watermark 90%" in ready.json()["redis_memory"]["detail"]
    assert_names_no_address(ready, settings)
    assert gauge(scraped, "ranker_redis_maxmemory_bytes") == maxmemory
    assert gauge(scraped, "ranker_redis_memory_used_bytes") >= 0.9 * maxmemory
    assert (accepted.status_code, accepted.json()["duplicate"]) == (200, False)
    assert ready_again.status_code == 200
    assert ready_again.json()["redis_memory"]["full"] is False


async def test_without_maxmemory_nothing_is_refused_and_readyz_says_there_is_nothing_to_compare(
    memory_settings: Settings, own_redis: Redis, pool: AsyncConnectionPool
) -> None:
    await own_redis.config_set("maxmemory", 0)
    await Rebuild(memory_settings, own_redis, pool).run()
    async with served(memory_settings) as (client, _):
        accepted = await client.post(SUBMIT, json={"user_id": 1, "score": 1})
        ready = await client.get("/readyz")

    assert accepted.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["redis_memory"]["maxmemory_bytes"] is None
    assert "no maxmemory configured" in ready.json()["redis_memory"]["detail"]


async def test_a_write_redis_refuses_at_its_maxmemory_is_a_503_naming_it_and_stores_nothing(
    memory_settings: Settings, own_redis: Redis, pool: AsyncConnectionPool
) -> None:
    settings = memory_settings
    await Rebuild(settings, own_redis, pool).run()
    kept = {"user_id": 1, "score": 10, "session_id": "kept"}
    async with served(settings) as (client, state):
        first = await client.post(SUBMIT, json=kept)
        # As if the watcher had not read it yet: Redis itself must refuse.
        state.memory.pressure = lambda: None  # type: ignore[method-assign]
        await own_redis.config_set("maxmemory", 1)
        before = await snapshot(own_redis, pool, settings)
        refused = await client.post(SUBMIT, json={"user_id": 2, "score": 20, "session_id": "new"})
        after = await snapshot(own_redis, pool, settings)
        retry = await client.post(SUBMIT, json=kept)
        top = await client.get("/api/leaderboard/top")
        await own_redis.config_set("maxmemory", 0)
        accepted = await client.post(SUBMIT, json={"user_id": 2, "score": 20, "session_id": "new"})

    assert first.status_code == 200
    assert refused.status_code == 503
    assert "retry-after" in refused.headers
    assert refused.json()["detail"] == (
        "Redis is out of memory (its maxmemory is reached) and refuses writes"
    )
    assert_names_no_address(refused, settings)
    assert after == before
    assert (retry.status_code, retry.json()["duplicate"]) == (200, True)
    assert top.status_code == 200
    assert (accepted.status_code, accepted.json()["duplicate"]) == (200, False)
