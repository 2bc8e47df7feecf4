"""Demo data, made server-side in PostgreSQL: players, random sessions and their totals.

Sessions go through the same statement the worker uses (``persist_staged_sessions``), so seeded
totals obey the same invariants as real ones. Call a rebuild afterwards to load them into Redis.
"""

from __future__ import annotations

from collections.abc import Callable

from psycopg_pool import AsyncConnectionPool

from persistence import repository
from persistence.database import translate_db_errors
from ranker.settings import Settings

#: Sessions per transaction: large enough to amortise a statement, small enough for progress.
SESSIONS_PER_CHUNK = 250_000
PLAYERS_PER_CHUNK = 500_000

Progress = Callable[[str, int], None]


async def seed(
    settings: Settings,
    pool: AsyncConnectionPool,
    players: int,
    sessions: int,
    progress: Progress | None = None,
) -> int:
    """Create players ``1..players`` and ``sessions`` random sessions among them.

    ``progress(task, advanced)`` is told of each chunk done. Returns the sessions added.
    """
    report = progress or (lambda task, advanced: None)
    with translate_db_errors():
        async with pool.connection() as conn:
            for first in range(1, players + 1, PLAYERS_PER_CHUNK):
                last = min(first + PLAYERS_PER_CHUNK - 1, players)
                await repository.insert_seed_players(conn, first, last)
                report("players", last - first + 1)
            added = 0
            for done in range(0, sessions, SESSIONS_PER_CHUNK):
                count = min(SESSIONS_PER_CHUNK, sessions - done)
                async with conn.transaction():
                    added += await repository.persist_random_sessions(
                        conn, count, players, settings.game_modes
                    )
                report("sessions", count)
    return added
