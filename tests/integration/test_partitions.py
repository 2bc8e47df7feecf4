"""The session log partitioned by month (``persistence/partitions.py``): partitions made ahead,
once, by two workers at once; a session of a month without one kept in the default partition
and moved to its month's; retention dropping only the months it may (never one inside the
window, one a stream entry or a backfill may still need, one inside the idempotency window),
every other month's rows untouched and every board's scores kept; after it, ``verify --deep``
passes and names its horizon, a ban and an unban stay exact, and a void of a session past the
retention is refused (409)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.backfill import fill_boards
from persistence.partitions import GRACE, create_months, maintain, session_months
from persistence.repository import persist_sessions
from persistence.service import watch_boards
from persistence.verify import Verifier
from persistence.worker import Worker
from ranker.periods import month_of, months_after, retention_closes
from ranker.settings import Settings
from sql import query
from tests.fixtures.ranker import (
    ADMIN_KEY,
    Processes,
    api_process,
    auth_headers,
    wait_for,
    worker_running,
)

ADMIN = auth_headers(ADMIN_KEY)
NOW = datetime.now(UTC)
#: Defined boards of every op, reset and a zone whose months straddle UTC's.
BOARDS: dict[str, dict[str, Any]] = {
    "daily-best": {"operator": "best", "reset": "daily"},
    "weekly-low": {"operator": "best", "order": "asc", "reset": "weekly", "game_mode": "team"},
    "ny-monthly-last": {"operator": "last", "reset": "monthly", "timezone": "America/New_York"},
    "all-time-sum": {"operator": "sum", "reset": "never"},
}
SESSION_ROWS = (
    "SELECT event_id, session_id, user_id, score, game_mode, created_at, accepted_seq,"
    " voided_at, voided_by_ban FROM game_sessions WHERE created_at >= %s ORDER BY event_id"
)


#: Every board's scores (``seq``, the acceptance order a `last` board compares, is left out: on
#: the other ops a recomputation keeps the highest, the worker the one of the last change).
SCORES = "SELECT board, period, user_id, score FROM board_scores ORDER BY 1, 2, 3"


class Clock:
    """The API's wall clock, set to the instant a session is to be accepted at."""

    def __init__(self) -> None:
        self.at = NOW

    def __call__(self) -> int:
        return int(self.at.timestamp() * 1000)


async def rows(pool: AsyncConnectionPool, statement: Any, *params: object) -> list[Any]:
    async with pool.connection() as conn:
        return await (await conn.execute(statement, params or None)).fetchall()


async def submit_at(
    http: httpx.AsyncClient, clock: Clock, at: datetime, user: int, score: int, sid: str
) -> None:
    clock.at = at
    mode = "team" if user % 2 else "solo"
    body = {"user_id": user, "score": score, "session_id": sid, "game_mode": mode}
    answer = await http.post("/api/leaderboard/submit", json=body)
    assert answer.status_code == 200, answer.text


async def fill_months(
    http: httpx.AsyncClient, clock: Clock, months: list[datetime], players: int = 5
) -> None:
    """Sessions of ``players`` players in each month: its first and last millisecond, and
    days between (a New York month ends 4 or 5 hours into the next UTC month)."""
    for m, month in enumerate(months):
        ends = months_after(month, 1)
        instants = [month, month + timedelta(days=9, hours=5), ends - timedelta(hours=3)]
        instants.append(ends - timedelta(milliseconds=1))
        for i, at in enumerate(instants):
            for user in range(1, players + 1):
                score = (user * 37 + m * 11 + i * 5) % 50 + 1
                await submit_at(http, clock, at, user, score, f"s-{m}-{i}-{user}")


async def define(http: httpx.AsyncClient, boards: dict[str, dict[str, Any]], **extra: Any) -> None:
    for board, fields in boards.items():
        body = {"title": board, "retain_periods": 2, **fields, **extra}
        answer = await http.put(f"/api/boards/{board}", json=body, headers=ADMIN)
        assert answer.status_code == 201, answer.text


async def deep_ok(settings: Settings, redis: Redis, pool: AsyncConnectionPool) -> None:
    verifier = Verifier(settings, redis, pool)
    assert await verifier.deep() == []
    report = await verifier.run()
    assert report.ok, report.differences


async def test_the_months_ahead_are_made_once_even_by_two_workers_at_once(
    settings: Settings, redis: Redis, pool: AsyncConnectionPool
) -> None:
    months = [months_after(NOW, n) for n in range(5, 9)]

    async def make() -> list[datetime]:
        async with pool.connection() as conn:
            return await create_months(conn, months)

    first, second = await asyncio.gather(make(), make())
    again = await maintain(settings, redis, pool)
    once_more = await maintain(settings, redis, pool)

    assert sorted(first + second) == months  # each made by one of the two, none twice
    assert again.created == [months_after(NOW, 1), months_after(NOW, 2)]  # + this month's
    assert once_more.created == [] and once_more.dropped == [] and once_more.kept is None
    async with pool.connection() as conn:
        assert set(months + again.created + [month_of(NOW)]) <= set(await session_months(conn))


async def test_the_watchdog_makes_the_months_ahead_and_drops_a_month_past_the_retention(
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
    loaded: None,
    worker: Worker,
) -> None:
    settings = make_settings(sessions_retention_months=1)
    old = months_after(NOW, -4)
    clock = Clock()
    async with api_process(settings, clock) as http:
        await fill_months(http, clock, [old], players=1)
    await worker.drain()
    stop = asyncio.Event()
    watchdog = asyncio.create_task(watch_boards(settings, redis, pool, stop))

    async def maintained() -> bool:
        async with pool.connection() as conn:
            return (await session_months(conn))[0] == month_of(NOW)

    try:
        await wait_for(maintained, 20, "the watchdog's first round of partitions")
    finally:
        stop.set()
        await watchdog
    async with pool.connection() as conn:
        months = await session_months(conn)
    assert months == [month_of(NOW), months_after(NOW, 1), months_after(NOW, 2)]
    await deep_ok(settings, redis, pool)


async def test_a_session_of_a_month_without_partition_waits_in_the_default_one_then_moves(
    settings: Settings, redis: Redis, pool: AsyncConnectionPool, loaded: None, worker: Worker
) -> None:
    clock = Clock()
    far = [datetime(2100, 1, 1, tzinfo=UTC), datetime(1999, 12, 31, 23, 59, tzinfo=UTC)]
    async with api_process(settings, clock) as http:
        for n, at in enumerate(far):
            await submit_at(http, clock, at, n + 1, 5, f"far-{n}")
    await worker.drain()
    where = "SELECT tableoid::regclass::text FROM game_sessions ORDER BY created_at"
    landed = await rows(pool, where)
    stored = await rows(pool, SESSION_ROWS, datetime(1900, 1, 1, tzinfo=UTC))

    done = await maintain(settings, redis, pool)

    assert landed == [("game_sessions_default",), ("game_sessions_default",)]
    assert {datetime(1999, 12, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)} <= set(
        done.created
    )
    assert await rows(pool, where) == [("game_sessions_1999_12",), ("game_sessions_2100_01",)]
    assert await rows(pool, SESSION_ROWS, datetime(1900, 1, 1, tzinfo=UTC)) == stored
    # Redelivered after the move, as a stream would: the key still finds them.
    async with pool.connection() as conn, conn.transaction():
        again = [
            [str(v).encode() for v in (eid, sid, user, score, mode)]
            + [str(round(at.timestamp() * 1000)).encode(), str(seq).encode(), b"global:all:s"]
            + [b"\\N"]
            for eid, sid, user, score, mode, at, seq, *_ in stored
        ]
        assert await persist_sessions(conn, again) == 0
        # Looked up by event id alone (a rebuild's reconciliation), each partition's key serves.
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.execute(
            "EXPLAIN " + query("select_persisted_event_ids"), {"event_ids": [stored[0][0]]}
        )
        assert "game_sessions_2100_01_pkey" in "\n".join(line for (line,) in await plan.fetchall())
    await deep_ok(settings, redis, pool)


async def test_retention_drops_only_the_months_it_may_and_every_board_stays_exact(
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
    loaded: None,
    worker: Worker,
    processes: Processes,
) -> None:
    keep_all = make_settings()
    settings = make_settings(sessions_retention_months=2)
    # Two months dropped, and the one after them kept (a New York month straddles the two),
    # as of a clock just past the second's retention (the real one may be past the third's).
    dropped, kept = [months_after(NOW, -5), months_after(NOW, -4)], months_after(NOW, -3)
    later = retention_closes(dropped[-1], 2) + GRACE + timedelta(hours=1)
    clock = Clock()
    async with api_process(keep_all, clock) as http:
        await define(http, BOARDS)
        await fill_months(http, clock, [*dropped, kept, month_of(NOW)])
        await worker.drain()
        # Voided alone before its month is dropped: it stays out of the carried scores.
        clock.at = NOW
        async with worker_running(keep_all, redis, pool):
            void = await http.request("DELETE", "/api/sessions/s-0-1-3", json={}, headers=ADMIN)
        assert void.status_code == 200, void.text
    scores = await rows(pool, SCORES)
    retained = await rows(pool, SESSION_ROWS, kept)

    done = await maintain(settings, redis, pool, now=later)

    assert done.dropped == dropped
    assert done.kept is not None and done.kept.startswith(f"{kept:%Y-%m} is kept until")
    assert not done.held
    async with pool.connection() as conn:
        assert (await session_months(conn))[0] == kept
    assert await rows(pool, SESSION_ROWS, kept) == retained  # other months untouched
    assert await rows(pool, SESSION_ROWS, datetime(1900, 1, 1, tzinfo=UTC)) == retained
    assert await rows(pool, SCORES) == scores
    assert await rows(pool, "SELECT count(DISTINCT board) FROM carried_scores") == [(7,)]
    verified = processes.run("verify", "--deep", settings=settings)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"deep: over the sessions since {kept:%Y-%m-%d}" in verified.stdout
    assert "from the 2 months retention dropped before" in verified.stdout

    async with worker_running(settings, redis, pool), api_process(settings) as http:
        # Player 3 has sessions in the dropped months and in the kept ones.
        banned = await http.post("/api/players/3/ban", json={"reason": "test"}, headers=ADMIN)
        assert banned.status_code == 200, banned.text
        assert await rows(pool, "SELECT count(*) FROM board_scores WHERE user_id = 3") == [(0,)]
        await deep_ok(settings, redis, pool)
        unbanned = await http.post("/api/players/3/unban", json={}, headers=ADMIN)
        assert unbanned.status_code == 200, unbanned.text
        gone = await http.request("DELETE", "/api/sessions/s-0-2-1", json={}, headers=ADMIN)
        assert gone.status_code == 404  # its month was dropped
    assert await rows(pool, SCORES) == scores
    await deep_ok(settings, redis, pool)


async def test_retention_keeps_a_month_while_the_stream_holds_an_entry_from_before(
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
    loaded: None,
    worker: Worker,
) -> None:
    settings = make_settings(sessions_retention_months=2)
    month = months_after(NOW, -2)
    later = retention_closes(month, 2) + GRACE + timedelta(hours=1)  # the clock, moved on
    clock = Clock()
    async with api_process(settings, clock) as http:
        await fill_months(http, clock, [month, month_of(NOW)], players=2)
        await worker.drain()
        await submit_at(http, clock, NOW, 1, 1, "in-flight")  # not persisted yet

    held = await maintain(settings, redis, pool, now=later)
    inside = await maintain(settings, redis, pool)  # by the real clock: inside the window
    await worker.drain()
    current = await rows(pool, SESSION_ROWS, month_of(NOW))
    done = await maintain(settings, redis, pool, now=later)

    assert held.dropped == [] and held.held
    assert held.kept is not None and "waits for the worker" in held.kept
    assert inside.dropped == [] and not inside.held
    assert done.dropped == [month]
    assert await rows(pool, SESSION_ROWS, month_of(NOW)) == current
    assert await rows(
        pool, "SELECT count(*) FROM game_sessions WHERE created_at < %s", month_of(NOW)
    ) == [(0,)]
    await deep_ok(settings, redis, pool)


async def test_retention_waits_for_a_backfill_which_then_counts_the_month(
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
    loaded: None,
    worker: Worker,
) -> None:
    settings = make_settings(sessions_retention_months=1)
    old = months_after(NOW, -4)
    clock = Clock()
    async with api_process(settings, clock) as http:
        await fill_months(http, clock, [old], players=3)
        await worker.drain()
        clock.at = NOW
        await define(http, {"late-best": {"operator": "best"}}, backfill=True)
        await worker.drain()

        waiting = await maintain(settings, redis, pool)
        assert await fill_boards(settings, redis, pool) == ["late-best"]
        await worker.drain()
        done = await maintain(settings, redis, pool)
        await deep_ok(settings, redis, pool)
        late = "SELECT user_id, score FROM board_scores WHERE board = 'late-best' ORDER BY 1"
        counted = await rows(pool, late)

        purged = await http.delete("/api/boards/late-best", params={"purge": "true"}, headers=ADMIN)
        assert purged.status_code == 200, purged.text
        await worker.drain()

    assert waiting.dropped == [] and waiting.held
    assert waiting.kept == f"{old:%Y-%m} waits for the backfill of board late-best"
    assert done.dropped == [old]
    assert [user for user, _ in counted] == [1, 2, 3]  # from the dropped month's sessions
    carried = "SELECT count(*) FROM carried_scores WHERE board = 'late-best'"
    assert await rows(pool, carried) == [(0,)]  # its carried scores left with the board


async def test_a_session_past_the_retention_cannot_be_voided_alone(
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
    loaded: None,
    worker: Worker,
    processes: Processes,
) -> None:
    # A window of retries longer than the retention: the months stay (a rebuild restores the
    # idempotency keys from their sessions), closed all the same.
    settings = make_settings(sessions_retention_months=1, idempotency_ttl_s=400 * 86_400)
    old = months_after(NOW, -4)
    clock = Clock()
    async with api_process(settings, clock) as http:
        await fill_months(http, clock, [old], players=2)
        await worker.drain()
        done = await maintain(settings, redis, pool)
        clock.at = NOW
        async with worker_running(settings, redis, pool):
            refused = await http.request("DELETE", "/api/sessions/s-0-0-1", json={}, headers=ADMIN)
            banned = await http.post("/api/players/1/ban", json={"reason": "r"}, headers=ADMIN)

    assert done.dropped == [] and done.held
    assert done.kept is not None and "idempotency window" in done.kept
    assert refused.status_code == 409, refused.text
    assert refused.json()["errors"][0]["field"] == "session_id"
    assert "RANKER_SESSIONS_RETENTION_MONTHS" in refused.json()["detail"]
    assert banned.status_code == 200, banned.text
    voided = "SELECT count(*) FILTER (WHERE voided_by_ban), count(*) FROM game_sessions"
    assert await rows(pool, voided + " WHERE user_id = 1") == [(4, 4)]  # by the ban, not alone
    await deep_ok(settings, redis, pool)
    cli = processes.run("partitions", settings=settings)
    assert cli.returncode == 0, cli.stderr
    assert f"months stored: {old:%Y-%m} .. " in cli.stdout
    assert f"retention: {old:%Y-%m} holds sessions inside the idempotency window" in cli.stdout
