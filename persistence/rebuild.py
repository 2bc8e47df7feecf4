"""Rebuild a namespace's boards from PostgreSQL into shadow keys, then swap them in atomically.

The protocol (docs/design.md, "Rebuild protocol"): a flag with a generation id makes every
submission also land in a per-board delta key and tags its stream entry; a REPEATABLE READ
snapshot S is loaded into the shadow keys; then the stream is read and reconciled with S:

=============================  =======================  ===============================
stream entry                   in S                     not in S
=============================  =======================  ===============================
untagged (before the flag)     counted by S: skip       apply to the shadow (a ``last``
                                                        only over an older score of S)
tagged (after the flag)        sum: subtract (S and     counted by the delta: skip
                               the delta hold it);
                               best, last: skip (the
                               merge is idempotent)
=============================  =======================  ===============================

A board period is rebuilt per its op (``ranker.placements``): a sum adds, a best keeps the
better of shadow and entry, a last keeps the newest by acceptance order (an untagged entry
not in S is newer than S's score unless another worker committed a later session first, so
its order is compared with S's). At the swap a delta is merged by the same op: for a last,
the delta's score is the newest of all (tagged entries follow every untagged one).

The board periods rebuilt are the current and retained ones of every board that counts
(``targets``), from the definitions in Redis, or those PostgreSQL holds when Redis lost them
(restored first: ``restore_definitions``).

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
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from persistence import repository
from persistence.binding import bound_to, pool_identity
from persistence.bulkload import bulk_loader
from persistence.database import translate_db_errors
from persistence.definitions import restore_definitions
from persistence.player_restore import load_names, names_set, reconcile_names
from persistence.rebuild_report import RebuildBusy, RebuildReport
from persistence.seen_restore import restore_seen
from persistence.stream import generation_of, kind_of, parse_entry, trim_acknowledged
from ranker import metrics, tracing
from ranker.catalog import STOPPED, Catalog
from ranker.connections import Client, translate_redis_errors
from ranker.errors import RankerError
from ranker.keys import Keys
from ranker.placements import Placement, live_placements
from ranker.scripts import Scripts
from ranker.settings import Settings
from ranker.shards import shard_of, shards_of

log = logging.getLogger("ranker.rebuild")
ATTEMPTS = 3
#: Members per ZRANGE page when the swap adds a delta into its shadow.
SWAP_CHUNK = 1_000
#: How often a rebuild waiting for another one checks whether it has finished.
BUSY_POLL_S = 0.1


class Rebuild:
    """One rebuild of one namespace."""

    def __init__(
        self,
        settings: Settings,
        redis: Client,
        pool: AsyncConnectionPool,
        only: Collection[str] | None = None,
        *,
        keys: Keys | None = None,
        shard: int = 0,
    ) -> None:
        """``only``: the ids of the boards to load (a backfilled one); by default every board.
        ``keys``: the one board shard to rebuild (``shard``: its index), loading only its
        players; by default every shard, one after the other (``ranker.shards``)."""
        self.settings = settings
        self.redis = redis
        self.pool = pool
        self.shards = shards_of(settings.namespace, settings.board_shards)
        self.every_shard = keys is None and self.shards.sharded
        self.keys = keys or self.shards.base
        self.shard = shard
        self.scripts = Scripts.register(redis)
        self.catalog = Catalog(redis, settings)
        self._ttl_ms = settings.rebuild_ttl_s * 1000
        self.only = only
        self.targets: list[Placement] = []
        #: The deltas of the periods of the boards that are not loaded (with ``only``).
        self.dropped: list[str] = []

    @tracing.traced("ranker.rebuild")  # with traces on, a span with the report's numbers
    async def run(self, wait_s: float = 0.0) -> RebuildReport:
        """Rebuild every board.

        When another rebuild runs, wait up to ``wait_s`` for it to end and then rebuild anew
        (its snapshot may predate what the caller wants loaded); ``RebuildBusy`` after that.
        The namespace is bound to this database from the start (``persistence.binding``),
        whichever it was bound to before.
        ``RankerError`` when the swap was refused ``ATTEMPTS`` times (each outlived its flag).
        """
        if self.every_shard:
            return await self._every_shard(wait_s)
        started = time.perf_counter()
        # And the bans of this shard's players.
        await restore_definitions(self.redis, self.settings, self.pool, self.keys, self._mine)
        for attempt in range(1, ATTEMPTS + 1):
            generation = uuid.uuid4().hex
            self.targets = await self._targets()
            await self._begin(generation, wait_s)
            try:
                counts = await self._load(generation)
                with translate_redis_errors():
                    swapped = await self.scripts.rebuild_swap(
                        [self.keys.rebuild_flag, self.keys.marker, *self._swap_keys()],
                        [
                            generation,
                            SWAP_CHUNK,
                            len(self.targets),
                            "1" if self.only is None else "0",
                            *self._swap_args(),
                        ],
                    )
            except BaseException:
                await self._abandon(generation)
                raise
            if swapped:
                await trim_acknowledged(self.scripts, self.keys, self.settings.rebuild_batch_size)
                duration = time.perf_counter() - started
                metrics.rebuild_duration.observe(duration)
                metrics.rebuild_members.set(counts[0])
                return RebuildReport(
                    *counts, attempts=attempt, duration_s=duration, periods=len(self.targets)
                )
            log.warning("rebuild generation %s outlived its flag; starting again", generation)
        raise RankerError(f"rebuild did not finish within the flag TTL {ATTEMPTS} times")

    def _mine(self, user_id: int) -> bool:
        """Whether a player is of the shard rebuilt."""
        return shard_of(user_id, self.shards.count) == self.shard

    async def _every_shard(self, wait_s: float) -> RebuildReport:
        reports = [
            await Rebuild(
                self.settings, self.redis, self.pool, self.only, keys=keys, shard=shard
            ).run(wait_s)
            for shard, keys in enumerate(self.shards.parts)
        ]
        summed = {f: sum(getattr(r, f) for r in reports) for f in RebuildReport.SUMMED}
        return RebuildReport(
            **summed, attempts=max(r.attempts for r in reports), periods=reports[0].periods
        )

    async def _targets(self) -> list[Placement]:
        """Every board period to load: the current (and, when it starts within
        ``LOOKAHEAD``, the next) and the retained periods of every board that counts (of
        ``only``; the deltas of the others' go to ``dropped``)."""
        records = (await self.catalog.reload()).records.values()  # restored if they were lost
        counting = [r.definition for r in records if r.state not in STOPPED]
        targets: dict[str, Placement] = {}
        others: dict[str, Placement] = {}
        for placement in live_placements(counting, datetime.now(UTC)):
            into = targets if self.only is None or placement.board in self.only else others
            into[placement.slot] = placement
        self.dropped = [self.keys.delta(slot) for slot in others]
        return list(targets.values())

    async def _begin(self, generation: str, wait_s: float = 0.0) -> None:
        stale = [
            key for t in self.targets for key in (self.keys.temp(t.slot), self.keys.delta(t.slot))
        ]
        stale += [self.keys.names_temp, self.keys.names_delta] if self.only is None else []
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
        fixed = [
            self.keys.moderation,
            self.keys.names_temp,
            self.keys.names_delta,
            self.keys.names,
            self.keys.pages_version,
        ]
        loaded = [
            key
            for t in self.targets
            for key in (self.keys.temp(t.slot), self.keys.delta(t.slot), self.keys.board(t.slot))
        ]
        return fixed + loaded + self.dropped

    def _swap_args(self) -> list[str | int]:
        return [value for t in self.targets for value in (t.op, t.expires_at_ms)]

    async def _load(self, generation: str) -> tuple[int, int, int, int]:
        """Load snapshot S into the shadows and reconcile the stream with it, in one
        REPEATABLE READ transaction taken after the flag was set."""
        with translate_db_errors():
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                members = 0
                for target in self.targets:
                    members += await self._load_board(conn, target, generation)
                if self.only is None:
                    batch = self.settings.rebuild_batch_size
                    await load_names(conn, self.redis, self.keys, batch, self._mine)
                    await self._keep_flag(generation)
                added, subtracted = await self._reconcile_stream(conn, generation.encode())
                restored = await restore_seen(
                    conn, self.redis, self.keys, self.settings, self._mine
                )
        return members, added, subtracted, restored

    async def _load_board(self, conn: AsyncConnection, target: Placement, generation: str) -> int:
        """Stream one board period's scores into its shadow key. PostgreSQL fetches the next
        batch while Redis adds the previous ones: a reader task feeds the loader through a
        queue."""
        temp = self.keys.temp(target.slot)
        batches: asyncio.Queue[list[tuple[int, int]] | None] = asyncio.Queue(maxsize=8)

        async def read() -> None:
            try:
                async for rows in repository.iter_board_scores(
                    conn, target.board, target.period, self.settings.rebuild_batch_size
                ):
                    if self.shards.sharded:
                        rows = [row for row in rows if self._mine(row[0])]
                    await batches.put(rows)
            finally:
                await batches.put(None)  # the loader stops; an error is raised by ``await``

        reader = asyncio.create_task(read())
        next_extension = time.monotonic()
        try:
            async with bulk_loader(self.redis, temp) as loader:
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
        of entries applied to and subtracted from the shadows."""
        added = subtracted = 0
        start = "-"
        page_size = self.settings.rebuild_batch_size
        ops = {t.slot: t.op for t in self.targets}
        while True:
            with translate_redis_errors():
                page: Any = await self.redis.xrange(self.keys.events, min=start, count=page_size)
            if not page:
                return added, subtracted
            start = "(" + page[-1][0].decode()
            entries = [
                (parse_entry(entry_id, f), generation_of(f) == generation)
                for entry_id, f in page
                if kind_of(f) is None
            ]
            if self.only is None:
                await reconcile_names(conn, self.redis, self.keys, names_set(page, generation))
            persisted = await repository.select_persisted_event_ids(
                conn, [session.event_id for session, _ in entries]
            )
            sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            bests: dict[str, dict[str, int]] = defaultdict(dict)
            lasts: dict[tuple[str, str], dict[int, tuple[int, int]]] = defaultdict(dict)
            for session, tagged in entries:
                in_snapshot = session.event_id in persisted
                if tagged != in_snapshot:
                    continue  # counted once already: by S, or by the delta
                added, subtracted = added + (not tagged), subtracted + tagged
                for token in session.tokens:
                    op = ops.get(token.slot)
                    member = str(session.user_id)
                    if op == "s":
                        sums[token.slot][member] += -session.score if tagged else session.score
                    elif tagged or op is None:
                        continue
                    elif op in ("h", "l"):
                        best = bests[token.slot].get(member)
                        better = max if op == "h" else min
                        bests[token.slot][member] = (
                            session.score if best is None else better(best, session.score)
                        )
                    else:  # later entries of the page are later acceptances
                        newest = lasts[(token.board, token.period)]
                        newest[session.user_id] = (session.accepted_seq, session.score)
            await self._apply(sums, bests, await self._newer_than_snapshot(conn, lasts), generation)

    async def _newer_than_snapshot(
        self, conn: AsyncConnection, lasts: dict[tuple[str, str], dict[int, tuple[int, int]]]
    ) -> dict[str, dict[str, int]]:
        """Of the unpersisted ``last`` scores, those newer than the score S holds."""
        newer: dict[str, dict[str, int]] = defaultdict(dict)
        for (board, period), players in lasts.items():
            seqs = await repository.select_seqs_of_users(conn, board, period, list(players))
            slot = next(t.slot for t in self.targets if (t.board, t.period) == (board, period))
            for user_id, (seq, score) in players.items():
                if seq > seqs.get(user_id, -1):
                    newer[slot][str(user_id)] = score
        return newer

    async def _apply(
        self,
        sums: dict[str, dict[str, int]],
        bests: dict[str, dict[str, int]],
        lasts: dict[str, dict[str, int]],
        generation: bytes,
    ) -> None:
        ops = {t.slot: t.op for t in self.targets}
        with translate_redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                for slot, members in sums.items():
                    for member, points in members.items():
                        pipe.zincrby(self.keys.temp(slot), points, member)
                for slot, members in bests.items():
                    better = {"gt": True} if ops[slot] == "h" else {"lt": True}
                    pipe.zadd(self.keys.temp(slot), members, **better)
                for slot, members in lasts.items():
                    pipe.zadd(self.keys.temp(slot), members)
                await pipe.execute()
            await self._keep_flag(generation.decode())
