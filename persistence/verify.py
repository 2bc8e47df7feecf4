"""Compare every member of every board in Redis with the totals in PostgreSQL.

Run it once the worker has drained (``verify`` waits for that): a difference then means a lost or
double-counted submission. Both directions are checked in pages, so memory stays bounded:
Redis -> SQL (ZSCAN, then the totals of those members) and SQL -> Redis (the board's totals
through a cursor, then ZMSCORE of those members).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence import repository
from persistence.database import translate_db_errors
from persistence.stream import unpersisted
from ranker.connections import translate_redis_errors
from ranker.errors import Unavailable
from ranker.keys import Keys
from ranker.ranking import to_int
from ranker.settings import Settings


@dataclass(frozen=True)
class Difference:
    """One member whose total differs (``None``: absent on that side)."""

    board: str
    user_id: int
    redis: int | None
    sql: int | None

    def __str__(self) -> str:
        return f"{self.board} user {self.user_id}: redis={self.redis} sql={self.sql}"


@dataclass(frozen=True)
class VerifyReport:
    """The outcome: the members compared and the first differences found."""

    members: int
    differences: list[Difference]
    total_differences: int

    @property
    def ok(self) -> bool:
        """Whether Redis and SQL agree on every member."""
        return self.total_differences == 0


async def wait_drained(redis: Redis, keys: Keys, timeout_s: float) -> None:
    """Return once no entry awaits persistence; ``Unavailable`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (left := await unpersisted(redis, keys)) > 0:
        if time.monotonic() > deadline:
            raise Unavailable(f"{left} events still wait for the worker after {timeout_s} s")
        await asyncio.sleep(0.05)


class Verifier:
    """Compares the boards of one namespace."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        pool: AsyncConnectionPool,
        page_size: int = 5_000,
        keep: int = 20,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.pool = pool
        self.keys = Keys(settings.namespace)
        self.page_size = page_size
        self.keep = keep

    async def run(self) -> VerifyReport:
        """Compare every configured board, and any other board PostgreSQL has totals for."""
        found: list[Difference] = []
        members = total = 0
        with translate_db_errors():
            async with self.pool.connection() as conn, conn.transaction():
                boards = set(self.settings.boards) | await repository.select_board_names(conn)
                for board in sorted(boards):
                    seen, diffs = await self._board(conn, board)
                    members += seen
                    total += len(diffs)
                    found.extend(diffs[: self.keep - len(found)])
        return VerifyReport(members, found, total)

    async def _board(self, conn: AsyncConnection, board: str) -> tuple[int, list[Difference]]:
        key = self.keys.board(board)
        diffs: list[Difference] = []
        members = 0
        cursor = 0
        while True:
            with translate_redis_errors():
                cursor, page = await self.redis.zscan(key, cursor, count=self.page_size)
            members += len(page)
            ids = [int(member) for member, _ in page]
            sql = await repository.select_totals_of_users(conn, board, ids)
            for member, score in page:
                user_id, in_redis = int(member), to_int(score)
                if sql.get(user_id) != in_redis:
                    diffs.append(Difference(board, user_id, in_redis, sql.get(user_id)))
            if cursor == 0:
                break
        async for rows in repository.iter_board_totals(conn, board, self.page_size):
            with translate_redis_errors():
                scores = await self.redis.zmscore(key, [str(user) for user, _ in rows])
            for (user_id, total), found in zip(rows, scores, strict=True):
                if found is None:
                    diffs.append(Difference(board, user_id, None, total))
        return members, diffs
