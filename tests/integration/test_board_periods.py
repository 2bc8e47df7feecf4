"""Periods with a moved clock: sessions on both sides of a daily, a weekly (Sunday -> Monday)
and a monthly boundary (31 December -> 1 January, in ISO week 2026-W53) land in the right
periods, in a zone other than UTC too; `previous` and period ids read the old ones; a service
stopped across a boundary loses nothing; a period older than `retain_periods` answers from
PostgreSQL exactly as it did from Redis."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.verify import Verifier
from persistence.worker import Worker
from ranker.settings import Settings
from ranker.shards import shard_of
from tests.fixtures.ranker import ADMIN_KEY, api_process, auth_headers, namespace_keys

#: The core tests run on the single server and on the local Redis Cluster.
pytestmark = pytest.mark.cluster

BOARDS = {
    "daily-best": {"operator": "best", "reset": "daily"},
    "weekly-sum": {"operator": "sum", "reset": "weekly"},
    "monthly-best": {"operator": "best", "reset": "monthly"},
    "ny-daily": {"operator": "sum", "reset": "daily", "timezone": "America/New_York"},
}


class Clock:
    """The API's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.ms = 0

    def set(self, text: str) -> None:
        self.ms = int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)

    def __call__(self) -> int:
        return self.ms


async def submit(http: httpx.AsyncClient, user_id: int, score: int) -> dict[str, Any]:
    response = await http.post("/api/leaderboard/submit", json={"user_id": user_id, "score": score})
    assert response.status_code == 200, response.text
    return {board: standing["period"] for board, standing in response.json()["boards"].items()}


async def scores(http: httpx.AsyncClient, board: str, period: str) -> dict[int, int]:
    response = await http.get(f"/api/boards/{board}/top", params={"period": period, "limit": 100})
    assert response.status_code == 200, response.text
    return {entry["user_id"]: entry["score"] for entry in response.json()["entries"]}


async def test_sessions_land_in_the_period_of_their_acceptance_across_every_boundary(
    settings: Settings,
    loaded: None,
    worker: Worker,
    redis: Redis,
    pool: AsyncConnectionPool,
    make_settings: Callable[..., Settings],
) -> None:
    clock = Clock()
    clock.set("2026-12-27T12:00:00+00:00")
    async with api_process(settings, clock) as http:
        for board, fields in BOARDS.items():
            created = await http.put(
                f"/api/boards/{board}",
                json={**fields, "retain_periods": 8},
                headers=auth_headers(ADMIN_KEY),
            )
            assert created.status_code == 201, created.text

        clock.set("2026-12-27T23:59:59.999+00:00")  # Sunday, the last instant of 2026-W52
        sunday = await submit(http, 1, 10)
        clock.set("2026-12-28T00:00:00+00:00")  # Monday: 2026-W53 begins
        monday = await submit(http, 1, 20)
        clock.set("2026-12-31T23:59:59+00:00")  # 18:59 in New York
        december = await submit(http, 2, 30)
        clock.set("2027-01-01T00:00:00.001+00:00")  # still 31 December in New York
        january = await submit(http, 2, 40)
        clock.set("2027-01-01T05:00:00+00:00")  # 1 January in New York too
        later = await submit(http, 2, 5)

        assert (sunday["daily-best"], monday["daily-best"]) == ("2026-12-27", "2026-12-28")
        assert (sunday["weekly-sum"], monday["weekly-sum"]) == ("2026-W52", "2026-W53")
        assert (december["weekly-sum"], january["weekly-sum"]) == ("2026-W53", "2026-W53")
        assert (december["monthly-best"], january["monthly-best"]) == ("2026-12", "2027-01")
        assert (december["daily-best"], january["daily-best"]) == ("2026-12-31", "2027-01-01")
        assert (december["ny-daily"], january["ny-daily"]) == ("2026-12-31", "2026-12-31")
        assert later["ny-daily"] == "2027-01-01"

        assert await scores(http, "weekly-sum", "current") == {1: 20, 2: 75}  # 2: 30 + 40 + 5
        assert await scores(http, "weekly-sum", "2026-W53") == {1: 20, 2: 75}
        assert await scores(http, "weekly-sum", "previous") == {1: 10}  # W52
        assert await scores(http, "monthly-best", "previous") == {1: 20, 2: 30}
        assert await scores(http, "monthly-best", "current") == {2: 40}
        assert await scores(http, "ny-daily", "2026-12-31") == {2: 70}
        assert await scores(http, "ny-daily", "current") == {2: 5}
        assert await scores(http, "global", "current") == {1: 30, 2: 75}

        # The service stops before a boundary and starts after it: nothing is lost or reset
        # late; the first session after it opens the new period.
        clock.set("2027-01-01T23:00:00+00:00")
        await submit(http, 3, 7)
    clock.set("2027-01-03T09:00:00+00:00")  # two days later, a Sunday
    async with api_process(settings, clock) as http:
        assert await scores(http, "daily-best", "2027-01-01") == {2: 40, 3: 7}
        assert await scores(http, "daily-best", "current") == {}
        after = await submit(http, 3, 9)
        assert after["daily-best"] == "2027-01-03"
        assert await scores(http, "daily-best", "current") == {3: 9}
        assert await scores(http, "daily-best", "previous") == {}  # 2 January held nobody
        assert await scores(http, "weekly-sum", "current") == {1: 20, 2: 75, 3: 16}  # still W53

    await worker.drain()
    report = await Verifier(settings, redis, pool).run(
        now=datetime.fromtimestamp(clock.ms / 1000, UTC)
    )
    assert report.ok, report.differences
    assert report.members > 0
    assert await Verifier(settings, redis, pool).deep() == []
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT board, period, user_id, score FROM board_scores"
            " WHERE board IN ('weekly-sum', 'ny-daily') ORDER BY 1, 2, 3"
        )
        assert await cur.fetchall() == [
            ("ny-daily", "2026-12-27", 1, 30),
            ("ny-daily", "2026-12-31", 2, 70),
            ("ny-daily", "2027-01-01", 2, 5),
            ("ny-daily", "2027-01-01", 3, 7),
            ("ny-daily", "2027-01-03", 3, 9),
            ("weekly-sum", "2026-W52", 1, 10),
            ("weekly-sum", "2026-W53", 1, 20),
            ("weekly-sum", "2026-W53", 2, 75),
            ("weekly-sum", "2026-W53", 3, 16),
        ]


@pytest.mark.sharded  # a copy per shard, each of its own players
async def test_a_period_older_than_its_retention_answers_as_it_did_from_redis(
    settings: Settings, loaded: None, worker: Worker, redis: Redis
) -> None:
    clock = Clock()
    clock.set("2026-12-10T08:00:00+00:00")
    async with api_process(settings, clock) as http:
        created = await http.put(
            "/api/boards/daily",
            json={"operator": "best", "order": "asc", "reset": "daily", "retain_periods": 1},
            headers=auth_headers(ADMIN_KEY),
        )
        assert created.status_code == 201, created.text
        for user_id, score in [(1, 30), (2, 10), (3, 30), (4, 50), (5, 20), (2, 40)]:
            await submit(http, user_id, score)
        reads = {
            "top": ("/api/boards/daily/top", {"limit": 2}),
            "player": ("/api/boards/daily/players/3", {}),
            "around": ("/api/boards/daily/around/3", {"limit": 4}),
        }

        async def read_all(period: str) -> dict[str, Any]:
            answers = {}
            for name, (path, params) in reads.items():
                response = await http.get(path, params={**params, "period": period})
                assert response.status_code == 200, (name, response.text)
                answers[name] = response.json()
            page = answers["top"]
            rest = await http.get(
                "/api/boards/daily/top", params={"period": period, "cursor": page["next_cursor"]}
            )
            answers["rest"] = rest.json()
            lookup = await http.post(
                "/api/boards/daily/lookup", json={"user_ids": [4, 1, 9], "period": period}
            )
            answers["lookup"] = lookup.json()
            return answers

        live = await read_all("2026-12-10")
        await worker.drain()
        clock.set("2026-12-12T08:00:00+00:00")  # 10 December is two periods back: beyond 1
        archived = await read_all("2026-12-10")
        again = await read_all("2026-12-10")  # from the copy reloaded by the first read
        periods = (await http.get("/api/boards/daily/periods")).json()

    assert archived == live
    assert again == live
    assert [e["user_id"] for e in live["top"]["entries"]] == [2, 5]
    assert live["player"]["rank"] == 3
    assert [p["id"] for p in periods["periods"]] == ["2026-12-10"]
    assert periods["periods"][0]["members"] == 5
    keys = await namespace_keys(redis, settings, "archive:*")
    # One copy per board shard holding players of the period (one without shards).
    players = range(1, 6)  # the five who played on 10 December
    assert len(keys) == len({shard_of(user, settings.board_shards) for user in players})
