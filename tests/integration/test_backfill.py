"""A board created with ``"backfill": true`` while 5,000 submissions flow: it is computed from
the sessions stored before it (seeded ones, from before acceptance orders were kept, and ones
accepted through the API) and counts the ones after, none twice and none missed; it answers 503
while it fills; afterwards it equals SQL recomputed from ``game_sessions``, and verify exits 0."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.seed import seed
from persistence.verify import wait_drained
from ranker.keys import Keys
from ranker.settings import Settings
from tests.fixtures.ranker import ADMIN_KEY, Processes, auth_headers, wait_for

#: The core tests run on the single server and on the local Redis Cluster.
pytestmark = pytest.mark.cluster

FLOW = 5_000
CONNECTIONS = 16
PLAYERS = 400
BOARDS: dict[str, dict[str, Any]] = {
    "all-time-best": {"operator": "best", "order": "desc", "reset": "never"},
    "solo-low-daily": {
        "operator": "best",
        "order": "asc",
        "reset": "daily",
        "game_mode": "solo",
        "retain_periods": 3,
    },
    "monthly-points": {"operator": "sum", "reset": "monthly", "timezone": "Asia/Tokyo"},
    "last-run": {"operator": "last", "reset": "never"},
}
#: The same aggregates, computed by SQL from the session log alone.
REFERENCE = {
    "s": "sum(score)::bigint",
    "h": "max(score)",
    "l": "min(score)",
    "n": "(array_agg(score ORDER BY accepted_seq DESC NULLS LAST, created_at DESC,"
    " event_id DESC))[1]",
}
OPS = {"all-time-best": "h", "solo-low-daily": "l", "monthly-points": "s", "last-run": "n"}


async def test_a_board_backfilled_while_submissions_flow_equals_the_session_log(
    settings: Settings, processes: Processes, redis: Redis, pool: AsyncConnectionPool
) -> None:
    await seed(settings, pool, players=PLAYERS, sessions=3_000)  # the past, before any board
    url, _ = await processes.serve(settings=settings)
    rng = random.Random(7)
    sent = 0
    halfway = asyncio.Event()

    async def flow(http: aiohttp.ClientSession, index: int) -> None:
        nonlocal sent
        for n in range(index, FLOW, CONNECTIONS):
            body = {
                "user_id": rng.randint(1, PLAYERS),
                "score": rng.randint(1, 10_000),
                "game_mode": rng.choice(settings.game_modes),
                "session_id": f"flow-{n}",
            }
            while True:
                async with http.post("/api/leaderboard/submit", json=body) as response:
                    if response.status == 200:
                        break
                    assert response.status == 503, await response.text()
                    await asyncio.sleep(0.05)  # the Retry-After of a client, not a wait on state
            sent += 1
            if sent == FLOW // 3:
                halfway.set()

    async def create_boards() -> dict[str, dict[str, Any]]:
        await halfway.wait()
        made = {}
        async with httpx.AsyncClient(base_url=url, headers=auth_headers(ADMIN_KEY)) as http:
            for board, fields in BOARDS.items():
                response = await http.put(f"/api/boards/{board}", json={**fields, "backfill": True})
                assert response.status_code == 201, response.text
                made[board] = response.json()
                read = await http.get(f"/api/boards/{board}/top")
                assert read.status_code in (200, 503)
        return made

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(url, connector=connector, headers=auth_headers()) as http:
        _, made = await asyncio.gather(
            asyncio.gather(*(flow(http, i) for i in range(CONNECTIONS))), create_boards()
        )
    assert all(board["state"] == "filling" for board in made.values())

    async with httpx.AsyncClient(base_url=url) as http:

        async def all_live() -> bool:
            states = [(await http.get(f"/api/boards/{b}")).json()["state"] for b in BOARDS]
            return states == ["live"] * len(BOARDS)

        await wait_for(all_live, 60, "the backfills to finish")
        await wait_drained(redis, Keys(settings.namespace), 60)
        verify = await asyncio.to_thread(processes.run, "verify", "--wait-s", "60", "--deep")
        assert verify.returncode == 0, verify.stdout + verify.stderr

        for board, fields in BOARDS.items():
            period = made[board]["period"]["id"]
            expected = await reference(pool, board, fields, period, settings)
            walked = await walk(http, board)
            assert walked == expected, board
            assert len(walked) > 0, board

    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM game_sessions WHERE session_id LIKE 'flow-%%'"
        )
        assert await cur.fetchone() == (FLOW,)


async def reference(
    pool: AsyncConnectionPool, board: str, fields: dict[str, Any], period: str, settings: Settings
) -> dict[int, tuple[int, int]]:
    """``{user_id: (score, rank)}`` of one period of ``board`` from ``game_sessions`` alone."""
    order = "ASC" if fields.get("order") == "asc" else "DESC"
    aggregate = REFERENCE[OPS[board]]
    query = (
        f"SELECT user_id, score, RANK() OVER (ORDER BY score {order}) FROM ("
        f" SELECT user_id, {aggregate} AS score FROM game_sessions"
        " WHERE (%(mode)s::text IS NULL OR game_mode = %(mode)s)"
        " AND ranker_period(%(reset)s, %(zone)s, created_at) = %(period)s"
        " GROUP BY user_id) AS s"
    )
    params = {
        "mode": fields.get("game_mode"),
        "reset": fields["reset"],
        "zone": fields.get("timezone", "UTC"),
        "period": period,
    }
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)  # type: ignore[arg-type]
        return {user: (score, rank) for user, score, rank in await cur.fetchall()}


async def walk(http: httpx.AsyncClient, board: str) -> dict[int, tuple[int, int]]:
    """Every entry of the board's current period, page by page."""
    found: dict[int, tuple[int, int]] = {}
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = (await http.get(f"/api/boards/{board}/top", params=params)).json()
        for entry in page["entries"]:
            assert entry["user_id"] not in found
            found[entry["user_id"]] = (entry["score"], entry["rank"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found
