"""What a rebuild gives back of players: their display names (loaded beside the boards and
swapped in with them) and, after Redis lost the namespace, the bans."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from persistence import players
from persistence.bulkload import bulk_loader
from persistence.database import translate_db_errors
from persistence.stream import StreamEntry, accepted_seq, generation_of
from ranker.connections import Client, translate_redis_errors
from ranker.keys import Keys
from ranker.moderation import BANNED


async def restore_bans(
    redis: Client, keys: Keys, pool: AsyncConnectionPool, mine: Callable[[int], bool] | None = None
) -> int:
    """Give Redis back the bans PostgreSQL holds, when it lost the namespace (no marker: the
    moderation states went with it; none can have been set since, they are refused while the
    namespace is not loaded). Returns how many. ``mine``: which players ``keys`` holds (a board
    shard's); by default all."""
    with translate_redis_errors():
        if await redis.exists(keys.marker):
            return 0
    with translate_db_errors():
        async with pool.connection() as conn:
            banned = await players.select_bans(conn)
    banned = [user for user in banned if mine is None or mine(user)]
    if banned:
        with translate_redis_errors():
            await redis.hset(keys.moderation, mapping=dict.fromkeys(map(str, banned), BANNED))
    return len(banned)


async def load_names(
    conn: AsyncConnection,
    redis: Client,
    keys: Keys,
    batch_size: int,
    mine: Callable[[int], bool] | None = None,
) -> int:
    """Load every name of the snapshot (of the players ``mine`` takes) into the names' shadow;
    returns how many."""
    async with bulk_loader(redis, keys.names_temp) as loader:
        async for rows in players.iter_named_players(conn, batch_size):
            named = [(user, name) for user, name, _ in rows if mine is None or mine(user)]
            await loader.hset(keys.names_temp, named)
    return loader.members


async def reconcile_names(
    conn: AsyncConnection, redis: Client, keys: Keys, named: Iterable[tuple[int, int, str]]
) -> None:
    """Write the names the stream set that the snapshot does not hold over the shadow:
    ``named`` lists (acceptance order, user id, name) of its untagged entries (a tagged one is
    in the delta, which the swap writes last), in stream order. A name is kept only when newer
    than the snapshot's (another worker may have committed a later one first)."""
    newest: dict[int, tuple[int, str]] = {}
    for seq, user_id, name in named:
        newest[user_id] = (seq, name)
    if not newest:
        return
    stored = await players.select_name_seqs_of_users(conn, list(newest))
    newer: dict[Any, Any] = {
        str(user_id): name
        for user_id, (seq, name) in newest.items()
        if seq > stored.get(user_id, 0)
    }
    if newer:
        with translate_redis_errors():
            await redis.hset(keys.names_temp, mapping=newer)


def names_set(page: Sequence[StreamEntry], generation: bytes) -> list[tuple[int, int, str]]:
    """(acceptance order, user id, name) of the page's untagged entries that set a name."""
    named = []
    for entry_id, fields in page:
        if fields and b"n" in fields and generation_of(fields) != generation:
            seq = accepted_seq(entry_id)
            named.append((seq, int(fields[b"u"]), fields[b"n"].decode()))
    return named
