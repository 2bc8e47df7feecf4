"""Demo data, made server-side in PostgreSQL: players, random sessions and their totals.

For demo and benchmark databases: one transaction drops the secondary indexes of the two big
tables, inserts the sessions, adds them to the totals, and builds the indexes again (a sorted
build is far cheaper than millions of random index inserts). It holds an exclusive lock on those
tables until it commits, and leaves nothing behind if it fails. Rebuild afterwards to load the
totals into Redis.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool

from persistence import repository
from persistence.database import translate_db_errors
from persistence.partitions import create_months
from ranker.periods import months_after
from ranker.settings import Settings

#: The seeded sessions are dated within the past year: its months, this one included.
SEEDED_MONTHS = 13
#: Rows per statement: large enough to amortise a statement, small enough for progress.
SESSIONS_PER_CHUNK = 500_000
PLAYERS_PER_CHUNK = 500_000
BULK_TABLES = ("game_sessions", "board_scores")

Progress = Callable[[str, int], None]


@dataclass
class SeedReport:
    """The run id the seeded event and session ids carry, and the seconds of each phase."""

    run: str
    phases_s: dict[str, float] = field(default_factory=dict)

    def timed(self, phase: str, since: float) -> float:
        """Add the time since ``since`` to ``phase``; returns now, to time the next phase."""
        now = time.perf_counter()
        self.phases_s[phase] = self.phases_s.get(phase, 0.0) + now - since
        return now


async def seed(
    settings: Settings,
    pool: AsyncConnectionPool,
    players: int,
    sessions: int,
    progress: Progress | None = None,
) -> SeedReport:
    """Create players ``1..players`` and ``sessions`` random sessions among them.

    ``progress(task, advanced)`` is told of each chunk done ("players", "sessions", "totals",
    "indexes"). Returns the run id and the time of each phase.
    """
    tell = progress or (lambda task, advanced: None)
    report = SeedReport(secrets.token_hex(4))
    with translate_db_errors():
        async with pool.connection() as conn:
            mark = time.perf_counter()
            for first in range(1, players + 1, PLAYERS_PER_CHUNK):
                last = min(first + PLAYERS_PER_CHUNK - 1, players)
                await repository.insert_seed_players(conn, first, last)
                tell("players", last - first + 1)
            mark = report.timed("players", mark)
            # Every month the sessions fall in has its partition before they come: none is
            # left in the default partition for the worker to move.
            now = datetime.now(UTC)
            await create_months(conn, [months_after(now, -n) for n in range(SEEDED_MONTHS)])
            async with conn.transaction():
                await repository.set_bulk_memory(conn)
                indexes = await repository.drop_secondary_indexes(conn, BULK_TABLES)
                # Asked after DROP INDEX took the tables' exclusive locks: no row can come in
                # between this answer and the load.
                empty = not await repository.has_totals(conn)
                for first in range(1, sessions + 1, SESSIONS_PER_CHUNK):
                    last = min(first + SESSIONS_PER_CHUNK - 1, sessions)
                    await repository.insert_random_sessions(
                        conn, report.run, first, last, players, settings.game_modes
                    )
                    tell("sessions", last - first + 1)
                mark = report.timed("sessions", mark)
                if empty:
                    async with repository.without_primary_key(conn, "board_scores"):
                        await repository.add_run_to_board_scores(conn, report.run, empty=True)
                else:
                    await repository.add_run_to_board_scores(conn, report.run, empty=False)
                tell("totals", 1)
                mark = report.timed("totals", mark)
                await repository.create_indexes(conn, indexes)
                tell("indexes", 1)
                mark = report.timed("indexes", mark)
            report.timed("commit", mark)
    return report
