"""Reads of a board of thousands of players over HTTP: a walk of its pages through
``next_cursor``, the windows around players, a friends lookup and percentiles, checked against
one another, against the players endpoint and against SQL (``RANK()`` and counts over
``board_scores`` after a drain), on a board of each order full of ties."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.worker import Worker
from ranker.models import SubmitRequest
from ranker.ranking import Ranking
from ranker.settings import Settings
from ranker.shards import shard_of
from tests.fixtures.ranker import ADMIN_KEY, auth_headers, seeded_random

#: The core tests run on the single server and on the local Redis Cluster, and these on the
#: cluster with sharded boards too (pages, windows and lookups merged over the shards).
pytestmark = [pytest.mark.cluster, pytest.mark.sharded]

ADMIN = auth_headers(ADMIN_KEY)
PLAYERS = 2_500
#: Sessions beyond one per player (some players play twice or more).
EXTRA_SESSIONS = 500
#: Few distinct scores: every score is shared by dozens of players.
SCORES = range(0, 31)
#: Sessions submitted at once (each one Lua call; the ASGI app is not in the way), within the
#: fixture client's pool of Redis connections (100).
CHUNK = 50
PAGE = 100
#: Two boards of every session, one of each order, and one of a single mode (a member count
#: that does not divide 100, so percentiles round).
BOARDS: dict[str, dict[str, Any]] = {
    "high": {"operator": "sum", "order": "desc"},
    "low": {"operator": "best", "order": "asc"},
    "team-high": {"operator": "best", "order": "desc", "game_mode": "team"},
}
ORDERED = ["high", "low"]


@dataclasses.dataclass(frozen=True)
class Row:
    user_id: int
    score: int
    rank: int


def rows(entries: list[dict[str, Any]]) -> list[Row]:
    return [Row(e["user_id"], e["score"], e["rank"]) for e in entries]


def board_order(scores: dict[int, int], order: str, shards: int) -> list[int]:
    """The players in board order: by score, ties by board shard (docs/design.md, "Sharded
    boards") and then in Redis's member order (the member text, descending on a desc board as
    ZREVRANGE gives them, ascending on an asc one)."""
    by_member = sorted(scores, key=str, reverse=order == "desc")
    by_shard = sorted(by_member, key=lambda u: shard_of(u, shards))
    return sorted(by_shard, key=lambda u: scores[u], reverse=order == "desc")


def mode_of(user: int) -> str:
    """A player's game mode: team for two players in three (1,667 of the 2,500)."""
    return "team" if user % 3 else "solo"


TEAM_PLAYERS = sum(1 for user in range(1, PLAYERS + 1) if mode_of(user) == "team")


@pytest.fixture
async def boards(
    client: httpx.AsyncClient,
    settings: Settings,
    redis: Redis,
    worker: Worker,
    pool: AsyncConnectionPool,
) -> httpx.AsyncClient:
    """The boards of ``BOARDS`` holding sessions of ``PLAYERS`` players (each one, some more, in
    a random order), persisted by the worker; the client to read them with."""
    for board_id, fields in BOARDS.items():
        body = {"reset": "never", **fields}
        created = await client.put(f"/api/boards/{board_id}", json=body, headers=ADMIN)
        assert created.status_code == 201, created.text
    rng = seeded_random()
    users = list(range(1, PLAYERS + 1)) + [rng.randint(1, PLAYERS) for _ in range(EXTRA_SESSIONS)]
    rng.shuffle(users)
    requests = [
        SubmitRequest(
            user_id=user, score=rng.choice(SCORES), game_mode=mode_of(user), session_id=f"s{i}"
        )
        for i, user in enumerate(users)
    ]
    ranking = Ranking(redis, settings)
    for start in range(0, len(requests), CHUNK):
        await asyncio.gather(*(ranking.submit(r) for r in requests[start : start + CHUNK]))
    # The stream holds the boards' definitions and the sessions.
    assert await worker.drain() == len(BOARDS) + len(requests)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM game_sessions")
        assert await cur.fetchone() == (len(requests),)
    return client


async def walk(client: httpx.AsyncClient, board: str) -> list[Row]:
    """Every entry of a board, page after page of ``PAGE`` through ``next_cursor``."""
    entries: list[Row] = []
    params: dict[str, str | int] = {"limit": PAGE}
    while True:
        response = await client.get(f"/api/boards/{board}/top", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert (page["board"], page["period"], page["members"]) == (board, "all", PLAYERS)
        entries += rows(page["entries"])
        if page["next_cursor"] is None:
            return entries
        # Every page but the last is full.
        assert len(page["entries"]) == PAGE, (board, len(entries))
        params = {"limit": PAGE, "cursor": page["next_cursor"]}


async def sql_ranks(pool: AsyncConnectionPool, board: str) -> dict[int, tuple[int, int]]:
    """``{user: (score, rank)}`` of a board as PostgreSQL ranks ``board_scores``."""
    direction = sql.SQL("ASC" if BOARDS[board]["order"] == "asc" else "DESC")
    query = sql.SQL(
        "SELECT user_id, score, RANK() OVER (ORDER BY score {}) FROM board_scores"
        " WHERE board = %(board)s AND period = 'all'"
    ).format(direction)
    async with pool.connection() as conn:
        cur = await conn.execute(query, {"board": board})
        return {user: (score, rank) for user, score, rank in await cur.fetchall()}


async def player(client: httpx.AsyncClient, board: str, user: int) -> dict[str, Any]:
    response = await client.get(f"/api/boards/{board}/players/{user}")
    assert response.status_code == 200, (board, user, response.text)
    answer: dict[str, Any] = response.json()
    return answer


async def test_a_walk_of_the_pages_gives_every_member_once_in_board_order_with_sql_ranks(
    boards: httpx.AsyncClient, pool: AsyncConnectionPool, settings: Settings
) -> None:
    client = boards

    for board in ORDERED:
        expected = await sql_ranks(pool, board)
        order = BOARDS[board]["order"]
        assert len(expected) == PLAYERS

        walked = await walk(client, board)

        assert len(walked) == PLAYERS, board
        assert len({row.user_id for row in walked}) == PLAYERS, f"{board}: a member twice"
        assert [row.user_id for row in walked] == board_order(
            {user: score for user, (score, _) in expected.items()}, order, settings.board_shards
        ), board
        assert {row.user_id: (row.score, row.rank) for row in walked} == expected, board
        # Many ties, across page boundaries too: the walk is not trivially ranked 1..n.
        assert len({row.rank for row in walked}) < PLAYERS // 20, board
        assert any(walked[i].rank == walked[i - 1].rank for i in range(PAGE, PLAYERS, PAGE))
        for row in walked:
            standing = await player(client, board, row.user_id)
            assert (standing["score"], standing["rank"]) == (row.score, row.rank), (board, row)
            assert standing["members"] == PLAYERS


def window_start(position: int, limit: int, members: int) -> int:
    """Where the window around the player at 0-based ``position`` starts (docs/design.md)."""
    return max(0, min(position - (limit - 1) // 2, members - limit))


@pytest.mark.parametrize("limit", [5, 6])
async def test_the_window_around_a_player_is_a_full_slice_of_the_walk(
    boards: httpx.AsyncClient, limit: int
) -> None:
    client = boards

    for board in ORDERED:
        walked = await walk(client, board)
        members = len(walked)
        # The ends, the middle, and where the window stops sliding for either limit.
        for position in [
            0,
            1,
            2,
            3,
            members // 2,
            members - 4,
            members - 3,
            members - 2,
            members - 1,
        ]:
            user = walked[position].user_id

            response = await client.get(
                f"/api/boards/{board}/around/{user}", params={"limit": limit}
            )

            assert response.status_code == 200, response.text
            window = response.json()
            start = window_start(position, limit, members)
            what = (board, limit, position)
            assert len(window["entries"]) == limit, what
            assert user in [e["user_id"] for e in window["entries"]], what
            assert rows(window["entries"]) == walked[start : start + limit], what
            assert window["members"] == members and window["next_cursor"] is None
        absent = await client.get(f"/api/boards/{board}/around/{PLAYERS + 1}")
        assert absent.status_code == 404, absent.text


async def test_the_window_around_a_player_of_a_small_board_is_the_whole_board(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    created = await client.put("/api/boards/tiny", json={"order": "asc"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    for user, score in [(1, 30), (2, 10), (3, 30)]:
        submitted = await client.post(
            "/api/leaderboard/submit", json={"user_id": user, "score": score}
        )
        assert submitted.status_code == 200, submitted.text
    whole = (await client.get("/api/boards/tiny/top")).json()["entries"]
    ties = board_order({1: 30, 3: 30}, "asc", settings.board_shards)  # 1, 3 on one shard
    assert [(e["user_id"], e["rank"]) for e in whole] == [(2, 1), *((u, 2) for u in ties)]

    for user in (1, 2, 3):
        for limit in (3, 5, 6):
            around = await client.get(f"/api/boards/tiny/around/{user}", params={"limit": limit})
            assert around.status_code == 200, around.text
            assert around.json()["entries"] == whole, (user, limit)
        short = (await client.get(f"/api/boards/tiny/around/{user}", params={"limit": 2})).json()
        position = [e["user_id"] for e in whole].index(user)
        start = window_start(position, 2, 3)
        assert short["entries"] == whole[start : start + 2], user


async def test_a_lookup_gives_the_players_found_in_board_order_and_the_missing_ones(
    boards: httpx.AsyncClient,
) -> None:
    client, rng = boards, seeded_random()

    for board in ORDERED:
        walked = await walk(client, board)
        present = rng.sample(range(1, PLAYERS + 1), 75)
        absent = rng.sample(range(PLAYERS + 1, 2 * PLAYERS), 15)
        wanted = present + absent + rng.sample(present + absent, 10)
        rng.shuffle(wanted)

        response = await client.post(f"/api/boards/{board}/lookup", json={"user_ids": wanted})

        assert response.status_code == 200, response.text
        found = response.json()
        assert found["members"] == PLAYERS
        asked = set(present)
        assert rows(found["entries"]) == [row for row in walked if row.user_id in asked], board
        assert found["missing"] == [u for u in dict.fromkeys(wanted) if u not in asked], board
        for entry in found["entries"]:
            standing = await player(client, board, entry["user_id"])
            assert (standing["score"], standing["rank"]) == (entry["score"], entry["rank"])


async def test_the_percentile_follows_the_counts_of_sql(
    boards: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    client = boards

    for board in BOARDS:
        better = ">" if BOARDS[board]["order"] == "desc" else "<"
        query = sql.SQL(
            "SELECT b.user_id, (SELECT count(*) FROM board_scores AS o"
            "   WHERE o.board = b.board AND o.period = b.period AND o.score {} b.score),"
            " count(*) OVER ()"
            " FROM board_scores AS b WHERE b.board = %(board)s AND b.period = 'all'"
        ).format(sql.SQL(better))
        async with pool.connection() as conn:
            counts = await (await conn.execute(query, {"board": board})).fetchall()
        assert counts, board
        members = counts[0][2]
        assert members == (TEAM_PLAYERS if board == "team-high" else PLAYERS), board

        percentiles: set[float] = set()
        rounded = 0
        for user, strictly_better, total in counts:
            standing = await player(client, board, user)
            rank = strictly_better + 1
            expected = round(100 * (total - rank) / total, 2)
            assert (standing["members"], standing["rank"]) == (total, rank), (board, user)
            assert standing["percentile"] == expected, (board, user, standing)
            percentiles.add(standing["percentile"])
            rounded += expected != 100 * (total - rank) / total
        assert len(percentiles) > 10, board
        if board == "team-high":  # 1,667 members: most percentiles have more than 2 decimals
            assert rounded > members // 2, rounded
