"""The write-behind worker: persist the events stream to PostgreSQL, exactly once.

One step: take a batch (entries of crashed consumers first, then this consumer's own pending
entries, then new ones), insert it in ONE transaction keyed by event id, and acknowledge the
entries only after COMMIT. A crash before the acknowledgement redelivers the batch, and the
``ON CONFLICT DO NOTHING`` insert makes the second delivery add nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from psycopg_pool import AsyncConnectionPool
from redis.exceptions import ResponseError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from persistence.binding import Binding, BoundElsewhere
from persistence.database import translate_db_errors
from persistence.moderation import persist_action
from persistence.repository import persist_sessions
from persistence.stream import (
    StreamEntry,
    columns_of,
    ensure_group,
    kind_of,
    lag_s,
    request_of,
    traces_of,
    unpersisted,
)
from ranker import metrics, tracing
from ranker.connections import Client, call_replicated, translate_redis_errors
from ranker.errors import DatabaseError, RedisUnavailable
from ranker.keys import WORKER_GROUP, Keys
from ranker.scripts import Scripts
from ranker.settings import Settings
from ranker.shards import home, shards_of

log = logging.getLogger("ranker.worker")
#: One line per committed batch (with RANKER_ACCESS_LOG), apart so that it can be silenced alone.
batches = logging.getLogger("ranker.worker.batches")
#: How often a running worker samples the backlog and its lag for the metrics.
SAMPLE_INTERVAL_S = 1.0
#: How often a worker refused by the namespace's binding looks whether it is its own again.
BINDING_POLL_S = 1.0
T = TypeVar("T")


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``stop`` is set meanwhile (shutdown does not wait)."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


def consumer_name() -> str:
    """A name unique to this process: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Persists the stream of one namespace; ``run`` until stopped, or ``drain`` (burst mode)."""

    name = "worker"

    def __init__(
        self,
        settings: Settings,
        redis: Client,
        pool: AsyncConnectionPool,
        *,
        consumer: str | None = None,
        retry_wait_max_s: float = 2.0,
        binding: Binding | None = None,
        keys: Keys | None = None,
    ) -> None:
        """``binding``: shared by the workers of one process (one refusal, one identity
        lookup); by default the worker's own. ``keys``: the board shard whose stream it
        persists (``ranker.shards``); by default the namespace's home."""
        self.settings = settings
        self.redis = redis
        self.pool = pool
        self.keys = keys or home(settings.namespace, settings.board_shards)
        self.scripts = Scripts.register(redis)
        self.consumer = consumer or consumer_name()
        self.retry_wait_max_s = retry_wait_max_s
        self.binding = binding or Binding(settings.namespace, redis, pool, self.keys)
        self._next_claim = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Persist batches until ``stop`` is set; outages of Redis or PostgreSQL are waited out
        with backoff, and the batch in hand is committed and acknowledged before returning.
        The backlog and lag gauges are sampled all the while, outages included."""
        await self._with_retries(lambda: ensure_group(self.redis, self.keys), stop)
        # Sampled beside the steps, not between them: while PostgreSQL is down one step retries
        # for as long as the outage lasts, and the gauges would freeze just when they matter.
        async with asyncio.TaskGroup() as group:
            group.create_task(self._sample_until(stop))
            group.create_task(self._persist_until(stop))

    async def _persist_until(self, stop: asyncio.Event) -> None:
        linger_s = self.settings.worker_linger_ms / 1000
        while not stop.is_set():
            try:
                handled = await self._with_retries(
                    lambda: self.step(self.settings.worker_block_ms), stop
                )
            except BoundElsewhere:
                await self._wait_for_binding(stop)
                continue
            if handled and handled < self.settings.worker_batch_size:
                # Caught up: let the next batch gather rather than pay a transaction and a
                # dozen round trips for every few events (the lag this adds is the linger).
                await pause(stop, linger_s)

    async def _wait_for_binding(self, stop: asyncio.Event) -> None:
        """Read nothing until the namespace is bound to this worker's database again (a
        rebuild from it re-binds it) or ``stop``. The batch in hand stays pending under this
        consumer: a worker of the bound database claims it after ``claim_idle_ms``."""
        while not stop.is_set():
            await pause(stop, BINDING_POLL_S)
            try:
                await self.binding.check()
                return
            except (BoundElsewhere, DatabaseError, RedisUnavailable):
                continue

    async def _sample_until(self, stop: asyncio.Event) -> None:
        """``sample`` every ``SAMPLE_INTERVAL_S`` until ``stop``; a Redis that cannot answer
        now is skipped (the steps wait out and log the outage)."""
        while not stop.is_set():
            try:
                await self.sample()
            except (RedisUnavailable, ResponseError) as exc:  # ResponseError: group just gone
                log.debug("could not sample the backlog: %s", exc)
            await pause(stop, SAMPLE_INTERVAL_S)

    async def sample(self) -> None:
        """Set the backlog and lag gauges (what ``/metrics`` tells operators of write-behind):
        of the whole namespace, every board shard's stream (the backlog summed, the lag the
        largest), whichever shard this worker persists."""
        parts = shards_of(self.settings.namespace, self.settings.board_shards).parts
        with translate_redis_errors():
            metrics.backlog.set(sum([await unpersisted(self.redis, keys) for keys in parts]))
            metrics.worker_lag.set(max([await lag_s(self.redis, keys) for keys in parts]))

    async def drain(self, idle_steps: int = 1) -> int:
        """Persist until a step finds nothing; returns the number of entries handled."""
        await ensure_group(self.redis, self.keys)
        handled = idle = 0
        while idle < idle_steps:
            count = await self.step(block_ms=None)
            handled += count
            idle = idle + 1 if count == 0 else 0
        return handled

    async def step(self, block_ms: int | None) -> int:
        """Take one batch, persist it, acknowledge it; returns how many entries it held.
        ``BoundElsewhere`` (nothing persisted or acknowledged) when the namespace is bound to
        another database."""
        try:
            with translate_redis_errors():
                entries = await self._claim() or await self._read("0", None)
                if not entries:
                    entries = await self._read(">", block_ms)
        except ResponseError as exc:
            # The stream and its group vanish when Redis is flushed or replaced by an empty
            # server (a blocked read then fails with UNBLOCKED): make them again and go on.
            if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                raise
            log.warning("events stream or group missing (%s): creating them", exc)
            await ensure_group(self.redis, self.keys)
            return 0
        if not entries:
            return 0
        ids = [entry_id for entry_id, _ in entries]
        # With traces on, one span for the batch (its COMMIT and ack), linked to the spans of
        # the requests that submitted its sessions.
        batch: dict[str, int | str] = {
            "ranker.batch.entries": len(entries),
            "ranker.worker.consumer": self.consumer,
        }
        with tracing.span("ranker.worker.batch", batch, traces_of(entries), consumer=True):
            if any(fields for _, fields in entries):
                # Checked per batch, after the read and just before the COMMIT: a namespace
                # re-bound while this worker runs (a rebuild from another database) costs at
                # most the batch in flight, and one Redis call per batch is nothing beside its
                # transaction.
                await self.binding.check()
                await self._replicated()
                await self._persist(entries)
            with translate_redis_errors():
                await self.scripts.ack(
                    [self.keys.events, self.keys.rebuild_flag], [WORKER_GROUP, *ids]
                )
        metrics.batch_size.observe(len(entries))
        return len(entries)

    async def _replicated(self) -> None:
        """With ``RANKER_REDIS_MIN_REPLICAS_ACK``, return once that many replicas have every
        write up to the batch just read; ``RedisUnavailable`` (the step is retried, the batch
        stays pending) when they do not within the timeout. Otherwise a session could reach
        PostgreSQL from a primary that then died before a replica had it: the promoted replica
        would not know its idempotency key, and a retry would be stored a second time."""
        wanted = self.settings.redis_min_replicas_ack
        if not wanted:
            return
        with translate_redis_errors():
            _, acked = await call_replicated(
                self.redis,
                self.scripts.replica_sync,
                [self.keys.replica_sync],
                [],
                wanted,
                self.settings.redis_replica_ack_timeout_ms,
            )
        if acked < wanted:
            raise RedisUnavailable(
                f"the events read are not yet on {wanted} Redis replica(s)",
                f"WAIT counted {acked}",
            )

    async def _persist(self, entries: Sequence[StreamEntry]) -> None:
        """Persist a batch in one transaction, in stream order: the sessions between two
        other entries (changes of a definition, names, admin actions) as one statement, each
        other entry where it stands."""
        started = time.perf_counter()
        with translate_db_errors():
            async with self.pool.connection() as conn, conn.transaction():
                added = 0
                rows: list[tuple[bytes, ...]] = []
                requests: list[str] = []
                for entry_id, fields in entries:
                    if not fields:
                        continue  # deleted from the stream after it was read: persisted
                    if kind_of(fields) is None:
                        rows.append(columns_of(entry_id, fields))
                        if request := request_of(fields):
                            requests.append(request)
                        continue
                    if rows:
                        added += await persist_sessions(conn, rows)
                        rows = []
                    await persist_action(conn, self.settings.game_modes, entry_id, fields)
                if rows:
                    added += await persist_sessions(conn, rows)
        committed_s = time.perf_counter() - started
        tracing.annotate({"ranker.batch.persisted": added})
        metrics.commit_duration.observe(committed_s)
        metrics.persisted_events.inc(added)
        if self.settings.access_log:
            # The worker's part of the request log: grep a request id to find its batch.
            batches.info(
                "batch of %d entries committed in %.2fms, %d new sessions; request ids: %s",
                len(entries),
                committed_s * 1000,
                added,
                " ".join(requests) or "-",
                extra={"entries": len(entries), "persisted": added, "request_ids": requests},
            )

    async def _read(self, start: str, block_ms: int | None) -> list[StreamEntry]:
        """Own pending entries (``start="0"``) or new ones (``">"``); an empty list if none."""
        reply: Any = await self.redis.xreadgroup(
            WORKER_GROUP,
            self.consumer,
            {self.keys.events: start},
            count=self.settings.worker_batch_size,
            block=block_ms,
        )
        if not reply:
            return []
        entries: list[StreamEntry] = reply[0][1]
        return entries

    async def _claim(self) -> list[StreamEntry]:
        """Take over entries that another consumer read but left idle past ``claim_idle_ms``
        (it crashed or hangs); checked every ``claim_idle_ms / 2`` only."""
        now = time.monotonic()
        if now < self._next_claim:
            return []
        self._next_claim = now + self.settings.claim_idle_ms / 2000
        reply = await self.redis.xautoclaim(
            self.keys.events,
            WORKER_GROUP,
            self.consumer,
            min_idle_time=self.settings.claim_idle_ms,
            count=self.settings.worker_batch_size,
        )
        claimed: list[StreamEntry] = reply[1]
        if claimed:
            log.info("claimed %d entries left idle by another consumer", len(claimed))
        return claimed

    async def _with_retries(
        self, attempt: Callable[[], Awaitable[T]], stop: asyncio.Event
    ) -> T | None:
        """Run ``attempt`` until it succeeds (its result) or ``stop`` is set (``None``), backing
        off on outages."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((DatabaseError, RedisUnavailable)),
            wait=wait_exponential_jitter(
                multiplier=0.05, max=self.retry_wait_max_s, jitter=self.retry_wait_max_s / 10
            ),
            sleep=functools.partial(pause, stop),
            before_sleep=lambda state: log.warning(
                "worker step failed, retrying: %s", state.outcome and state.outcome.exception()
            ),
            reraise=True,
        )
        async for try_ in retrying:
            with try_:
                if stop.is_set():
                    return None
                return await attempt()
        return None  # pragma: no cover (reraise=True: the loop returns or raises)
