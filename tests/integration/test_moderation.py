"""Moderation on the real servers, checked against the session log. A ban under load (32
concurrent submitters over eight players, boards of every operator, daily boards with retained
and archived periods) takes the player off every period at once; each submission for them
answered 200 (stored, then voided by the ban) or 403 (stored nowhere); every other session is
stored exactly once; every board equals what SQL computes from the sessions not voided, in
Redis and in ``board_scores``; the verifier (deep too) is clean. Voiding a session on a sum,
best desc, best asc and last board leaves what the remaining sessions give (or removes the
player); twice gives the same answer, an unknown session 404. An unban restores the scores of
before the ban, except where a session was voided alone (it stays voided); the player is held
(503, Retry-After) until the recompute is written back. Every admin action (API and CLI) is in
the audit log once, newest first; write and read keys get 403 and no key 401 on every admin
route; no API key appears in the audit log, the CLI's output or the logs."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, LiteralString, cast

import httpx
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.moderation import complete_pending
from persistence.verify import Verifier, wait_drained
from ranker.settings import Settings
from ranker.shards import shards_of
from tests.fixtures.ranker import (
    ADMIN_KEY,
    READ_KEY,
    WRITE_KEY,
    Processes,
    api_process,
    auth_headers,
    drain_all,
    namespace_keys,
    seeded_random,
    snapshot,
    wait_for,
    worker_running,
)

#: The core tests run on the single server and on the local Redis Cluster, and on the cluster
#: with sharded boards (each player's state and sessions on the player's shard).
pytestmark = [pytest.mark.cluster, pytest.mark.sharded]

ADMIN = auth_headers(ADMIN_KEY)
#: How the audit log and the voided sessions name the admin key: a prefix of its digest.
ADMIN_ID = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()[:12]
DAY_MS = 86_400_000
PROBLEM = "application/problem+json"
#: The period of a session on a daily board (in UTC), in SQL.
DAILY_PERIOD = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
Outcomes = dict[str, tuple[int, httpx.Response]]  # session id: (player, answer)


@dataclass(frozen=True)
class Board:
    id: str
    operator: str = "sum"
    order: str = "desc"
    reset: str = "never"
    game_mode: str | None = None
    builtin: bool = False

    def aggregate(self) -> str:
        """A player's score over their sessions not voided, in SQL."""
        kept = "FILTER (WHERE voided_at IS NULL)"
        if self.operator == "sum":
            return f"(sum(score) {kept})::bigint"
        if self.operator == "best":
            return f"{'max' if self.order == 'desc' else 'min'}(score) {kept}"
        return f"(array_agg(score ORDER BY accepted_seq DESC) {kept})[1]"


BOARDS = [
    Board("global", builtin=True),
    Board("mode-solo", game_mode="solo", builtin=True),
    Board("mode-team", game_mode="team", builtin=True),
    Board("m-sum"),
    Board("m-best-desc", "best"),
    Board("m-best-asc", "best", "asc"),
    Board("m-last", "last"),
    Board("m-team-best", "best", game_mode="team"),
    Board("m-daily-best", "best", reset="daily"),
    Board("m-daily-last", "last", reset="daily"),
]


@dataclass
class Clock:
    """The API's wall clock: the real one, moved back by ``offset_ms``."""

    offset_ms: int = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


async def define(http: httpx.AsyncClient) -> None:
    for board in (b for b in BOARDS if not b.builtin):
        fields = ("operator", "order", "reset", "game_mode")
        body = {"title": board.id, "retain_periods": 2} | {f: getattr(board, f) for f in fields}
        put = await http.put(f"/api/boards/{board.id}", json=body, headers=ADMIN)
        assert put.status_code == 201, put.text


async def submit(
    http: httpx.AsyncClient, user: int, score: int, session_id: str, mode: str = "solo"
) -> httpx.Response:
    body = {"user_id": user, "score": score, "session_id": session_id, "game_mode": mode}
    return await http.post("/api/leaderboard/submit", json=body)


async def submit_all(http: httpx.AsyncClient, sessions: list[tuple[int, str, int, str]]) -> None:
    """``(player, session id, score, mode)`` submitted in order, each accepted."""
    for user, sid, score, mode in sessions:
        assert (await submit(http, user, score, sid, mode)).status_code == 200


async def select(
    pool: AsyncConnectionPool, query: LiteralString | sql.Composed, *params: object
) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        return await (await conn.execute(query, params or None)).fetchall()


async def moderate(
    http: httpx.AsyncClient, method: str, url: str, body: Any = None, status: int = 200
) -> dict[str, Any]:
    """An admin action answered ``status``; its answer."""
    response = await http.request(method, url, json=body, headers=ADMIN)
    assert response.status_code == status, (url, response.status_code, response.text)
    return cast(dict[str, Any], response.json())


async def top(http: httpx.AsyncClient, board: str, period: str) -> dict[int, int]:
    response = await http.get(f"/api/boards/{board}/top", params={"period": period, "limit": 100})
    assert response.status_code == 200, (board, period, response.text)
    assert response.json()["next_cursor"] is None
    return {entry["user_id"]: entry["score"] for entry in response.json()["entries"]}


async def standing(http: httpx.AsyncClient, user: int) -> dict[str, int]:
    """``{board: score}`` of the current periods, from the player's public profile."""
    response = await http.get(f"/api/players/{user}")
    assert response.status_code == 200, response.text
    return {board: s["score"] for board, s in response.json()["boards"].items()}


async def reference(pool: AsyncConnectionPool, board: Board) -> dict[str, dict[int, int]]:
    """``{period: {user: score}}`` of a board computed from ``game_sessions`` alone over the
    sessions not voided; every period a session of the board's mode falls in is listed."""
    period = "'all'" if board.reset == "never" else DAILY_PERIOD
    query = sql.SQL(
        "SELECT {period}, user_id, {aggregate} FROM game_sessions"
        " WHERE %s::text IS NULL OR game_mode = %s GROUP BY 1, 2"
    ).format(period=sql.SQL(period), aggregate=sql.SQL(board.aggregate()))
    found: dict[str, dict[int, int]] = {}
    for period_id, user, score in await select(pool, query, board.game_mode, board.game_mode):
        scores = found.setdefault(period_id, {})
        if score is not None:
            scores[user] = score
    return found


async def settle(settings: Settings, redis: Redis, pool: AsyncConnectionPool) -> None:
    """Everything accepted so far persisted (a worker runs)."""
    await wait_drained(redis, shards_of(settings.namespace, settings.board_shards), 30)
    await drain_all(settings, redis, pool)


async def check_boards(
    http: httpx.AsyncClient, settings: Settings, redis: Redis, pool: AsyncConnectionPool
) -> None:
    """Once all is persisted: every period of every board, read and in ``board_scores``,
    equals SQL over the log, and the verifier (deep too) finds nothing."""
    await settle(settings, redis, pool)
    stored: dict[str, dict[str, dict[int, int]]] = {}
    for board_id, period, user, score in await select(
        pool, "SELECT board, period, user_id, score FROM board_scores"
    ):
        stored.setdefault(board_id, {}).setdefault(period, {})[user] = score
    for board in BOARDS:
        wanted = await reference(pool, board)
        assert wanted, board.id
        for period, scores in wanted.items():
            assert await top(http, board.id, period) == scores, (board.id, period)
        assert stored.get(board.id, {}) == {p: s for p, s in wanted.items() if s}, board.id
    verifier = Verifier(settings, redis, pool)
    report = await verifier.run()
    assert report.ok, [str(d) for d in report.differences]
    assert report.members > 0
    assert await verifier.deep() == []


def assert_refused_as_banned(response: httpx.Response) -> None:
    assert response.status_code == 403, (response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["title"] == "Player banned", response.text
    assert [e["field"] for e in response.json()["errors"]] == ["user_id"], response.text


PLAYERS = tuple(range(1, 9))
BANNED = 5


async def submit_random(
    http: httpx.AsyncClient, rng: Any, user: int, sid: str, into: Outcomes
) -> None:
    mode = rng.choice(("solo", "team"))
    into[sid] = (user, await submit(http, user, rng.randint(0, 50), sid, mode))


async def earlier_periods(http: httpx.AsyncClient, clock: Clock, rng: Any) -> Outcomes:
    """Two sessions of every player five days back (beyond retain_periods, 2: archived),
    yesterday (retained) and today."""
    outcomes: Outcomes = {}
    for days, user, k in itertools.product((5, 1, 0), PLAYERS, range(2)):
        clock.offset_ms = -days * DAY_MS
        await submit_random(http, rng, user, f"d{days}-{user}-{k}", outcomes)
    assert {r.status_code for _, r in outcomes.values()} == {200}
    return outcomes


async def ban_under_load(http: httpx.AsyncClient, rng: Any) -> tuple[httpx.Response, Outcomes]:
    """32 connections submitting; the ban sent once 300 are in. Each connection goes on past
    the ban's answer for one more submission of every player."""
    banned = asyncio.Event()
    load: Outcomes = {}

    async def connection(index: int) -> None:
        after, n = 0, 0
        while after < len(PLAYERS):
            after += banned.is_set()
            await submit_random(
                http, rng, PLAYERS[(index + n) % len(PLAYERS)], f"c{index}-{n}", load
            )
            n += 1

    async def busy() -> bool:
        return len(load) >= 300

    submitters = asyncio.gather(*(connection(i) for i in range(32)))
    await wait_for(busy, 30, "300 submissions under way")
    ban = await http.post(f"/api/players/{BANNED}/ban", json={"reason": "aimbot"}, headers=ADMIN)
    banned.set()
    await submitters
    return ban, load


async def check_sessions(pool: AsyncConnectionPool, outcomes: Outcomes) -> None:
    """Each session answered 200 stored once (the banned player's voided by the ban), no other."""
    rows = await select(
        pool,
        "SELECT session_id, user_id, voided_at IS NOT NULL, voided_by, void_reason,"
        " voided_by_ban FROM game_sessions",
    )
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids)), "a session stored twice"
    accepted = {sid for sid, (_, r) in outcomes.items() if r.status_code == 200}
    assert set(ids) == accepted, "a session lost, or a refused one stored"
    for sid, user, *voiding in rows:
        wanted = (True, ADMIN_ID, "aimbot", True) if user == BANNED else (False, None, None, False)
        assert tuple(voiding) == wanted, sid


async def test_a_ban_under_load_removes_the_player_everywhere_and_loses_nothing(
    settings: Settings, loaded: None, redis: Redis, pool: AsyncConnectionPool
) -> None:
    rng, clock = seeded_random(), Clock()
    async with api_process(settings, clock) as http, worker_running(settings, redis, pool):
        await define(http)
        outcomes = await earlier_periods(http, clock, rng)
        await settle(settings, redis, pool)
        archived = time.strftime("%Y-%m-%d", time.gmtime(clock() / 1000 - 5 * 86_400))
        # This read loads a copy of the archived period into Redis: the ban must drop it too.
        assert BANNED in await top(http, "m-daily-best", archived)
        assert await namespace_keys(redis, settings, "archive:*")
        ban, load = await ban_under_load(http, rng)
        await settle(settings, redis, pool)

        assert ban.status_code == 200, ban.text
        answer = ban.json()
        assert (answer["action"], answer["user_id"], answer["completed"]) == ("ban", BANNED, True)
        assert (answer["session"], answer["player"]["banned"]) == (None, True)
        assert answer["player"]["boards"] == {}
        statuses = {r.status_code for user, r in load.values() if user == BANNED}
        assert statuses == {200, 403}, "the banned player's submissions span the ban"
        for user, response in load.values():
            if user != BANNED:
                assert response.status_code == 200, (user, response.text)
            elif response.status_code != 200:
                assert_refused_as_banned(response)
        assert BANNED not in await top(http, "m-daily-best", archived)
        for board in BOARDS:
            for period in await reference(pool, board):
                path = f"/api/boards/{board.id}/players/{BANNED}"
                missing = await http.get(path, params={"period": period})
                assert missing.status_code == 404, (board.id, period, missing.text)
        assert await standing(http, BANNED) == {}
        await check_boards(http, settings, redis, pool)
    await check_sessions(pool, outcomes | load)


#: The sessions (player, id, score, mode) in acceptance order.
VOID_SESSIONS = [(1, "v0", 5, "solo"), (1, "v1", 9, "solo"), (1, "v2", 2, "solo")]
VOID_SESSIONS += [(1, "v3", 6, "team"), (1, "v4", 7, "solo"), (2, "w0", 4, "solo")]
VOID_SESSIONS += [(2, "w1", 8, "team"), (2, "w2", 1, "solo")]
#: Voided one after the other: player 1's scores then on SHOWN (None: off the board).
SHOWN = ("m-sum", "m-best-desc", "m-best-asc", "m-last", "m-team-best")
VOIDS = [
    ("v1", (20, 7, 2, 7, 6)),  # the best of a desc board: the next best remains
    ("v4", (13, 6, 2, 6, 6)),  # the latest: the one before it is the last
    ("v2", (11, 6, 5, 6, 6)),  # the best of an asc board
    ("v3", (5, 5, 5, 5, None)),  # the only team session: off the team boards
]


async def test_a_void_leaves_what_the_remaining_sessions_give(
    client: httpx.AsyncClient, settings: Settings, redis: Redis, pool: AsyncConnectionPool
) -> None:
    async with worker_running(settings, redis, pool):
        await define(client)
        await submit_all(client, VOID_SESSIONS)
        await settle(settings, redis, pool)
        unknown = await client.request("DELETE", "/api/sessions/no-such-session", headers=ADMIN)
        assert unknown.status_code == 404, unknown.text
        assert unknown.headers["content-type"] == PROBLEM

        for step, (sid, scores) in enumerate(VOIDS):
            answer = await moderate(client, "DELETE", f"/api/sessions/{sid}", {"reason": "cheat"})
            if step == 0:  # twice: the same answer, nothing changes
                again = await moderate(client, "DELETE", f"/api/sessions/{sid}", {"reason": "x"})
                assert again == answer
            row = await select(
                pool,
                "SELECT session_id, score, game_mode, voided_by, void_reason, voided_by_ban,"
                " event_id::text FROM game_sessions WHERE session_id = %s",
                sid,
            )
            session = answer["session"]
            score, mode = next((s, m) for _, i, s, m in VOID_SESSIONS if i == sid)
            assert row == [(sid, score, mode, ADMIN_ID, "cheat", False, session["event_id"])]
            assert (answer["action"], answer["user_id"], answer["completed"]) == ("void", 1, True)
            fields = ("session_id", "score", "game_mode", "voided_by", "reason", "by_ban")
            assert tuple(session[f] for f in fields) == row[0][:6]
            assert session["voided_at"] and session["created_at"]
            wanted = {b: s for b, s in zip(SHOWN, scores, strict=True) if s is not None}
            shown = answer["player"]["boards"]
            assert {b: shown[b]["score"] for b in SHOWN if b in shown} == wanted, sid
            assert await standing(client, 1) == {b: s["score"] for b, s in shown.items()}
            await check_boards(client, settings, redis, pool)
        for board in ("m-team-best", "mode-team"):
            gone = await client.get(f"/api/boards/{board}/players/1")
            assert gone.status_code == 404, (board, gone.text)


async def test_an_unban_restores_the_scores_but_not_the_sessions_voided_alone(
    make_settings: Callable[..., Settings],
    settings: Settings,
    loaded: None,
    redis: Redis,
    pool: AsyncConnectionPool,
) -> None:
    sessions = [(1, "u0", 10, "solo"), (1, "u1", 3, "team"), (1, "u2", 8, "solo")]
    sessions += [(1, "u3", 5, "team"), (2, "x0", 6, "solo"), (2, "x1", 9, "team")]
    async with api_process(settings) as http:
        await define(http)
        await submit_all(http, sessions)
        async with worker_running(settings, redis, pool):
            await settle(settings, redis, pool)
            await moderate(http, "DELETE", "/api/sessions/u1", {"reason": "before"})
            before = await standing(http, 1)
            ban = await moderate(http, "POST", "/api/players/1/ban", {"reason": "aimbot"})
            assert (ban["action"], ban["completed"], ban["player"]["boards"]) == ("ban", True, {})
            again = await moderate(http, "POST", "/api/players/1/ban", {"reason": "other"})
            assert again["player"]["ban"]["reason"] == "aimbot", "a second ban changes nothing"
            # Voided during the ban: voided alone from then on.
            void = await moderate(http, "DELETE", "/api/sessions/u3", {"reason": "during"})
            assert void["session"]["by_ban"] is False
            public = (await http.get("/api/players/1")).json()
            assert (public["banned"], public["boards"], "ban" in public) == (True, {}, False)
            admin = (await http.get("/api/players/1", headers=ADMIN)).json()
            assert (admin["ban"]["banned_by"], admin["ban"]["reason"]) == (ADMIN_ID, "aimbot")
            assert (admin["sessions"], admin["voided"]) == (4, 4)
            await settle(settings, redis, pool)
        # The worker stopped: a refused submission changes nothing anywhere.
        state = await snapshot(redis, pool, settings)
        assert_refused_as_banned(await submit(http, 1, 50, "refused"))
        assert await snapshot(redis, pool, settings) == state

    # An unban the worker does not persist in time: 202, and the player is held meanwhile.
    async with api_process(make_settings(moderation_wait_s=0.3)) as http:
        unban = await moderate(http, "POST", "/api/players/1/unban", status=202)
        assert (unban["action"], unban["completed"], unban["player"]["boards"]) == (
            "unban",
            False,
            {},
        )
        held = await submit(http, 1, 50, "held")
        assert held.status_code == 503, held.text
        assert int(held.headers["retry-after"]) >= 1
        async with worker_running(settings, redis, pool):

            async def completed() -> bool:
                return await complete_pending(settings, redis, pool) == 1

            await wait_for(completed, 20, "the unban's recompute written back")
            after = await standing(http, 1)
            # u3 (team, 5: the latest, the lowest left) stays voided; where it did not count,
            # the scores are those of before the ban.
            unaffected = {"mode-solo", "m-best-desc", "m-daily-best"}
            assert {b: after.get(b) for b in unaffected} == {b: before[b] for b in unaffected}
            for board in set(before) - unaffected:
                assert after.get(board) != before[board], (board, before, after)
            assert after["m-last"] == after["m-daily-last"] == 8
            await check_boards(http, settings, redis, pool)
            voided = await select(
                pool,
                "SELECT session_id, voided_by_ban FROM game_sessions"
                " WHERE user_id = 1 AND voided_at IS NOT NULL ORDER BY 1",
            )
            assert voided == [("u1", False), ("u3", False)], "voided alone: still voided"
            assert (await submit(http, 1, 1, "free-again")).status_code == 200
        entries = (await http.get("/api/audit", headers=ADMIN)).json()["entries"]
        assert [e["action"] for e in entries].count("ban") == 1


async def audit(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The audit log walked in pages of two (the same as one page of all)."""
    entries: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = (await http.get("/api/audit", params=params, headers=ADMIN)).json()
        entries += page["entries"]
        if page["next_cursor"] is None:
            break
        params = {"limit": 2, "cursor": page["next_cursor"]}
    whole = (await http.get("/api/audit", params={"limit": 100}, headers=ADMIN)).json()
    assert whole == {"entries": entries, "next_cursor": None}
    return entries


async def test_every_admin_action_is_audited_once_and_no_key_leaks(
    client: httpx.AsyncClient,
    settings: Settings,
    redis: Redis,
    pool: AsyncConnectionPool,
    processes: Processes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with worker_running(settings, redis, pool):
        put = await client.put("/api/boards/m-sum", json={"operator": "sum"}, headers=ADMIN)
        assert put.status_code == 201, put.text
        await submit_all(client, [(1, "a1", 5, "solo"), (1, "a2", 7, "team"), (2, "b1", 3, "solo")])
        await settle(settings, redis, pool)
        for (method, url, body), (key, status) in itertools.product(
            [
                ("POST", "/api/players/1/ban", {"reason": "x"}),
                ("POST", "/api/players/1/unban", {}),
                ("DELETE", "/api/sessions/a1", {}),
                ("GET", "/api/audit", None),
            ],
            [(WRITE_KEY, 403), (READ_KEY, 403), (None, 401)],
        ):
            request = client.build_request(method, url, json=body, headers=auth_headers(key or ""))
            if key is None:  # no Authorization header at all
                del request.headers["Authorization"]
            refused = await client.send(request)
            assert refused.status_code == status, (method, url, key, refused.text)
            assert refused.headers["content-type"] == PROBLEM
        no_reason = await moderate(client, "POST", "/api/players/1/ban", {}, status=422)
        assert [e["field"] for e in no_reason["errors"]] == ["reason"]
        assert [e["action"] for e in await audit(client)] == ["board_put"]
        assert (await client.get("/api/players/1")).json()["banned"] is False

        await moderate(client, "DELETE", "/api/sessions/a1", {"reason": "cheat"})
        before = await standing(client, 1)
        await moderate(client, "POST", "/api/players/1/ban", {"reason": "aimbot"})
        unban = await moderate(client, "POST", "/api/players/1/unban", {"reason": "appeal"})
        assert (unban["action"], unban["completed"]) == ("unban", True)
        assert {b: s["score"] for b, s in unban["player"]["boards"].items()} == before
        assert await standing(client, 1) == before
        outputs = []
        for *args, said in [
            ("void", "b1", "voided session b1"),
            ("ban", "2", "--reason", "cli ban", "banned player 2"),
            ("unban", "2", "unbanned player 2"),
        ]:
            done = await asyncio.to_thread(processes.run, *args, settings=settings)
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith(said) and done.stdout.count("\n") == 1, done.stdout
            outputs += [done.stdout, done.stderr]
        await settle(settings, redis, pool)
        entries = await audit(client)

    assert [(e["action"], e["target"], e["key_id"], e["reason"]) for e in entries] == [
        ("unban", "player:2", "cli", None),
        ("ban", "player:2", "cli", "cli ban"),
        ("void", "session:b1", "cli", None),
        ("unban", "player:1", ADMIN_ID, "appeal"),
        ("ban", "player:1", ADMIN_ID, "aimbot"),
        ("void", "session:a1", ADMIN_ID, "cheat"),
        ("board_put", "board:m-sum", ADMIN_ID, None),
    ]
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
    rows = [row for (row,) in await select(pool, "SELECT a::text FROM audit_log AS a")]
    assert len(rows) == len(entries)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("ranker")]
    assert any("refused" in m for m in ours), "refusals not logged: the check would prove nothing"
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    for key in (WRITE_KEY, READ_KEY, ADMIN_KEY):
        assert not [row for row in rows if key in row], key
        assert key not in logged
        assert not [out for out in outputs if key in out], key
