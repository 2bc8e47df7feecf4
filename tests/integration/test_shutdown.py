"""Graceful shutdown: SIGTERM lets in-flight requests finish, and the worker commits and
acknowledges the batch in hand; nothing is left half-done."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from ranker.keys import WORKER_GROUP, Keys
from ranker.settings import Settings
from tests.fixtures.ranker import Processes, auth_headers, wait_for


async def test_sigterm_finishes_requests_and_the_worker_batch(
    processes: Processes,
    redis: Redis,
    pool: AsyncConnectionPool,
    settings: Settings,
    loaded: None,
) -> None:
    url, server = await processes.serve()
    accepted: set[str] = set()
    sent: set[str] = set()
    stop_sending = asyncio.Event()

    async def sender(index: int, http: aiohttp.ClientSession) -> None:
        n = 0
        while not stop_sending.is_set():
            session_id = f"sd-{index}-{n}"
            n += 1
            sent.add(session_id)
            try:
                body = {"user_id": 1 + n % 50, "score": 1, "session_id": session_id}
                async with http.post("/api/leaderboard/submit", json=body) as response:
                    assert response.status == 200, await response.text()
                    accepted.add(session_id)
            except aiohttp.ClientError:
                return  # the server is going away: this one was not acknowledged

    async with aiohttp.ClientSession(
        url, connector=aiohttp.TCPConnector(limit=16), headers=auth_headers()
    ) as http:
        senders = [asyncio.create_task(sender(i, http)) for i in range(16)]

        async def flowing() -> bool:
            return len(accepted) >= 500

        await wait_for(flowing, 30, "submissions to flow")
        server.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(server.wait, 30)
        stop_sending.set()
        await asyncio.gather(*senders)

    keys = Keys(settings.namespace)
    pending = await redis.xpending(keys.events, WORKER_GROUP)
    # uvicorn finishes its graceful shutdown, then re-raises the signal it caught.
    assert exit_code in (0, -signal.SIGTERM), processes.log_of(server)
    assert "Application shutdown complete." in processes.log_of(server)
    assert pending["pending"] == 0, "the worker left a batch read but not acknowledged"

    drained = processes.run("worker", "--burst")  # what the stopped worker had not read yet
    assert drained.returncode == 0, drained.stderr
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT session_id FROM game_sessions")
        stored = [row[0] for row in await cur.fetchall()]
    assert len(stored) == len(set(stored)), "a session was stored twice"
    assert accepted <= set(stored) <= sent
    assert processes.run("verify", "--deep").returncode == 0
