"""The idempotency keys a rebuild gives back: one per session of the window Redis lost, from
``game_sessions``, so a retry of a session accepted before the loss is still answered as one."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from psycopg import AsyncConnection

from persistence import repository
from ranker.connections import Client, translate_redis_errors
from ranker.idempotency import IdempotencyRecord
from ranker.keys import Keys
from ranker.settings import Settings

log = logging.getLogger("ranker.rebuild")


async def restore_seen(
    conn: AsyncConnection,
    redis: Client,
    keys: Keys,
    settings: Settings,
    mine: Callable[[int], bool],
) -> int:
    """Set the idempotency key of every session of the window that Redis lost (of the players
    ``mine`` takes: a board shard's), NX (a key that exists is newer or the same), expiring when
    the window since its creation ends. Returns how many were set."""
    window_ms = settings.idempotency_ttl_s * 1000
    restored = 0
    batch: list[repository.RecentSession] = []
    async for row in repository.select_recent_sessions(conn, settings.idempotency_ttl_s):
        if not mine(row[3]):
            continue
        batch.append(row)
        if len(batch) >= settings.rebuild_batch_size:
            restored += await _set_seen(redis, keys, batch, window_ms)
            batch = []
    return restored + await _set_seen(redis, keys, batch, window_ms)


async def _set_seen(
    redis: Client, keys: Keys, rows: Sequence[repository.RecentSession], window_ms: int
) -> int:
    if not rows:
        return 0
    with translate_redis_errors():
        async with redis.pipeline(transaction=False) as pipe:
            for session_id, event_id, created_ms, user_id, score, mode in rows:
                try:
                    key = keys.seen(session_id)
                except ValueError:
                    # Only rows written around the API can hold such an id; skip, not stall.
                    log.warning("session %r in game_sessions is not a valid id", session_id)
                    continue
                record = IdempotencyRecord.of(event_id, user_id, score, mode)  # as submit
                pipe.set(key, record.text(), nx=True, pxat=created_ms + window_ms)
            return sum(1 for ok in await pipe.execute() if ok)
