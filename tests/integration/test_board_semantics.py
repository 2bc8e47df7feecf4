"""What each kind of board counts: for every operator (sum, best, last), order (desc, asc) and
game-mode filter (none, one mode), a player's score and rank in Redis, read back through the
HTTP reads (the players endpoint and a walk of every page), equal what PostgreSQL computes from
the session log alone (``game_sessions``: SUM, MAX, MIN or the latest by ``accepted_seq``, of
the sessions the board's filter keeps, ranked by ``RANK() OVER (ORDER BY score DESC|ASC)``);
after a drain, so does ``board_scores``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, LiteralString

import httpx
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.rebuild import Rebuild
from persistence.worker import Worker
from ranker.settings import Settings
from tests.fixtures.ranker import ADMIN_KEY, api_process, auth_headers

#: The core tests run on the single server and on the local Redis Cluster.
pytestmark = pytest.mark.cluster

ADMIN = auth_headers(ADMIN_KEY)
MODES = ("solo", "team")
#: The mode of the filtered boards (the other one's sessions must not count there).
FILTERED = "team"
#: Scores may be negative (RANKER_SCORE_MIN): a sum may fall, a lowest best be below zero.
SCORE_MIN = -5
USERS = range(1, 9)
#: Walked in pages this short, so that pages start inside groups of ties.
PAGE = 3

Session = tuple[int, int, str | None]


@dataclass(frozen=True)
class Board:
    operator: str
    order: str
    game_mode: str | None

    @property
    def id(self) -> str:
        return f"{self.operator}-{self.order}-{self.game_mode or 'all'}"

    def counts(self, mode: str) -> bool:
        return self.game_mode is None or self.game_mode == mode


BOARDS = [
    Board(operator, order, game_mode)
    for operator in ("sum", "best", "last")
    for order in ("desc", "asc")
    for game_mode in (None, FILTERED)
]

#: The score of a player on a board, from the board's sessions, as PostgreSQL computes it.
AGGREGATES: dict[tuple[str, str], LiteralString] = {
    ("sum", "desc"): "sum(score)::bigint",
    ("sum", "asc"): "sum(score)::bigint",
    ("best", "desc"): "max(score)",
    ("best", "asc"): "min(score)",
    # The latest accepted: the acceptance order (here the order of submission too).
    ("last", "desc"): "(array_agg(score ORDER BY accepted_seq DESC))[1]",
    ("last", "asc"): "(array_agg(score ORDER BY accepted_seq DESC))[1]",
}

# Few players and scores, negative ones among them: boards full of ties, players who repeat.
sessions_strategy = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        st.sampled_from([SCORE_MIN, -1, 0, 0, 1, 2, 3, 7]),
        st.sampled_from([None, *MODES]),  # None: the default mode (solo)
    ),
    min_size=1,
    max_size=60,
)


def model(board: Board, sessions: list[tuple[int, int, str]]) -> dict[int, int]:
    """A board's scores computed in Python from the sessions so far (mode already resolved)."""
    scores: dict[int, int] = {}
    for user, score, mode in sessions:
        if not board.counts(mode):
            continue
        if user not in scores or board.operator == "last":
            scores[user] = score
        elif board.operator == "sum":
            scores[user] += score
        elif board.order == "desc":
            scores[user] = max(scores[user], score)
        else:
            scores[user] = min(scores[user], score)
    return scores


def rank_of(scores: dict[int, int], user: int, order: str) -> int:
    """Competition rank: 1 + the number of players with a strictly better score."""
    mine = scores[user]
    if order == "desc":
        return 1 + sum(1 for s in scores.values() if s > mine)
    return 1 + sum(1 for s in scores.values() if s < mine)


async def reference(pool: AsyncConnectionPool, board: Board) -> dict[int, tuple[int, int]]:
    """``{user: (score, rank)}`` of a board computed by PostgreSQL from ``game_sessions``."""
    query = sql.SQL(
        "WITH scores AS ("
        "  SELECT user_id, {aggregate} AS score FROM game_sessions"
        "  WHERE %(mode)s::text IS NULL OR game_mode = %(mode)s GROUP BY user_id)"
        " SELECT user_id, score, RANK() OVER (ORDER BY score {direction}) FROM scores"
    ).format(
        aggregate=sql.SQL(AGGREGATES[board.operator, board.order]),
        direction=sql.SQL("DESC" if board.order == "desc" else "ASC"),
    )
    async with pool.connection() as conn:
        cur = await conn.execute(query, {"mode": board.game_mode})
        return {user: (score, rank) for user, score, rank in await cur.fetchall()}


async def stored(pool: AsyncConnectionPool, board: Board) -> dict[int, int]:
    """``{user: score}`` of a board as the worker persisted it."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT user_id, score FROM board_scores WHERE board = %s AND period = 'all'",
            [board.id],
        )
        return dict(await cur.fetchall())


async def walk(http: httpx.AsyncClient, board: Board) -> list[tuple[int, int, int]]:
    """``(user, score, rank)`` of every page of a board, through ``next_cursor``."""
    entries: list[tuple[int, int, int]] = []
    params: dict[str, Any] = {"limit": PAGE}
    while True:
        response = await http.get(f"/api/boards/{board.id}/top", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        entries += [(e["user_id"], e["score"], e["rank"]) for e in page["entries"]]
        if page["next_cursor"] is None:
            return entries
        params = {"limit": PAGE, "cursor": page["next_cursor"]}


def in_board_order(expected: dict[int, tuple[int, int]], order: str) -> list[tuple[int, int, int]]:
    """The reference as a walk gives it: by score, ties in Redis's member order (ZREVRANGE on
    a desc board, ZRANGE on an asc one: by member text)."""
    users = sorted(expected, key=lambda u: (expected[u][0], str(u)), reverse=order == "desc")
    return [(user, *expected[user]) for user in users]


async def check_reads(
    http: httpx.AsyncClient, board: Board, expected: dict[int, tuple[int, int]]
) -> None:
    """Every player's standing (or absence) and a full walk of the board against ``expected``."""
    for user in USERS:
        response = await http.get(f"/api/boards/{board.id}/players/{user}")
        if user not in expected:
            assert response.status_code == 404, (board.id, user, response.text)
            continue
        assert response.status_code == 200, response.text
        standing = response.json()
        got = (standing["score"], standing["rank"], standing["members"])
        assert got == (*expected[user], len(expected)), (board.id, user)
    assert await walk(http, board) == in_board_order(expected, board.order), board.id


async def count_and_check(
    settings: Settings, redis: Redis, pool: AsyncConnectionPool, sessions: list[Session]
) -> None:
    """Create every board, submit ``sessions`` in order over HTTP (each answer's standings
    checked against the Python model), then check every board against SQL."""
    accepted: list[tuple[int, int, str]] = []
    async with api_process(settings) as http:
        for board in BOARDS:
            definition = {"operator": board.operator, "order": board.order, "reset": "never"}
            put = await http.put(
                f"/api/boards/{board.id}",
                json={**definition, "game_mode": board.game_mode},
                headers=ADMIN,
            )
            assert put.status_code == 201, put.text
        for number, (user, score, mode) in enumerate(sessions):
            body: dict[str, Any] = {"user_id": user, "score": score, "session_id": f"s{number}"}
            if mode is not None:
                body["game_mode"] = mode
            response = await http.post("/api/leaderboard/submit", json=body)
            assert response.status_code == 200, response.text
            accepted.append((user, score, mode or settings.default_game_mode))
            counted = response.json()["boards"]
            for board in BOARDS:
                if not board.counts(accepted[-1][2]):
                    assert board.id not in counted, (number, board.id)
                    continue
                scores = model(board, accepted)
                standing = (scores[user], rank_of(scores, user, board.order))
                assert (counted[board.id]["score"], counted[board.id]["rank"]) == standing, (
                    number,
                    board.id,
                )

        # Redis before the drain (which only persists: the boards must not move).
        live = {board.id: await walk(http, board) for board in BOARDS}
        await Worker(settings, redis, pool).drain()
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT session_id, accepted_seq FROM game_sessions ORDER BY accepted_seq"
            )
            persisted = await cur.fetchall()
        # The acceptance order is the submission order ('last' relies on it below).
        assert [s for s, _ in persisted] == [f"s{n}" for n in range(len(sessions))]
        assert len({seq for _, seq in persisted}) == len(sessions)

        for board in BOARDS:
            expected = await reference(pool, board)
            python = model(board, accepted)
            # The reference and the model agree (a check of the check).
            assert {u: s for u, (s, _) in expected.items()} == python, board.id
            assert live[board.id] == in_board_order(expected, board.order), board.id
            await check_reads(http, board, expected)
            assert await stored(pool, board) == python, board.id


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sessions=sessions_strategy)
# A last session worse than the one before, on each order; a negative sum; a mode filter.
@example(sessions=[(1, 7, "team"), (2, 3, "team"), (1, -1, "team"), (2, 7, "solo")])
@example(sessions=[(1, -5, None), (1, 3, "team"), (2, 2, "team"), (1, -1, "solo")])
async def test_every_kind_of_board_agrees_with_sql_over_the_session_log(
    sessions: list[Session],
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
) -> None:
    # A namespace and empty tables for each example: examples share the test's fixtures.
    settings = make_settings(
        namespace=f"h{uuid.uuid4().hex[:10]}", game_modes=MODES, score_min=SCORE_MIN
    )
    async with pool.connection() as conn:
        await conn.execute("TRUNCATE game_sessions, board_scores, players, board_definitions")
    await Rebuild(settings, redis, pool).run()
    try:
        await count_and_check(settings, redis, pool, sessions)
    finally:
        keys = [key async for key in redis.scan_iter(f"ranker:{{{settings.namespace}}}:*")]
        if keys:
            await redis.delete(*keys)


async def test_last_shows_the_latest_session_when_an_earlier_one_was_better(
    make_settings: Callable[..., Settings], redis: Redis, pool: AsyncConnectionPool
) -> None:
    settings = make_settings(game_modes=MODES, score_min=SCORE_MIN)
    await Rebuild(settings, redis, pool).run()
    # Each last session is worse than an earlier one somewhere: player 1's 50 then 10 (then -5)
    # on desc boards, player 3's 10 then 50 on asc ones. The team boards keep player 1's last
    # team session (10), not the later solo one.
    sessions: list[Session] = [
        (1, 50, "team"),
        (2, 30, "team"),
        (1, 10, "team"),
        (1, -5, "solo"),
        (3, 10, "solo"),
        (3, 50, "solo"),
    ]
    async with api_process(settings) as http:
        for board in BOARDS:
            if board.operator == "last":
                definition = {
                    "operator": "last",
                    "order": board.order,
                    "game_mode": board.game_mode,
                }
                put = await http.put(f"/api/boards/{board.id}", json=definition, headers=ADMIN)
                assert put.status_code == 201, put.text
        for number, (user, score, mode) in enumerate(sessions):
            session = {
                "user_id": user,
                "score": score,
                "game_mode": mode,
                "session_id": f"s{number}",
            }
            assert (await http.post("/api/leaderboard/submit", json=session)).status_code == 200
        await Worker(settings, redis, pool).drain()

        wanted = {
            # board: {user: (score, rank)}
            "last-desc-all": {1: (-5, 3), 2: (30, 2), 3: (50, 1)},
            "last-asc-all": {1: (-5, 1), 2: (30, 2), 3: (50, 3)},
            "last-desc-team": {1: (10, 2), 2: (30, 1)},
            "last-asc-team": {1: (10, 1), 2: (30, 2)},
        }
        for board in BOARDS:
            if board.operator != "last":
                continue
            assert await reference(pool, board) == wanted[board.id], board.id
            await check_reads(http, board, wanted[board.id])
            assert await stored(pool, board) == {u: s for u, (s, _) in wanted[board.id].items()}
