"""Connections to Redis, and the one place redis-py errors become ranker's own (the twin of
``persistence/database.py`` for PostgreSQL).

Two client recipes: ``request_redis`` for the API's request path (short timeouts, a bounded
pool) and ``background_redis`` for the worker and the commands (long blocking stream reads).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer

from ranker import metrics
from ranker.errors import RedisMemoryFull, RedisUnavailable
from ranker.settings import Settings

#: Replies of a Redis that is up but cannot serve writes or reads right now.
_TRANSIENT_REPLIES = ("LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY")


@contextlib.contextmanager
def translate_redis_errors() -> Iterator[None]:
    """Turn a Redis outage into ``RedisUnavailable`` (503); other errors are bugs and pass."""
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
        metrics.redis_errors.inc()
        raise RedisUnavailable("Redis is unreachable", str(exc)) from exc
    except redis_errors.ResponseError as exc:
        metrics.redis_errors.inc()
        if str(exc).startswith(_TRANSIENT_REPLIES):
            raise RedisUnavailable("Redis cannot serve now", str(exc)) from exc
        # At its maxmemory (noeviction) Redis refuses what would grow it, also inside a script
        # (which it stops at that first write). Not a bug: a 503 naming the cause.
        if isinstance(exc, redis_errors.OutOfMemoryError) or str(exc).startswith("OOM"):
            raise RedisMemoryFull(
                "Redis is out of memory (its maxmemory is reached) and refuses writes",
                str(exc),
            ) from exc
        raise


_PACKER = HiredisRespSerializer()


def _pack_command(self: AbstractConnection, *args: Any) -> list[bytes]:
    packed: list[bytes] = _PACKER.pack(*args)
    return packed


def packed_by_hiredis(pool: BlockingConnectionPool) -> BlockingConnectionPool:
    """``pool``, its connections packing commands with hiredis' C packer, as redis-py's sync
    client does: its asyncio connections pack each command in Python, a tenth of a submission's
    CPU (a script call of some thirty arguments). The pool's own connection class is kept (TCP,
    TLS or a Unix socket, as its URL says)."""
    base = pool.connection_class
    pool.connection_class = type(f"Packed{base.__name__}", (base,), {"pack_command": _pack_command})
    return pool


class QuickPool(BlockingConnectionPool):
    """redis-py's blocking pool, whose free connections are taken without waiting: its
    ``get_connection`` always enters a Condition, arms a timeout and records the wait for
    redis-py's own metrics, a sixth of a submission's CPU in the API process. Here a caller
    takes a free connection (or makes one, under ``max_connections``) at once when none is
    waiting; otherwise it waits in line as the blocking pool has it (the timeout, then
    "No connection available"). Releases are the blocking pool's, which wake the next waiter."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting = 0

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        if self._waiting or self._in_maintenance or not self.can_get_connection():
            self._waiting += 1
            try:
                waited: AbstractConnection = await super().get_connection()  # type: ignore[no-untyped-call]
                return waited
            finally:
                self._waiting -= 1
        connection: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection


def request_redis(settings: Settings) -> Redis:
    """A client whose calls fail within ``redis_timeout_s`` when Redis is away."""
    pool = QuickPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        # A pooled connection that died while idle (Redis restarted, a proxy or the network
        # cut it) fails on its next use: one immediate retry on a fresh connection keeps that
        # from failing a request once Redis is back. Only for connection errors, not timeouts,
        # so a stalled Redis still fails within the timeout. Safe for submit too: a retried
        # submission is recognised by its session id and counted once.
        retry=Retry(NoBackoff(), 1, supported_errors=(redis_errors.ConnectionError,)),
    )
    # The client owns the pool: aclose() closes its connections.
    return Redis.from_pool(packed_by_hiredis(pool))


def background_redis(settings: Settings) -> Redis:
    """A client for long blocking reads: its socket timeout outlasts ``worker_block_ms``."""
    timeout = settings.redis_timeout_s + settings.worker_block_ms / 1000
    return Redis.from_url(
        settings.redis_url, socket_timeout=timeout, socket_connect_timeout=settings.redis_timeout_s
    )
