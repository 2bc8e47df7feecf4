"""Upgrades: from the schema before board definitions (a database the previous version wrote
is migrated, and every total of the built-in boards is still there, in Redis and in SQL), and
from the unpartitioned session log to the one partitioned by month (every row kept as it was,
each in its month's partition, and a redelivery still adds nothing)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from redis.asyncio import Redis

import sql
from persistence.database import pool_for
from persistence.migrate import migrate
from persistence.repository import persist_sessions
from ranker.ranking import Ranking
from ranker.settings import Settings
from tests.fixtures.ranker import Processes

SESSIONS = [(1, 50, "solo"), (2, 70, "team"), (1, 30, "team"), (3, 70, "solo"), (2, 5, "solo")]


async def test_an_upgrade_keeps_every_total_of_the_built_in_boards(
    make_settings: Callable[..., Settings],
    make_database: Callable[..., str],
    processes: Processes,
    redis: Redis,
) -> None:
    url = make_database(migrated=False)
    settings = make_settings(database_url=url, game_modes=("solo", "team"))
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        # The schema of the previous version, and rows as it wrote them.
        await conn.execute(sql.query("create_migrations_table"))
        for migration in sql.migrations()[:2]:
            await conn.execute(migration.text)
            await conn.execute(
                sql.query("insert_migration"),
                {"version": migration.version, "name": migration.name},
            )
        for n, (user_id, score, mode) in enumerate(SESSIONS):
            await conn.execute(
                "INSERT INTO game_sessions (event_id, session_id, user_id, score, game_mode,"
                " created_at) VALUES (gen_random_uuid(), %s, %s, %s, %s, now())",
                (f"old-{n}", user_id, score, mode),
            )
        await conn.execute(
            "INSERT INTO board_totals (board, user_id, total_score)"
            " SELECT 'global', user_id, sum(score) FROM game_sessions GROUP BY user_id"
            " UNION ALL SELECT 'mode:' || game_mode, user_id, sum(score) FROM game_sessions"
            " GROUP BY game_mode, user_id"
        )

    migrated = processes.run("migrate", settings=settings)
    rebuilt = processes.run("rebuild", settings=settings)
    verified = processes.run("verify", "--deep", settings=settings)

    assert (migrated.returncode, migrated.stdout.strip()) == (0, "applied migrations [3, 4, 5]")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert verified.returncode == 0, verified.stdout + verified.stderr
    ranking = Ranking(redis, settings)
    expected = {
        None: {1: 80, 2: 75, 3: 70},
        "solo": {1: 50, 2: 5, 3: 70},
        "team": {1: 30, 2: 70},
    }
    for mode, totals in expected.items():
        for user_id, total in totals.items():
            assert (await ranking.rank(user_id, mode)).total_score == total, (mode, user_id)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT board, period, user_id, score FROM board_scores ORDER BY 1, 3"
        )
        rows = await cur.fetchall()
        tables = await conn.execute("SELECT to_regclass('board_totals') IS NULL")
        assert await tables.fetchone() == (True,)
    assert rows == sorted(
        [("global", "all", u, t) for u, t in expected[None].items()]
        + [(f"mode-{m}", "all", u, t) for m in ("solo", "team") for u, t in expected[m].items()]
    )


#: Sessions as the schema before partitions holds them (times to the millisecond, as the worker
#: writes them): several months, each side of UTC month boundaries (and of one that is only a
#: boundary in New York), a leap day, and months far in the past and the future.
UPGRADED_TIMES = [
    "2024-02-29 12:00:00+00",
    "2026-01-31 23:59:59.999+00",
    "2026-02-01 00:00:00+00",
    "2026-02-28 23:59:59.999+00",
    "2026-03-01 00:00:00.001+00",
    "2026-03-31 23:30:00-04",  # 1 April in UTC
    "2026-04-30 20:00:00-04",  # 1 May in UTC
    "1999-12-31 23:59:59.999+00",
    "2100-01-01 00:00:00+00",
]
SESSION_COLUMNS = (
    "event_id, session_id, user_id, score, game_mode, created_at, accepted_seq, voided_at,"
    " voided_by, void_reason, voided_by_ban"
)


async def test_an_upgrade_to_monthly_partitions_keeps_every_row_and_exactly_once(
    make_database: Callable[..., str], make_settings: Callable[..., Settings]
) -> None:
    url = make_database(migrated=False)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(sql.query("create_migrations_table"))
        for migration in sql.migrations()[:4]:
            await conn.execute(migration.text)
            await conn.execute(
                sql.query("insert_migration"),
                {"version": migration.version, "name": migration.name},
            )
        for n, at in enumerate(UPGRADED_TIMES):
            await conn.execute(
                "INSERT INTO game_sessions (event_id, session_id, user_id, score, game_mode,"
                " created_at, accepted_seq, voided_at, voided_by, void_reason, voided_by_ban)"
                " VALUES (gen_random_uuid(), %s, %s, %s, 'solo', %s, %s,"
                " CASE WHEN %s THEN now() END, CASE WHEN %s THEN 'k' END, NULL, %s)",
                (
                    f"old-{n}",
                    n % 3 + 1,
                    10 * n + 1,
                    at,
                    None if n == 0 else n,
                    n == 4,
                    n == 4,
                    False,
                ),
            )
        before = await (
            await conn.execute(f"SELECT {SESSION_COLUMNS} FROM game_sessions ORDER BY event_id")
        ).fetchall()

        assert await migrate(conn) == [5]

        after = await (
            await conn.execute(f"SELECT {SESSION_COLUMNS} FROM game_sessions ORDER BY event_id")
        ).fetchall()
        placed = await (
            await conn.execute(
                "SELECT tableoid::regclass::text, ranker_session_partition(created_at)"
                " FROM game_sessions"
            )
        ).fetchall()
        kind = await conn.execute("SELECT relkind FROM pg_class WHERE relname = 'game_sessions'")
        assert await kind.fetchone() == ("p",)  # partitioned

    assert after == before
    assert len(after) == len(UPGRADED_TIMES)
    # Every row in its own month's partition (the default one holds none).
    assert [table for table, _ in placed] == [month for _, month in placed]
    assert "game_sessions_2026_04" in {t for t, _ in placed}  # 31 March in New York

    # The same sessions delivered again, as a stream redelivers them: nothing is added.
    settings = make_settings(database_url=url)
    async with pool_for(settings) as pool, pool.connection() as conn, conn.transaction():
        rows = [
            (
                str(event_id).encode(),
                session_id.encode(),
                str(user_id).encode(),
                str(score).encode(),
                mode.encode(),
                str(round(created_at.timestamp() * 1000)).encode(),
                str(seq or 0).encode(),
                b"global:all:s",
                b"\\N",
            )
            for event_id, session_id, user_id, score, mode, created_at, seq, *_ in before
        ]
        assert await persist_sessions(conn, rows) == 0
        count = await conn.execute("SELECT count(*) FROM game_sessions")
        assert await count.fetchone() == (len(UPGRADED_TIMES),)
