"""Past periods that left Redis with their retention, read back from PostgreSQL.

A read of such a period (``ranker.api.board_routes``) asks for it here: its scores are loaded
into a sorted set of their own (``keys.archive``) that lives ``placements.ARCHIVE_TTL_S``
after its last read, and the period is then read like any other, with the answers it gave
before it left.
A past period changes only by moderation (sessions count in the period of their acceptance, and a
period leaves Redis an hour after its retention ends): every moderation action drops the copies,
and a copy loaded while one ran is not kept (``load``).
"""

from __future__ import annotations

import asyncio
import uuid

from psycopg_pool import AsyncConnectionPool

from persistence import repository
from persistence.bulkload import bulk_loader
from persistence.database import make_pool, translate_db_errors
from ranker.connections import Client, background_redis, translate_redis_errors
from ranker.errors import Unavailable
from ranker.keys import Keys
from ranker.placements import ARCHIVE_TTL_S, slot_of
from ranker.scripts import Scripts
from ranker.settings import Settings
from ranker.shards import home, shard_of

#: Loads of one period tried before a read answers 503 (moderation kept changing players).
ATTEMPTS = 3


class Archive:
    """The archived periods of one namespace: a background service of the API process (it
    holds a small pool of its own, opened while the app runs)."""

    name = "archive"

    def __init__(self, settings: Settings, pool: AsyncConnectionPool | None = None) -> None:
        self.settings = settings
        self.keys = home(settings.namespace, settings.board_shards)
        self._pool = pool or make_pool(settings, max_size=2)
        self._owns_pool = pool is None
        self._redis: Client | None = None

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

    async def load(
        self, board: str, period: str, key: str, keys: Keys | None = None, shard: int = 0
    ) -> None:
        """Fill ``key`` with the period's scores (a unique loading key renamed over it: two
        loads at once never mix); nothing when the period holds none.

        Banned players are left out (PostgreSQL may not hold a ban yet), and a load is kept only
        if no moderation action changed a player since it began (``archive_store.lua``): else
        it is made again. On a sharded board (``keys``: a shard's, ``shard``: its index) only
        the shard's players are loaded, beside that shard's moderation state."""
        if self._redis is None:
            raise Unavailable("archived periods cannot be read while the service starts or stops")
        for _ in range(ATTEMPTS):
            if await self._load_once(board, period, key, self._redis, keys or self.keys, shard):
                return
        raise Unavailable("players of this period kept being moderated while it loaded: retry")

    async def _load_once(
        self, board: str, period: str, key: str, redis: Client, keys: Keys, shard: int
    ) -> bool:
        count = self.settings.board_shards
        loading = keys.loading(slot_of(board, period), uuid.uuid4().hex)
        with translate_redis_errors():
            async with redis.pipeline(transaction=True) as pipe:
                pipe.get(keys.moderation_version)
                pipe.hgetall(keys.moderation)
                version, states = await pipe.execute()
        # Off the boards: the banned and those whose unban is not complete.
        excluded = {int(user) for user, state in states.items() if state[:1] in (b"b", b"u")}
        with translate_db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                async with bulk_loader(redis, loading) as loader:
                    async for rows in repository.iter_board_scores(
                        conn, board, period, self.settings.rebuild_batch_size
                    ):
                        await loader.zadd(
                            loading,
                            [
                                r
                                for r in rows
                                if r[0] not in excluded and shard_of(r[0], count) == shard
                            ],
                        )
        if not loader.members:
            return True
        stored = [loading, key, keys.moderation_version, keys.archives, keys.pages_version]
        with translate_redis_errors():
            kept = await Scripts.register(redis).archive_store(
                stored, [(version or b"").decode(), ARCHIVE_TTL_S]
            )
        return bool(kept)

    async def periods(self, board: str, before: str | None, limit: int) -> list[tuple[str, int]]:
        with translate_db_errors():
            async with self._pool.connection() as conn:
                return await repository.select_periods_of_board(conn, board, before, limit)
