"""Moderation against a model: random sequences of submissions, bans, unbans and voids over a
few players, applied one after the other through the HTTP API with a worker running, agree with
a reference computed in Python. Per session the model keeps (player, score, acceptance order)
and whether it was voided alone; per player whether they are banned. Every answer has the
status the model expects (a banned player's submission 403 and not stored, an unban of a player
not banned 404, a ban of a banned player 200 and no change), and each moderation answer shows
the player as the model does. After the sequence, every board (``global``, ``mode-solo`` and a
defined sum, best desc, best asc and last board) shows, through a walk of its top, the scores
and competition ranks of the sessions that count (not voided alone, their player not banned):
sum, max, min or latest by acceptance order; a player with none is absent. After a drain so do
``board_scores`` and the voided flags of ``game_sessions``, and the verifier finds no
difference between Redis and PostgreSQL, nor (deep) between the boards and the session log."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.rebuild import Rebuild
from persistence.verify import Verifier, wait_drained
from persistence.worker import Worker
from ranker.keys import Keys
from ranker.settings import Settings
from tests.fixtures.ranker import ADMIN_KEY, api_process, auth_headers, worker_running

ADMIN = auth_headers(ADMIN_KEY)
PLAYERS = (1, 2, 3, 4)

#: An operation: ("submit", player, score), ("ban", player, 0), ("unban", player, 0) or
#: ("void", index of an accepted session (modulo their number), 0).
Op = tuple[str, int, int]


@dataclass(frozen=True)
class Board:
    id: str
    operator: str
    order: str
    defined: bool = True


BOARDS = [
    Board("global", "sum", "desc", defined=False),
    Board("mode-solo", "sum", "desc", defined=False),
    Board("mod-sum", "sum", "desc"),
    Board("mod-best-desc", "best", "desc"),
    Board("mod-best-asc", "best", "asc"),
    Board("mod-last", "last", "desc"),
]


@dataclass
class Session:
    session_id: str
    player: int
    score: int
    voided_alone: bool = False


@dataclass
class Model:
    """The sessions accepted, in acceptance order, and the players banned now."""

    sessions: list[Session]
    banned: set[int]

    def counts(self, session: Session) -> bool:
        return not session.voided_alone and session.player not in self.banned

    def by_ban(self, session: Session) -> bool:
        """Voided by a ban (an unban counts it again)."""
        return not session.voided_alone and session.player in self.banned

    def scores(self, board: Board) -> dict[int, int]:
        scores: dict[int, int] = {}
        for session in self.sessions:  # acceptance order: 'last' keeps the latest
            if not self.counts(session):
                continue
            user, score = session.player, session.score
            if user not in scores or board.operator == "last":
                scores[user] = score
            elif board.operator == "sum":
                scores[user] += score
            elif board.order == "desc":
                scores[user] = max(scores[user], score)
            else:
                scores[user] = min(scores[user], score)
        return scores

    def standings(self, board: Board) -> dict[int, tuple[int, int]]:
        """``{user: (score, rank)}``: competition ranks, 1 + the strictly better scores."""
        scores = self.scores(board)
        better: Callable[[int, int], bool] = (
            (lambda s, mine: s > mine) if board.order == "desc" else (lambda s, mine: s < mine)
        )
        return {
            user: (mine, 1 + sum(1 for s in scores.values() if better(s, mine)))
            for user, mine in scores.items()
        }


ops_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.sampled_from(PLAYERS), st.sampled_from([0, 1, 3, 3, 7])),
        st.tuples(st.just("submit"), st.sampled_from(PLAYERS), st.integers(0, 20)),
        st.tuples(st.sampled_from(["ban", "unban"]), st.sampled_from(PLAYERS), st.just(0)),
        st.tuples(st.just("void"), st.integers(0, 30), st.just(0)),
    ),
    min_size=5,
    max_size=25,
)


async def walk(http: httpx.AsyncClient, board: Board) -> dict[int, tuple[int, int]]:
    """``{user: (score, rank)}`` of a board's top, checked to be in board order, once each."""
    response = await http.get(f"/api/boards/{board.id}/top", params={"limit": 100})
    assert response.status_code == 200, (board.id, response.text)
    page = response.json()
    assert page["next_cursor"] is None, board.id
    entries = [(e["user_id"], e["score"], e["rank"]) for e in page["entries"]]
    scores = [score for _, score, _ in entries]
    assert scores == sorted(scores, reverse=board.order == "desc"), (board.id, entries)
    found = {user: (score, rank) for user, score, rank in entries}
    assert len(found) == len(entries), (board.id, entries)
    return found


def check_player(
    model: Model, player: int, answer: dict[str, Any], what: str, changed: bool = True
) -> None:
    """A moderation answer's view of the player against the model (the sessions stored only
    when the action ``changed`` something: a no-op answers at once, without waiting for the
    worker to persist the submissions before it)."""
    profile = answer["player"]
    assert profile["user_id"] == player, what
    assert profile["banned"] == (player in model.banned), (what, profile)
    shown = {board: standing["score"] for board, standing in profile["boards"].items()}
    wanted = {
        board.id: scores[player] for board in BOARDS if player in (scores := model.scores(board))
    }
    assert {b: s for b, s in shown.items() if b != "mode-team"} == wanted, (what, profile)
    mine = [s for s in model.sessions if s.player == player]
    voided = sum(1 for s in mine if not model.counts(s))
    assert profile["voided"] == voided, (what, profile)
    if changed:
        assert profile["sessions"] == len(mine), (what, profile)


async def apply(http: httpx.AsyncClient, model: Model, step: int, op: Op) -> None:
    """One operation through the API, its answer checked and the model moved on."""
    kind, target, score = op
    what = f"step {step}: {op}"
    if kind == "submit":
        session_id = f"s{step}"
        body = {"user_id": target, "score": score, "session_id": session_id}
        response = await http.post("/api/leaderboard/submit", json=body)
        if target in model.banned:
            assert response.status_code == 403, (what, response.status_code, response.text)
        else:
            assert response.status_code == 200, (what, response.status_code, response.text)
            model.sessions.append(Session(session_id, target, score))
        return
    if kind == "ban":
        path = f"/api/players/{target}/ban"
        response = await http.post(path, json={"reason": "r"}, headers=ADMIN)
        assert response.status_code == 200, (what, response.status_code, response.text)
        changed = target not in model.banned
        model.banned.add(target)
        check_player(model, target, response.json(), what, changed)
        return
    if kind == "unban":
        path = f"/api/players/{target}/unban"
        response = await http.post(path, json={}, headers=ADMIN)
        if target not in model.banned:
            assert response.status_code == 404, (what, response.status_code, response.text)
            return
        assert response.status_code == 200, (what, response.status_code, response.text)
        model.banned.discard(target)
        check_player(model, target, response.json(), what)
        return
    assert kind == "void", op
    if not model.sessions:
        return  # nothing accepted yet to void
    session = model.sessions[target % len(model.sessions)]
    url = f"/api/sessions/{session.session_id}"
    response = await http.request("DELETE", url, json={}, headers=ADMIN)
    assert response.status_code == 200, (what, response.status_code, response.text)
    changed = not session.voided_alone
    session.voided_alone = True
    answer = response.json()
    assert answer["session"]["session_id"] == session.session_id, (what, answer)
    assert answer["session"]["by_ban"] is False, (what, answer)
    check_player(model, session.player, answer, what, changed)


async def check_boards(
    http: httpx.AsyncClient,
    settings: Settings,
    redis: Redis,
    pool: AsyncConnectionPool,
    model: Model,
    ops: list[Op],
) -> None:
    """Every board's reads, and after a drain PostgreSQL and the verifier, against the model."""
    for board in BOARDS:
        assert await walk(http, board) == model.standings(board), (board.id, ops)
    assert await walk(http, Board("mode-team", "sum", "desc", defined=False)) == {}

    await wait_drained(redis, Keys(settings.namespace), 10)
    await Worker(settings, redis, pool).drain()
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT session_id, user_id, score, voided_at IS NOT NULL, voided_by_ban"
            " FROM game_sessions ORDER BY accepted_seq"
        )
        persisted = await cur.fetchall()
        wanted = [
            (s.session_id, s.player, s.score, not model.counts(s), model.by_ban(s))
            for s in model.sessions
        ]
        # Only the accepted sessions are stored (a refused one never), in acceptance order.
        assert persisted == wanted, ops
        for board in BOARDS:
            cur = await conn.execute(
                "SELECT user_id, score FROM board_scores WHERE board = %s AND period = 'all'",
                [board.id],
            )
            stored = {user: score for user, score in await cur.fetchall()}
            assert stored == model.scores(board), (board.id, ops)
        cur = await conn.execute("SELECT user_id FROM bans")
        assert {user for (user,) in await cur.fetchall()} == model.banned, ops
    verifier = Verifier(settings, redis, pool)
    report = await verifier.run()
    assert report.ok, ([str(d) for d in report.differences], ops)
    assert await verifier.deep() == [], ops


async def run_and_check(
    settings: Settings, redis: Redis, pool: AsyncConnectionPool, ops: list[Op]
) -> None:
    """Create the defined boards, apply ``ops`` in order, then check everything."""
    model = Model(sessions=[], banned=set())
    async with api_process(settings) as http, worker_running(settings, redis, pool):
        for board in BOARDS:
            if not board.defined:
                continue
            definition = {"operator": board.operator, "order": board.order, "reset": "never"}
            put = await http.put(f"/api/boards/{board.id}", json=definition, headers=ADMIN)
            assert put.status_code == 201, put.text
        for step, op in enumerate(ops):
            await apply(http, model, step, op)
        await check_boards(http, settings, redis, pool, model, ops)


@hypothesis_settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=ops_strategy)
# A ban, a void during the ban (voided alone: stays voided), a refused submission, the unban
# (the other sessions count again), an unban of a player not banned, a second ban.
@example(
    ops=[
        ("submit", 1, 5),
        ("submit", 1, 3),
        ("submit", 2, 4),
        ("submit", 1, 9),
        ("ban", 1, 0),
        ("void", 3, 0),
        ("submit", 1, 20),
        ("ban", 1, 0),
        ("unban", 1, 0),
        ("unban", 1, 0),
        ("submit", 1, 1),
    ]
)
# A void before a ban stays voided after the unban; voiding a voided session changes nothing.
@example(
    ops=[
        ("submit", 2, 7),
        ("submit", 2, 2),
        ("submit", 3, 2),
        ("void", 1, 0),
        ("void", 1, 0),
        ("ban", 2, 0),
        ("void", 0, 0),
        ("unban", 2, 0),
        ("unban", 3, 0),
    ]
)
async def test_moderation_agrees_with_the_model(
    ops: list[Op],
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
) -> None:
    # A namespace and empty tables for each example: examples share the test's fixtures.
    settings = make_settings(namespace=f"h{uuid.uuid4().hex[:10]}")
    async with pool.connection() as conn:
        await conn.execute(
            "TRUNCATE game_sessions, board_scores, players, board_definitions, bans, audit_log"
        )
    await Rebuild(settings, redis, pool).run()
    try:
        await run_and_check(settings, redis, pool, ops)
    finally:
        keys = [key async for key in redis.scan_iter(f"ranker:{{{settings.namespace}}}:*")]
        if keys:
            await redis.delete(*keys)
