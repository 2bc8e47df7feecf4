"""Connections to Redis, and the one place redis-py errors become ranker's own (the twin of
``persistence/database.py`` for PostgreSQL).

Two client recipes: ``request_redis`` for the API's request path (short timeouts, a bounded
pool) and ``background_redis`` for the worker and the commands (long blocking stream reads).
Each gives redis-py's ``Redis`` for a one-server URL and its ``RedisCluster`` for a cluster URL
(``ranker.redis_url``); the rest of ranker uses either through the same commands (``Client``):
every key of a namespace shares one hash tag, so each script, pipeline and transaction stays
on one node (docs/design.md, "Redis Cluster").
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.cluster import LoadBalancingStrategy
from redis.connection import HiredisRespSerializer

from ranker import metrics
from ranker.errors import RedisMemoryFull, RedisUnavailable
from ranker.redis_url import parse_redis_url
from ranker.settings import Settings

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

#: A client of one server or of a cluster: ranker calls only what both have.
Client = Redis | RedisCluster

#: Replies of a Redis that is up but cannot serve writes or reads right now.
_TRANSIENT_REPLIES = ("LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY")
#: What redis-py's cluster client raises while the cluster moves slots or promotes a replica.
_CLUSTER_UNAVAILABLE = (
    redis_errors.ClusterError,
    redis_errors.RedisClusterException,
    redis_errors.TryAgainError,
    redis_errors.AskError,
    redis_errors.ReadOnlyError,
)


#: The module whose writes leak a closed transport's AttributeError, TypeError or RuntimeError.
_REDIS_CONNECTION = os.path.join("redis", "asyncio", "connection.py")


def _write_on_a_closed_connection(exc: BaseException) -> bool:
    """Whether ``exc`` came up through redis-py's asyncio connection (its write path)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return any(frame.filename.endswith(_REDIS_CONNECTION) for frame in frames)


def _transient_code(exc: redis_errors.ResponseError) -> bool:
    """Whether redis-py took a transient reply's code off its message (it keeps it apart)."""
    return str(getattr(exc, "status_code", "") or "").startswith(_TRANSIENT_REPLIES)


@contextlib.contextmanager
def translate_redis_errors() -> Iterator[None]:
    """Turn a Redis outage into ``RedisUnavailable`` (503); other errors are bugs and pass."""
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
        metrics.redis_errors.inc()
        raise RedisUnavailable("Redis is unreachable", str(exc)) from exc
    except (AttributeError, TypeError, RuntimeError) as exc:
        if not _write_on_a_closed_connection(exc):
            raise
        # redis-py 8.1 writes on a connection that was closed under it (a peer reset, or the
        # cluster client closing every connection to reinitialise after CLUSTERDOWN while other
        # calls use them) and leaks the transport's error instead of a ConnectionError
        # (redis/redis-py#4287; uvloop's transport raises RuntimeError): an outage, not a bug.
        metrics.redis_errors.inc()
        raise RedisUnavailable("Redis closed the connection", repr(exc)) from exc
    except _CLUSTER_UNAVAILABLE as exc:
        # A cluster between layouts: a primary failed and its replica is not promoted yet, or
        # the client has not learnt the new layout (its retries spent). It passes.
        metrics.redis_errors.inc()
        raise RedisUnavailable("the Redis Cluster cannot serve this key now", str(exc)) from exc
    except redis_errors.ResponseError as exc:
        metrics.redis_errors.inc()
        if str(exc).startswith(_TRANSIENT_REPLIES) or _transient_code(exc):
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


def request_redis(settings: Settings) -> Client:
    """A client whose calls fail within ``redis_timeout_s`` when Redis is away."""
    if parse_redis_url(settings.redis_url):
        return _cluster_client(
            settings, settings.redis_timeout_s, replicas=settings.read_from_replicas
        )
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


def background_redis(settings: Settings) -> Client:
    """A client for long blocking reads: its socket timeout outlasts ``worker_block_ms``."""
    timeout = settings.redis_timeout_s + settings.worker_block_ms / 1000
    if parse_redis_url(settings.redis_url):
        return _cluster_client(settings, timeout, replicas=False)
    return Redis.from_url(
        settings.redis_url, socket_timeout=timeout, socket_connect_timeout=settings.redis_timeout_s
    )


def _cluster_client(settings: Settings, timeout_s: float, *, replicas: bool) -> RedisCluster:
    """redis-py's cluster client on the URL's nodes. Its pool is per node (past
    ``redis_max_connections`` a call fails at once: 503, where one server's pool queues). It
    learns the layout from the first node that answers, follows MOVED and ASK, and after a
    connection error or CLUSTERDOWN asks for the layout again and retries: a few times, backing
    off up to half a second, so that a failover (a replica promoted within the cluster's node
    timeout) is ridden out by most calls and the rest fail as 503. With ``replicas``,
    read-only commands (the reads' ``EVALSHA_RO``) go to the replicas in turn."""
    cluster = parse_redis_url(settings.redis_url)
    assert cluster is not None
    return RedisCluster.from_url(
        cluster.node_url,
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],
        max_connections=settings.redis_max_connections,
        socket_timeout=timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3),
        load_balancing_strategy=LoadBalancingStrategy.ROUND_ROBIN_REPLICAS if replicas else None,
    )


async def load_script(client: Client, text: bytes | str | memoryview) -> None:
    """Load a script where its calls go: the server, or every node of a cluster (replicas do
    not get a primary's SCRIPT LOAD, and serve the reads of ``RANKER_READ_FROM_REPLICAS``)."""
    if isinstance(client, RedisCluster):
        await client.execute_command("SCRIPT LOAD", text, target_nodes=RedisCluster.ALL_NODES)
    else:
        await client.script_load(text)


async def call_replicated(
    client: Client,
    script: AsyncScript,
    keys: Sequence[str],
    args: Sequence[str | int | bytes],
    replicas: int,
    timeout_ms: int,
) -> tuple[Any, int]:
    """Run ``script``, then ``WAIT replicas timeout_ms`` on the same connection, in one round
    trip: the script's reply and how many replicas have its writes. WAIT counts the writes of
    its own connection, so the two must share one: on a cluster, a connection to the node that
    holds ``keys[0]`` (a pipeline there could send them to two nodes while it learns a new
    layout, and a WAIT on a connection that wrote nothing counts every replica)."""
    for attempt in (1, 2):
        try:
            if isinstance(client, RedisCluster):
                wait = ("WAIT", replicas, timeout_ms)
                reply, acked = await _on_slot_owner(client, script, keys, args, wait)
            else:
                async with client.pipeline(transaction=False) as pipe:
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                    pipe.execute_command("WAIT", replicas, timeout_ms)
                    reply, acked = await pipe.execute(raise_on_error=False)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.AskError):
            if isinstance(client, RedisCluster):
                # A keyed call through the client: it follows MOVED and reconnects, so that it
                # learns the new layout for the next submission (whatever it answers now).
                with contextlib.suppress(redis_errors.RedisError):
                    await client.exists(keys[0])
            raise
        if isinstance(reply, redis_errors.NoScriptError) and attempt == 1:
            await load_script(client, script.script)  # a restarted or promoted node
            continue
        for answer in (reply, acked):
            if isinstance(answer, Exception):
                raise answer
        break
    return reply, int(acked)


async def _on_slot_owner(
    client: RedisCluster,
    script: AsyncScript,
    keys: Sequence[str],
    args: Sequence[str | int | bytes],
    wait: tuple[str, int, int],
) -> tuple[Any, Any]:
    """EVALSHA and WAIT on one connection to the primary of ``keys[0]``'s slot. A MOVED or ASK
    (the slot moved meanwhile) is raised: the submission may not have run, and the caller's
    503 makes the client retry it, counted once."""
    await client.initialize()
    node = client.get_node_from_key(keys[0])
    if node is None:
        raise redis_errors.SlotNotCoveredError(f"no node serves {keys[0]!r}")
    connection = node.acquire_connection()
    try:
        await connection.connect()  # type: ignore[no-untyped-call]
        commands = [("EVALSHA", script.sha, len(keys), *keys, *args), wait]
        await connection.send_packed_command(connection.pack_commands(commands), False)
        answers = []
        for _ in commands:
            try:
                answers.append(await connection.read_response())
            except redis_errors.ResponseError as exc:  # an error reply: the next one follows
                answers.append(exc)
    except BaseException:
        await connection.disconnect()  # left mid-reply: not fit to be used again
        raise
    finally:
        node.release(connection)
    reply, acked = answers
    if isinstance(reply, redis_errors.AskError):  # MOVED or ASK
        raise reply
    return reply, acked


async def node_info(client: Client, section: str, key: str) -> dict[str, Any]:
    """``INFO section`` of the server, or of the cluster node that holds ``key`` now."""
    if isinstance(client, RedisCluster):
        await client.initialize()  # learns the layout once; at once afterwards
        node = client.get_node_from_key(key)
        info: dict[str, Any] = await client.info(section, target_nodes=node)
        return info
    return await client.info(section)
