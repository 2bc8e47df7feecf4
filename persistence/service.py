"""What ``ranker serve`` and ``ranker worker`` run beside (or instead of) the API: the
write-behind worker and the rebuild watchdog, on their own Redis client and PostgreSQL pool."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from psycopg_pool import AsyncConnectionPool
from redis import exceptions as redis_errors

from persistence.backfill import fill_boards
from persistence.binding import Binding
from persistence.database import pool_for
from persistence.moderation import complete_pending
from persistence.partitions import MAINTENANCE_INTERVAL_S, maintain
from persistence.rebuild import Rebuild
from persistence.rebuild_report import RebuildBusy
from persistence.stream import kept_after_persisting, trim_acknowledged
from persistence.worker import Worker, consumer_name, pause
from ranker.catalog import sync_definitions_version
from ranker.connections import Client, background_redis, node_info, translate_redis_errors
from ranker.errors import RankerError, Unavailable
from ranker.keys import Keys
from ranker.scripts import Scripts
from ranker.settings import Settings
from ranker.shards import shards_of

log = logging.getLogger("ranker.service")
#: How often the watchdog checks that the namespace's boards are loaded.
WATCH_INTERVAL_S = 1.0
#: How often the heartbeat file is touched (``ranker healthcheck`` allows several misses).
HEARTBEAT_INTERVAL_S = 1.0
RESTART_DELAY_S = 1.0


async def watch_boards(
    settings: Settings, redis: Client, pool: AsyncConnectionPool, stop: asyncio.Event
) -> None:
    """Rebuild the boards whenever the namespace's marker is missing (Redis started empty,
    was flushed or failed over to an empty replica) or the server holding it is not the one
    seen before (a replica promoted, or a restart: its data may lack writes PostgreSQL has),
    fill the boards created with a backfill, complete the unbans and voids their callers left
    (they timed out), and maintain the partitions of the session log (from the first round on,
    then every ``MAINTENANCE_INTERVAL_S``), until ``stop``."""
    shards, scripts = shards_of(settings.namespace, settings.board_shards), Scripts.register(redis)
    #: The replication id of the server that holds each board shard (the namespace's one alone
    #: when it is not sharded), as last seen.
    seen: dict[int, str | None] = dict.fromkeys(range(shards.count))
    maintenance_due = 0.0
    while not stop.is_set():
        try:
            settled = True
            for shard, keys in enumerate(shards.parts):
                seen[shard], quiet = await _watch_shard(
                    settings, redis, pool, keys, shard, seen[shard], scripts
                )
                settled = settled and quiet
            if settled:
                await sync_definitions_version(redis, shards)
                await fill_boards(settings, redis, pool)
                await complete_pending(settings, redis, pool)
                if time.monotonic() >= maintenance_due:
                    maintenance_due = time.monotonic() + await maintain_partitions(
                        settings, redis, pool
                    )
        except RankerError as exc:
            log.warning("rebuild check failed, will retry: %s", exc)
        await pause(stop, WATCH_INTERVAL_S)


async def _watch_shard(
    settings: Settings,
    redis: Client,
    pool: AsyncConnectionPool,
    keys: Keys,
    shard: int,
    seen: str | None,
    scripts: Scripts,
) -> tuple[str | None, bool]:
    """One round of the watchdog on one board shard: its rebuild when due. Returns the
    replication id to remember and whether the shard was loaded and quiet (no rebuild ran or
    runs)."""
    try:
        with translate_redis_errors():
            missing = not await redis.exists(keys.marker)
            running = bool(await redis.exists(keys.rebuild_flag))
            origin = await replication_id(redis, keys)
        moved = seen is not None and origin != seen
        if (missing or moved) and not running:
            why = "are not loaded" if missing else "are on a server promoted or restarted"
            where = f" (shard {shard})" if keys.tag else ""
            log.warning("boards of namespace %s%s %s: rebuilding", settings.namespace, where, why)
            report = await Rebuild(settings, redis, pool, keys=keys, shard=shard).run()
            log.info("rebuilt %d members in %.2f s", report.members, report.duration_s)
            return origin, False
        if running:
            return origin, False
        await trim_leftovers(settings, redis, keys, scripts)
        return origin, True
    except RebuildBusy:
        return None, False  # another process rebuilds: what it loads is the new server's


async def replication_id(redis: Client, keys: Keys) -> str:
    """The replication id of the server (on a cluster: the primary) holding the namespace: a
    replica promoted to primary, or a server restarted, takes a new one (docs/design.md,
    "Redis Cluster")."""
    return str((await node_info(redis, "replication", keys.marker)).get("master_replid", ""))


async def maintain_partitions(
    settings: Settings, redis: Client, pool: AsyncConnectionPool
) -> float:
    """One round of ``partitions.maintain``; the seconds until the next (a minute after a
    failure: a lock it could not get in time, an outage)."""
    try:
        done = await maintain(settings, redis, pool)
    except RankerError as exc:
        log.warning("partition maintenance failed, will retry in a minute: %s", exc)
        return 60.0
    if done.held:
        log.info("retention: %s", done.kept)
    return MAINTENANCE_INTERVAL_S


async def heartbeat(path: Path, stop: asyncio.Event) -> None:
    """Touch ``path`` every ``HEARTBEAT_INTERVAL_S`` until ``stop``: its age tells a container
    healthcheck that this process's event loop still runs (the worker and the watchdog are
    tasks on it, restarted by ``supervise`` if they fail). It goes on through outages of Redis
    and PostgreSQL, which the worker waits out: restarting it would not help."""
    while not stop.is_set():
        path.touch()
        await pause(stop, HEARTBEAT_INTERVAL_S)


async def supervise(job: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    """Run ``job`` until ``stop`` is set, restarting it after an unexpected error: a bug met
    once must not leave the process serving without its worker or its watchdog."""
    while not stop.is_set():
        try:
            await job()
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, Unavailable) as exc:
            # A server away or still loading its data (a restart): expected, and said in one
            # line; the traceback is for bugs.
            log.warning("background job stopped: %s; restarting it in %s s", exc, RESTART_DELAY_S)
            await pause(stop, RESTART_DELAY_S)
        except Exception:
            log.exception("background job failed; restarting it in %s s", RESTART_DELAY_S)
            await pause(stop, RESTART_DELAY_S)


async def trim_leftovers(settings: Settings, redis: Client, keys: Keys, scripts: Scripts) -> None:
    """Delete entries that a rebuild kept but did not get to delete (it died after its swap):
    more entries in the stream than await persistence means some were left behind."""
    with translate_redis_errors():
        if await kept_after_persisting(redis, keys):
            deleted = await trim_acknowledged(scripts, keys, settings.rebuild_batch_size)
            log.info("deleted %d persisted entries a rebuild left in the stream", deleted)


def workers(
    settings: Settings,
    redis: Client,
    pool: AsyncConnectionPool,
    bindings: Sequence[Binding] | None = None,
) -> list[Worker]:
    """``worker_concurrency`` consumers per board shard: while one waits for its COMMIT,
    another reads and sends the next batch (PostgreSQL runs their transactions on separate
    cores). The consumers of a shard share its binding (``bindings``, one per shard; by
    default their own)."""
    base = consumer_name()
    parts = shards_of(settings.namespace, settings.board_shards).parts
    bindings = bindings or shard_bindings(settings, redis, pool)
    return [
        Worker(
            settings,
            redis,
            pool,
            consumer=f"{base}-{n}" if len(parts) == 1 else f"{base}-s{shard}-{n}",
            binding=bindings[shard],
            keys=keys,
        )
        for shard, keys in enumerate(parts)
        for n in range(settings.worker_concurrency)
    ]


def shard_bindings(settings: Settings, redis: Client, pool: AsyncConnectionPool) -> list[Binding]:
    """The binding of each board shard to a database."""
    parts = shards_of(settings.namespace, settings.board_shards).parts
    return [Binding(settings.namespace, redis, pool, keys) for keys in parts]


class Persistence:
    """The worker and the watchdog as one background service of the API process."""

    name = "persistence"

    def __init__(self, settings: Settings, *, worker: bool = True, watchdog: bool = True) -> None:
        self.settings = settings
        self.worker = worker
        self.watchdog = watchdog
        self._bindings: list[Binding] = []

    def problem(self) -> str | None:
        """Why the worker persists nothing now (the namespace is bound to another database),
        for ``/readyz``; ``None`` while it works."""
        for binding in self._bindings:
            if binding.refusal:
                return binding.refusal.detail
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; the worker finishes and acknowledges its batch first."""
        redis = background_redis(self.settings)
        try:
            async with pool_for(self.settings, wait=False) as pool:
                jobs: list[Callable[[], Awaitable[None]]] = []
                if self.worker:
                    self._bindings = shard_bindings(self.settings, redis, pool)
                    jobs.extend(
                        functools.partial(worker.run, stop)
                        for worker in workers(self.settings, redis, pool, self._bindings)
                    )
                if self.watchdog:
                    jobs.append(lambda: watch_boards(self.settings, redis, pool, stop))
                beat = self.settings.heartbeat_file
                if beat is not None:
                    jobs.append(lambda: heartbeat(beat, stop))
                await asyncio.gather(*(supervise(job, stop) for job in jobs))
        finally:
            await redis.aclose()
