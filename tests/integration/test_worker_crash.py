"""I1 through crashes: the worker is SIGKILLed again and again at random moments while
submissions (some of them client retries) flow; after a restart and a drain every accepted
session is in PostgreSQL exactly once and ``ranker verify`` agrees."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Callable

import aiohttp
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.verify import wait_drained
from ranker.keys import Keys
from ranker.settings import Settings
from tests.fixtures.ranker import (
    DEFINED_FIVE,
    FIVE_BOARDS,
    Processes,
    auth_headers,
    boards_counted,
    seeded_random,
    stored_sessions,
)

#: The core tests run on the single server and on the local Redis Cluster.
pytestmark = pytest.mark.cluster

CONNECTIONS = 32
RETRY_EVERY = 10  # one session in ten is sent twice, as a client retrying after a timeout


async def submit_all(url: str, rng: random.Random, submissions: int) -> dict[str, str]:
    """Send the submissions; returns {session_id: event_id} of every accepted session."""
    accepted: dict[str, str] = {}
    plan = [(f"s{n}", rng.randint(1, 500), rng.randint(1, 100)) for n in range(submissions)]
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(url, connector=connector, headers=auth_headers()) as http:

        async def connection(index: int) -> None:
            for session_id, user_id, score in plan[index::CONNECTIONS]:
                body = {
                    "user_id": user_id,
                    "score": score,
                    "session_id": session_id,
                    "game_mode": rng.choice(["solo", "team"]),
                }
                sends = 2 if int(session_id[1:]) % RETRY_EVERY == 0 else 1
                for attempt in range(sends):
                    async with http.post("/api/leaderboard/submit", json=body) as response:
                        assert response.status == 200, await response.text()
                        outcome = await response.json()
                    assert outcome["duplicate"] is (attempt > 0)
                    accepted.setdefault(session_id, outcome["event_id"])
                    assert accepted[session_id] == outcome["event_id"]

        await asyncio.gather(*(connection(i) for i in range(CONNECTIONS)))
    return accepted


async def kill_repeatedly(processes: Processes, done: asyncio.Event, rng: random.Random) -> int:
    """Start the worker, SIGKILL it after a random time, again and again until ``done``."""
    kills = 0
    while not done.is_set():
        worker = processes.start("worker")
        await asyncio.sleep(rng.uniform(0.2, 1.2))  # a random moment of its life, not a wait
        os.kill(worker.pid, signal.SIGKILL)
        await asyncio.to_thread(worker.wait)
        kills += 1
    return kills


@pytest.mark.parametrize(
    "submissions", [20_000, pytest.param(200_000, marks=pytest.mark.slow, id="long")]
)
async def test_killed_workers_lose_nothing_and_count_nothing_twice(
    submissions: int,
    make_settings: Callable[..., Settings],
    processes: Processes,
    redis: Redis,
    pool: AsyncConnectionPool,
    loaded: None,
) -> None:
    rng = seeded_random()
    settings = make_settings(worker_batch_size=200, boards_file=FIVE_BOARDS)
    processes.settings = settings
    url, _ = await processes.serve("--no-worker")
    done = asyncio.Event()
    killer = asyncio.create_task(kill_repeatedly(processes, done, rng))
    try:
        accepted = await submit_all(url, rng, submissions)
    finally:
        done.set()
        kills = await killer

    processes.start("worker")
    await wait_drained(redis, Keys(settings.namespace), 120)
    async with pool.connection() as conn:
        stored = await stored_sessions(conn)
        counted = await boards_counted(conn)

    assert DEFINED_FIVE <= counted, counted  # every session counted on five boards
    assert kills >= 5
    assert len(accepted) == submissions
    assert len(stored) == submissions, "a session is missing or stored twice"
    assert dict(stored) == accepted
    result = processes.run("verify", "--deep")
    assert result.returncode == 0, result.stdout + result.stderr
