"""The API with its background services in one process, as ``ranker serve`` runs it."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from persistence.service import Persistence
from persistence.stream import unpersisted
from ranker.api.app import create_app
from ranker.keys import Keys
from ranker.settings import Settings
from tests.fixtures.ranker import auth_headers, wait_for


async def test_worker_and_watchdog_run_beside_the_api_and_stop_with_it(
    settings: Settings, redis: Redis
) -> None:
    keys = Keys(settings.namespace)
    app = create_app(settings, [Persistence(settings)])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://r", headers=auth_headers()
        ) as client:

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await wait_for(ready, 20, "the watchdog's first rebuild")
            for user_id in range(1, 11):
                body = {"user_id": user_id, "score": user_id, "session_id": f"svc-{user_id}"}
                assert (await client.post("/api/leaderboard/submit", json=body)).status_code == 200

            async def persisted() -> bool:
                return await unpersisted(redis, keys) == 0

            await wait_for(persisted, 20, "the worker to persist the submissions")
            # Redis loses the namespace while serving (only its keys: the server is shared).
            await redis.delete(
                *[k async for k in redis.scan_iter(f"ranker:{{{keys.namespace}}}:*")]
            )

            await wait_for(ready, 20, "the boards to be rebuilt from PostgreSQL")
            standing = (await client.get("/api/leaderboard/rank/10")).json()
            retry = await client.post(
                "/api/leaderboard/submit", json={"user_id": 10, "score": 10, "session_id": "svc-10"}
            )

    assert standing == {"user_id": 10, "total_score": 10, "rank": 1, "username": None}
    # The rebuild restored the idempotency keys of persisted sessions: still a duplicate.
    assert retry.json()["duplicate"] is True
    assert retry.json()["total_score"] == 10
