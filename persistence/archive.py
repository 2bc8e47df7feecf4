"""Past periods that left Redis with their retention, read back from PostgreSQL.

A read of such a period (``ranker.api.board_routes``) asks for it here: its scores are loaded
into a sorted set of their own (``keys.archive``) that lives ``placements.ARCHIVE_TTL_S``
after its last read, and the period is then read like any other, with the answers it gave
before it left.
A past period no longer changes (sessions count in the period of their acceptance, and a period
leaves Redis an hour after its retention ends), so a copy never goes stale.
"""

from __future__ import annotations

import asyncio
import uuid

from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence import repository
from persistence.bulkload import bulk_loader
from persistence.database import make_pool, translate_db_errors
from ranker.connections import background_redis, translate_redis_errors
from ranker.errors import Unavailable
from ranker.keys import Keys
from ranker.placements import ARCHIVE_TTL_S, slot_of
from ranker.settings import Settings


class Archive:
    """The archived periods of one namespace: a background service of the API process (it
    holds a small pool of its own, opened while the app runs)."""

    name = "archive"

    def __init__(self, settings: Settings, pool: AsyncConnectionPool | None = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self._pool = pool or make_pool(settings, max_size=2)
        self._owns_pool = pool is None
        self._redis: Redis | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self._redis = background_redis(self.settings)
        try:
            if self._owns_pool:
                await self._pool.open(wait=False)
            await stop.wait()
        finally:
            if self._owns_pool:
                await self._pool.close()
            await self._redis.aclose()
            self._redis = None

    def problem(self) -> str | None:
        return None

    async def load(self, board: str, period: str, key: str) -> None:
        """Fill ``key`` with the period's scores (a unique loading key renamed over it: two
        loads at once never mix); nothing when the period holds none."""
        if self._redis is None:
            raise Unavailable("archived periods cannot be read while the service starts or stops")
        loading = self.keys.loading(slot_of(board, period), uuid.uuid4().hex)
        with translate_db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                async with bulk_loader(self._redis) as loader:
                    async for rows in repository.iter_board_scores(
                        conn, board, period, self.settings.rebuild_batch_size
                    ):
                        await loader.zadd(loading, rows)
        if not loader.members:
            return
        with translate_redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rename(loading, key)
                pipe.expire(key, ARCHIVE_TTL_S)
                await pipe.execute()

    async def periods(self, board: str, before: str | None, limit: int) -> list[tuple[str, int]]:
        with translate_db_errors():
            async with self._pool.connection() as conn:
                return await repository.select_periods_of_board(conn, board, before, limit)
