"""The live ranking: submit, rank, top and around, each one Lua call on the namespace's sorted sets.

Every operation here is O(log n) in the size of the board (plus the length of the list asked for):
nothing scans a board on the request path.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from ranker import boards, logs, tracing
from ranker.boards import GLOBAL
from ranker.catalog import Catalog, sync_definitions_version
from ranker.coalesce import Coalescer
from ranker.connections import Client, call_replicated, translate_redis_errors
from ranker.entries import counted_on, name_of, ranked, to_int
from ranker.errors import (
    BacklogFull,
    NotFound,
    NotReady,
    NotReplicated,
    PlayerBanned,
    RankerError,
    RedisMemoryFull,
    SessionConflict,
    TooManyRequests,
)
from ranker.fanout import Fanout, Part
from ranker.idempotency import IdempotencyRecord
from ranker.memory import RedisMemory
from ranker.models import (
    Entry,
    Standing,
    SubmitRequest,
    SubmitResponse,
    entries_json,
)
from ranker.page_cache import PageCache
from ranker.placements import place, tokens_text
from ranker.scripts import Scripts
from ranker.settings import Settings
from ranker.shards import home, shards_of

#: How often a submission is placed again when the boards change under it.
PLACE_ATTEMPTS = 3


class Charge(Protocol):
    """A request to charge to its caller's budgets in ``submit.lua`` (``ranker.api.ratelimit``
    makes them): their keys, their spec (``lua/lib/budget.lua``), the 429 of a refusal by the
    ``budget``-th (1-based), whose window ends in ``retry_after_s``."""

    @property
    def keys(self) -> Sequence[str]: ...
    @property
    def spec(self) -> str: ...
    def refused(self, budget: int, retry_after_s: int) -> TooManyRequests: ...


class Ranking:
    """The operations of one namespace on one Redis client."""

    def __init__(
        self,
        redis: Client,
        settings: Settings,
        memory: RedisMemory | None = None,
        catalog: Catalog | None = None,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        reads: Coalescer | None = None,
    ) -> None:
        """``memory``: the watcher whose latest reading submit consults (none: never refuse
        for memory before Redis does); ``catalog``: the board definitions (by default this
        client's own); ``wall_ms``: the clock that places sessions in periods (unix ms);
        ``reads``: the batcher of read scripts (by default this client's own)."""
        self.redis = redis
        self.settings = settings
        self.memory = memory
        self.catalog = catalog or Catalog(redis, settings)
        self.wall_ms = wall_ms
        self.keys = home(settings.namespace, settings.board_shards)
        self.shards = shards_of(settings.namespace, settings.board_shards)
        self.scripts = Scripts.register(redis)
        self.reads = reads or Coalescer(redis, settings.coalesce_reads, settings.read_from_replicas)
        self.fanout = Fanout(self.scripts, self.reads, settings.retry_after_s)
        self.top_cache = PageCache(settings.top_cache)
        self._ttl_ms = str(settings.idempotency_ttl_s * 1000)
        self._max_backlog = str(settings.max_backlog)

    async def _submit(self, keys: list[str], args: list[str | int]) -> tuple[Any, bool]:
        """``submit.lua``'s reply, and whether ``RANKER_REDIS_MIN_REPLICAS_ACK`` replicas have
        its writes (always, with none asked for)."""
        wanted = self.settings.redis_min_replicas_ack
        if not wanted:
            return await self.scripts.submit(keys, args), True
        reply, acked = await call_replicated(
            self.redis,
            self.scripts.submit,
            keys,
            args,
            wanted,
            self.settings.redis_replica_ack_timeout_ms,
        )
        return reply, acked >= wanted

    async def submit(self, request: SubmitRequest, charge: Charge | None = None) -> SubmitResponse:
        """Count one session on every board its game mode counts on, once per session id,
        charged first to ``charge``'s budgets (in the same script: no round trip of its own).

        Raises ``TooManyRequests`` when a budget refuses it (retries too; nothing is stored),
        ``BacklogFull`` when the stream holds ``max_backlog`` unpersisted entries,
        ``RedisMemoryFull`` when the memory watcher's last reading is above the watermark (or
        Redis refuses the write at its maxmemory), ``SessionConflict`` for a session id
        accepted with other data, ``NotReady`` when Redis lost the boards and their rebuild has
        not begun; a retry of an accepted session is answered in every other case. While the
        namespace is rebuilt the submission is accepted but scores and ranks are ``None``.
        """
        pressure = self.memory.pressure() if self.memory else None
        mode = request.game_mode or self.settings.default_game_mode
        session_id = request.session_id or uuid.uuid4().hex
        event_id = str(uuid.uuid4())
        record = IdempotencyRecord.of(event_id, request.user_id, request.score, mode)
        trace = tracing.traceparent()  # "" with traces off: the entry gets no field `w`
        snapshot = await self.catalog.snapshot()
        budget_keys, budgets = (list(charge.keys), charge.spec) if charge else ([], "")
        own = self.shards.of(request.user_id)
        if charge and self.shards.sharded:
            # The budgets live under the namespace's tag, not the player's shard: charged in a
            # round trip of their own.
            await self._spend(charge)
            budget_keys, budgets = [], ""
        for _ in range(PLACE_ATTEMPTS):
            accepted_ms = self.wall_ms()
            placements = place(
                snapshot.counting(mode), datetime.fromtimestamp(accepted_ms / 1000, UTC)
            )
            keys = [
                own.seen(session_id),
                own.seen_legacy(session_id),
                own.events,
                own.rebuild_flag,
                own.marker,
                own.definitions_version,
                own.moderation,
                own.names,
                own.names_delta,
                own.pages_version,
                *(own.board(p.slot) for p in placements),
                *(own.delta(p.slot) for p in placements),
                *budget_keys,
            ]
            args: list[str | int] = [
                request.user_id,
                request.score,
                session_id,
                event_id,
                mode,
                self._ttl_ms,
                accepted_ms,
                self._max_backlog,
                record.text(),
                "1" if pressure else "0",
                snapshot.version or "",
                tokens_text(placements),
                request.username or "",
                logs.request_id.get(),
                trace,
                budgets,
                "1" if self.settings.redis_min_replicas_ack else "0",
            ]
            for p in placements:
                args += [p.op, p.order, p.expires_at_ms]
            with translate_redis_errors():
                (status, ready, reply, *standings), replicated = await self._submit(keys, args)
            if status != b"stale":
                break
            # Another process changed the boards since this one read them: place it again,
            # uncharged (the script charged the budgets before it found the change).
            budget_keys, budgets = [], ""
            if self.shards.sharded:  # the player's shard may hold an older copy of the version
                await sync_definitions_version(self.redis, self.shards)
            snapshot = await self.catalog.reload()
        else:
            raise NotReady("the boards kept changing; retry", self.settings.retry_after_s)
        if refusal := self._refused(status, request.user_id, charge, [reply, *standings]):
            raise refusal
        if status == b"seen":
            first = IdempotencyRecord.parse(reply)
            if not first.is_retry(request.user_id, request.score, mode):
                raise SessionConflict(
                    f"session {session_id} was accepted with another player, score or game "
                    "mode; a retry must repeat the session exactly, and a new session needs a "
                    "new id"
                )
            event_id = first.event_id
        if status == b"memory" and pressure:
            detail = f"{pressure.detail()}: new submissions are refused until it falls"
            cause = f"used_memory {pressure.used_bytes} of maxmemory {pressure.max_bytes}"
            raise RedisMemoryFull(detail, cause, self.settings.retry_after_s)
        if status == b"full":
            raise BacklogFull(
                "too many submissions wait to be persisted; retry later",
                self.settings.retry_after_s,
            )
        if not replicated and status in (b"ok", b"seen"):
            raise NotReplicated(
                f"the submission is not yet on {self.settings.redis_min_replicas_ack} Redis "
                "replica(s); retry with the same session id (it is counted once)",
                self.settings.retry_after_s,
            )
        if ready and self.shards.sharded:
            standings, ready = await self.fanout.submitted(self.shards, own, placements, standings)
        counted = counted_on(placements, standings, ready)
        total = counted[GLOBAL]  # every session counts on the global board
        return SubmitResponse(
            user_id=request.user_id,
            total_score=total.score,
            rank=total.rank,
            session_id=session_id,
            duplicate=status == b"seen",
            event_id=event_id,
            boards=counted,
        )

    async def _spend(self, charge: Charge) -> None:
        with translate_redis_errors():
            refused = await self.scripts.rate_limit(list(charge.keys), [charge.spec])
        if refused:
            raise charge.refused(int(refused[0]), int(refused[1]))

    def _parts(self, mode: str | None) -> list[Part]:
        slot = boards.of_mode(mode)
        return [Part(keys, keys.board(slot)) for keys in self.shards.parts]

    def _refused(
        self, status: bytes, user_id: int, charge: Charge | None, reply: list[Any]
    ) -> RankerError | None:
        """The error of a submission the script refused before looking at its session."""
        if status == b"limited" and charge:
            return charge.refused(int(reply[0]), int(reply[1]))
        if status == b"banned":
            return PlayerBanned(f"player {user_id} is banned: nothing was stored")
        if status == b"held":
            return NotReady(
                f"player {user_id}'s boards are being recomputed by a moderation action; "
                "retry shortly",
                self.settings.retry_after_s,
            )
        if status == b"unloaded":
            return NotReady(
                "the leaderboard lost its boards and waits for their rebuild; retry shortly",
                self.settings.retry_after_s,
            )
        return None

    def now(self) -> datetime:
        """The instant of this process's clock that places sessions (and names periods)."""
        return datetime.fromtimestamp(self.wall_ms() / 1000, UTC)

    async def rank(self, user_id: int, mode: str | None = None) -> Standing:
        """A player's total and rank; ``NotFound`` when the player has no score on the board."""
        if self.shards.sharded:
            shard = self.shards.parts.index(self.shards.of(user_id))
            point = await self.fanout.point(self._parts(mode), "desc", user_id, shard)
            if point is None:
                raise absent(user_id, mode)
            return Standing(
                user_id=user_id,
                total_score=point.score,
                rank=point.rank,
                username=name_of(point.name),
            )
        keys = [self.keys.marker, self.keys.board(boards.of_mode(mode)), self.keys.names]
        with translate_redis_errors():
            ready, total, rank, name = await self.reads.run(self.scripts.rank, keys, [user_id])
        self._check_ready(ready)
        if total is None:
            raise absent(user_id, mode)
        return Standing(
            user_id=user_id, total_score=to_int(total), rank=int(rank), username=name_of(name)
        )

    async def top(self, limit: int, mode: str | None = None) -> list[Entry]:
        """The ``limit`` best players of a board, best first (ties share a rank)."""
        if self.shards.sharded:
            run = await self.fanout.top(self._parts(mode), "desc", [0] * self.shards.count, limit)
            flat, names = run.flat()
            return ranked(flat, run.first_rank, 0, names)
        _, entries = await self._top(self.keys.board(boards.of_mode(mode)), limit, b"")
        assert entries is not None  # a read of no copy is answered with the page
        return entries

    async def top_body(self, limit: int, mode: str | None = None) -> bytes:
        """``top`` as the JSON ``GET /api/leaderboard/top`` answers, this process's copy
        when Redis says it is current (``ranker.page_cache``; one shard only); the same errors
        as ``top``."""
        if self.shards.sharded:
            return entries_json(await self.top(limit, mode))
        key = self.keys.board(boards.of_mode(mode))
        read = functools.partial(self._top, key, limit)
        return await self.top_cache.body((key, limit), read, entries_json)

    async def _top(self, key: str, limit: int, version: bytes) -> tuple[bytes, list[Entry] | None]:
        """The pages version and the page, or None when ``version`` is current (top.lua)."""
        keys = [self.keys.marker, key, self.keys.names, self.keys.pages_version]
        with translate_redis_errors():
            ready, current, *page = await self.reads.run(self.scripts.top, keys, [limit, version])
        self._check_ready(ready)
        return current, ranked(page[0], names=page[1]) if page else None

    async def around(self, user_id: int, side: int, mode: str | None = None) -> list[Entry]:
        """The player and up to ``side`` players above and below; ``NotFound`` if absent."""
        if self.shards.sharded:
            return await self._sharded_around(user_id, side, mode)
        keys = [self.keys.marker, self.keys.board(boards.of_mode(mode)), self.keys.names]
        with translate_redis_errors():
            ready, first_rank, first_position, flat, names = await self.reads.run(
                self.scripts.around, keys, [user_id, side]
            )
        self._check_ready(ready)
        if first_rank is None:
            raise absent(user_id, mode)
        return ranked(flat, int(first_rank), int(first_position), names)

    async def _sharded_around(self, user_id: int, side: int, mode: str | None) -> list[Entry]:
        # around.lua's window: up to ``side`` on each side, cut at the ends (it does not slide).
        parts = self._parts(mode)
        shard = self.shards.parts.index(self.shards.of(user_id))
        point = await self.fanout.point(parts, "desc", user_id, shard)
        if point is None:
            raise absent(user_id, mode)
        above = min(side, point.position)
        run = await self.fanout.window(parts, "desc", point, above + 1 + side, above)
        flat, names = run.flat()
        return ranked(flat, run.first_rank, run.position, names)

    async def members(self, names: Sequence[str]) -> list[int]:
        """How many players each of the boards ``names`` holds (over every shard), in one round
        trip."""
        parts = self.shards.parts
        with translate_redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys in parts:
                    pipe.exists(keys.marker)
                    for name in names:
                        pipe.zcard(keys.board(name))
                replies = await pipe.execute()
        step = len(names) + 1
        self._check_ready(all(replies[i * step] for i in range(len(parts))))
        return [
            sum(int(replies[i * step + 1 + n]) for i in range(len(parts)))
            for n in range(len(names))
        ]

    async def ready(self) -> bool:
        """Whether the namespace's boards are loaded (the marker of every shard exists)."""
        with translate_redis_errors():
            return all([await self.redis.exists(keys.marker) for keys in self.shards.parts])

    async def backlog(self) -> int:
        """Stream entries not yet deleted: accepted submissions not yet known to be persisted
        (in every shard's stream)."""
        with translate_redis_errors():
            return sum([int(await self.redis.xlen(keys.events)) for keys in self.shards.parts])

    def _check_ready(self, ready: int) -> None:
        if not ready:
            raise NotReady(
                "the leaderboard is being rebuilt from the database; retry shortly",
                self.settings.retry_after_s,
            )


def absent(user_id: int, mode: str | None) -> NotFound:
    """The 404 of a player with no score, in the words of the original API (a game mode, or
    the leaderboard): not the name of the board's key."""
    where = "the leaderboard" if mode is None else f"game mode {mode}"
    return NotFound(f"player {user_id} has no score in {where}")
