"""Rebuild a namespace's boards from PostgreSQL into shadow keys, then swap them in atomically.

The protocol (docs/design.md, "Rebuild protocol"): a flag with a generation id makes every
submission also land in a per-board delta key and tags its stream entry; a REPEATABLE READ
snapshot S is loaded into the shadow keys; then the stream is read and reconciled with S:

=============================  ===================  =================================
stream entry                   in S                 not in S
=============================  ===================  =================================
untagged (before the flag)     counted by S: skip   add to the shadow
tagged (after the flag)        subtract (S + delta) counted by the delta: skip
=============================  ===================  =================================

While the flag is set the worker acknowledges but does not delete entries, so no entry leaves
the stream between S and the read unless S holds it. The swap adds each delta into its shadow,
renames the shadow over the live board and clears the flag in one Lua call, and refuses when the
flag no longer holds this generation (then the rebuild starts again).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence import repository
from persistence.binding import bound_to, pool_identity
from persistence.bulkload import bulk_loader
from persistence.database import translate_db_errors
from persistence.stream import generation_of, parse_entry, trim_acknowledged
from ranker import metrics
from ranker.connections import translate_redis_errors
from ranker.errors import RankerError
from ranker.keys import Keys
from ranker.ranking import IdempotencyRecord
from ranker.scripts import Scripts
from ranker.settings import Settings

log = logging.getLogger("ranker.rebuild")
ATTEMPTS = 3
#: Members per ZRANGE page when the swap adds a delta into its shadow.
SWAP_CHUNK = 1_000
#: How often a rebuild waiting for another one checks whether it has finished.
BUSY_POLL_S = 0.1


class RebuildBusy(RankerError):
    """Another rebuild of the namespace holds the flag."""

    status = 409
    title = "Rebuild in progress"


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild did."""

    members: int
    stream_added: int
    stream_subtracted: int
    sessions_restored: int
    attempts: int
    duration_s: float


class Rebuild:
    """One rebuild of one namespace."""

    def __init__(self, settings: Settings, redis: Redis, pool: AsyncConnectionPool) -> None:
        self.settings = settings
        self.redis = redis
        self.pool = pool
        self.keys = Keys(settings.namespace)
        self.scripts = Scripts.register(redis)
        self.boards = settings.boards
        self._ttl_ms = settings.rebuild_ttl_s * 1000

    async def run(self, wait_s: float = 0.0) -> RebuildReport:
        """Rebuild every board.

        When another rebuild runs, wait up to ``wait_s`` for it to end and then rebuild anew
        (its snapshot may predate what the caller wants loaded); ``RebuildBusy`` after that.
        The namespace is bound to this database from the start (``persistence.binding``),
        whichever it was bound to before.
        ``RankerError`` when the swap was refused ``ATTEMPTS`` times (each outlived its flag).
        """
        started = time.perf_counter()
        for attempt in range(1, ATTEMPTS + 1):
            generation = uuid.uuid4().hex
            await self._begin(generation, wait_s)
            try:
                counts = await self._load(generation)
                with translate_redis_errors():
                    swapped = await self.scripts.rebuild_swap(
                        [self.keys.rebuild_flag, self.keys.marker, *self._swap_keys()],
                        [generation, SWAP_CHUNK],
                    )
            except BaseException:
                await self._abandon(generation)
                raise
            if swapped:
                await trim_acknowledged(self.scripts, self.keys, self.settings.rebuild_batch_size)
                duration = time.perf_counter() - started
                metrics.rebuild_duration.observe(duration)
                metrics.rebuild_members.set(counts[0])
                return RebuildReport(*counts, attempts=attempt, duration_s=duration)
            log.warning("rebuild generation %s outlived its flag; starting again", generation)
        raise RankerError(f"rebuild did not finish within the flag TTL {ATTEMPTS} times")

    async def _begin(self, generation: str, wait_s: float = 0.0) -> None:
        stale = [key for b in self.boards for key in (self.keys.temp(b), self.keys.delta(b))]
        mine = await pool_identity(self.pool)
        deadline = time.monotonic() + wait_s
        waited = False
        while True:
            before = await bound_to(self.redis, self.keys)  # only for the log line below
            with translate_redis_errors():
                started = await self.scripts.rebuild_begin(
                    [self.keys.rebuild_flag, self.keys.bound_database, *stale],
                    [generation, self._ttl_ms, mine.value],
                )
            if started:
                if before is not None and before.id != mine.id:
                    log.warning(
                        "namespace %s was bound to database %s: this rebuild binds it to %s",
                        self.settings.namespace,
                        before,
                        mine,
                    )
                return
            if time.monotonic() >= deadline:
                raise RebuildBusy("another rebuild of this namespace is running")
            if not waited:
                log.info("another rebuild is running: waiting up to %.0f s for its end", wait_s)
                waited = True
            await asyncio.sleep(BUSY_POLL_S)

    async def _abandon(self, generation: str) -> None:
        # Expire our flag now rather than at its TTL, so submissions stop filling the deltas
        # and the next rebuild may start; a flag that is no longer ours is left alone.
        try:
            await self.scripts.rebuild_extend([self.keys.rebuild_flag], [generation, 1])
        except Exception:
            log.exception("could not clear the flag of abandoned rebuild %s", generation)

    def _swap_keys(self) -> list[str]:
        return [
            key
            for board in self.boards
            for key in (self.keys.temp(board), self.keys.delta(board), self.keys.board(board))
        ]

    async def _load(self, generation: str) -> tuple[int, int, int, int]:
        """Load snapshot S into the shadows and reconcile the stream with it, in one
        REPEATABLE READ transaction taken after the flag was set."""
        with translate_db_errors():
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                members = 0
                for board in self.boards:
                    members += await self._load_board(conn, board, generation)
                added, subtracted = await self._reconcile_stream(conn, generation.encode())
                restored = await self._restore_idempotency_keys(conn)
        return members, added, subtracted, restored

    async def _load_board(self, conn: AsyncConnection, board: str, generation: str) -> int:
        """Stream one board's totals into its shadow key. PostgreSQL fetches the next batch
        while Redis adds the previous ones: a reader task feeds the loader through a queue."""
        temp = self.keys.temp(board)
        batches: asyncio.Queue[list[tuple[int, int]] | None] = asyncio.Queue(maxsize=8)

        async def read() -> None:
            try:
                async for rows in repository.iter_board_totals(
                    conn, board, self.settings.rebuild_batch_size
                ):
                    await batches.put(rows)
            finally:
                await batches.put(None)  # the loader stops; an error is raised by ``await``

        reader = asyncio.create_task(read())
        next_extension = time.monotonic()
        try:
            async with bulk_loader(self.redis) as loader:
                while (rows := await batches.get()) is not None:
                    await loader.zadd(temp, rows)
                    if time.monotonic() >= next_extension:
                        # A fraction of the TTL between renewals: the flag never lapses.
                        await self._keep_flag(generation)
                        next_extension = time.monotonic() + self.settings.rebuild_ttl_s / 4
            await reader  # re-raises a database error of the reader
        finally:
            reader.cancel()
        await self._keep_flag(generation)
        return loader.members

    async def _keep_flag(self, generation: str) -> None:
        with translate_redis_errors():
            extended = await self.scripts.rebuild_extend(
                [self.keys.rebuild_flag], [generation, self._ttl_ms]
            )
        if not extended:
            raise RankerError(f"rebuild generation {generation} lost its flag")

    async def _reconcile_stream(self, conn: AsyncConnection, generation: bytes) -> tuple[int, int]:
        """Apply the table of the module docstring to every stream entry; returns the counts
        of entries added to and subtracted from the shadows."""
        added = subtracted = 0
        start = "-"
        page_size = self.settings.rebuild_batch_size
        while True:
            with translate_redis_errors():
                page: Any = await self.redis.xrange(self.keys.events, min=start, count=page_size)
            if not page:
                return added, subtracted
            entries = [(parse_entry(f), generation_of(f) == generation) for _, f in page]
            persisted = await repository.select_persisted_event_ids(
                conn, [session.event_id for session, _ in entries]
            )
            changes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for session, tagged in entries:
                in_snapshot = session.event_id in persisted
                if tagged == in_snapshot:
                    sign = -1 if tagged else 1
                    added, subtracted = added + (not tagged), subtracted + tagged
                    for board in session.boards:
                        changes[board][str(session.user_id)] += sign * session.score
            await self._apply(changes, generation.decode())
            start = "(" + page[-1][0].decode()

    async def _apply(self, changes: dict[str, dict[str, int]], generation: str) -> None:
        with translate_redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                for board, members in changes.items():
                    for member, points in members.items():
                        pipe.zincrby(self.keys.temp(board), points, member)
                await pipe.execute()
            await self._keep_flag(generation)

    async def _restore_idempotency_keys(self, conn: AsyncConnection) -> int:
        """Set the idempotency key of every session of the window that Redis lost (NX: a key
        that exists is newer or the same), expiring when the window since its creation ends."""
        window_ms = self.settings.idempotency_ttl_s * 1000
        restored = 0
        batch: list[repository.RecentSession] = []
        async for row in repository.select_recent_sessions(conn, self.settings.idempotency_ttl_s):
            batch.append(row)
            if len(batch) >= self.settings.rebuild_batch_size:
                restored += await self._set_seen(batch, window_ms)
                batch = []
        return restored + await self._set_seen(batch, window_ms)

    async def _set_seen(self, rows: Sequence[repository.RecentSession], window_ms: int) -> int:
        if not rows:
            return 0
        with translate_redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                for session_id, event_id, created_ms, user_id, score, mode in rows:
                    try:
                        key = self.keys.seen(session_id)
                    except ValueError:
                        # Only rows written around the API can hold such an id; skip, not stall.
                        log.warning("session %r in game_sessions is not a valid id", session_id)
                        continue
                    record = IdempotencyRecord.of(event_id, user_id, score, mode)  # as submit
                    pipe.set(key, record.text(), nx=True, pxat=created_ms + window_ms)
                return sum(1 for ok in await pipe.execute() if ok)
