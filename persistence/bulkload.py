"""Loading millions of members into sorted sets at the speed Redis takes them.

redis-py encodes command arguments in Python, which costs more than Redis spends executing a
10,000-member ZADD; hiredis (already our reply parser) packs the same command in C. Commands are
sent on one connection with several in flight, so packing the next batch overlaps Redis
executing the previous one. Used by the rebuild and by the benchmark's floor measurement.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

import hiredis
from redis.asyncio import RedisCluster
from redis.exceptions import RedisClusterException

from ranker.connections import Client, translate_redis_errors

#: Commands sent and not yet answered: enough to keep Redis busy while the next is packed.
WINDOW = 4


class BulkLoader:
    """ZADDs (and HSETs) on one dedicated connection, up to ``window`` in flight."""

    def __init__(self, connection: Any, window: int = WINDOW) -> None:
        self._connection = connection
        self._window = window
        self._in_flight: deque[None] = deque()
        self.members = 0

    async def zadd(self, key: str, rows: Iterable[tuple[int, int]]) -> None:
        """Add ``(member, score)`` rows to the sorted set ``key`` (members are user ids)."""
        command: list[str | int] = ["ZADD", key]
        for member, score in rows:
            command.append(score)
            command.append(member)
        await self._send(command)

    async def hset(self, key: str, rows: Iterable[tuple[int, str]]) -> None:
        """Set ``(field, value)`` rows of the hash ``key`` (fields are user ids)."""
        command: list[str | int] = ["HSET", key]
        for field, value in rows:
            command.append(field)
            command.append(value)
        await self._send(command)

    async def _send(self, command: list[str | int]) -> None:
        if len(command) == 2:
            return  # no rows: ZADD and HSET refuse an empty list
        self.members += (len(command) - 2) // 2
        # hiredis types its argument as a 1-tuple; it takes a tuple of any length.
        packed = hiredis.pack_command(tuple(command))  # type: ignore[arg-type]
        await self._connection.send_packed_command(packed)
        self._in_flight.append(None)
        if len(self._in_flight) >= self._window:
            await self._answer()

    async def flush(self) -> None:
        """Wait for every command sent to be answered (an error reply raises here)."""
        while self._in_flight:
            await self._answer()

    async def _answer(self) -> None:
        self._in_flight.popleft()
        await self._connection.read_response()


@contextlib.asynccontextmanager
async def bulk_loader(redis: Client, key: str, window: int = WINDOW) -> AsyncIterator[BulkLoader]:
    """A loader on a connection of its own, to the node that holds ``key`` (one of the keys it
    will load: on a cluster every key of a namespace shares its node); every command is
    answered before the connection goes back, and a connection left mid-reply is closed
    instead. A cluster that moves the key's slot meanwhile answers MOVED: a 503, and the
    caller (a rebuild, a reload) starts again."""
    with translate_redis_errors():
        async with _connection(redis, key) as connection:
            try:
                loader = BulkLoader(connection, window)
                yield loader
                await loader.flush()
            except BaseException:
                await connection.disconnect()
                raise


@contextlib.asynccontextmanager
async def _connection(redis: Client, key: str) -> AsyncIterator[Any]:
    """A connection of the pool of ``key``'s node, given back on exit."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()  # learns the layout once; at once afterwards
        node = redis.get_node_from_key(key)
        if node is None:
            raise RedisClusterException(f"no node of the cluster serves {key!r}")
        connection = node.acquire_connection()
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
            yield connection
        finally:
            node.release(connection)
        return
    pool = redis.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        yield connection
    finally:
        await pool.release(connection)
