"""An upgrade from the schema before board definitions: a database the previous version wrote
is migrated, and every total of the built-in boards is still there, in Redis and in SQL."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from redis.asyncio import Redis

import sql
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

    assert (migrated.returncode, migrated.stdout.strip()) == (0, "applied migrations [3, 4]")
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
