"""Players in Redis: their display names, and the Redis side of moderation.

A ban takes effect here at once and whole: one Lua call removes the player from every period
of every board Redis holds, drops the archived copies, refuses their submissions from then on
and records the ban in the events stream, after every session accepted before it. The worker
persists it in stream order (``persistence.moderation``): their sessions are voided there,
those it still held included.

An unban or a void changes scores that only the session log can give back (a best board falls
back to the best remaining session). Its entry goes in the stream, and the player is *held*
meanwhile: their submissions answer 503 with Retry-After, so nothing of theirs is in flight.
Once PostgreSQL holds every entry up to the action's, their scores recomputed there are
written back over every period Redis holds, in one call that also releases them
(``finish``). The states (``Keys.moderation``, docs/design.md "Players and moderation"):

======================  ===================================================================
state                   meaning
======================  ===================================================================
(none)                  counted as usual
``b``                   banned: on no board, submissions 403
``u <token> <entry>``   unbanned at ``entry``, not yet recomputed: still on no board
``v <token> <entry>``   a session voided at ``entry``, not yet recomputed
======================  ===================================================================
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from ranker.catalog import Catalog, Snapshot
from ranker.connections import Client, translate_redis_errors
from ranker.errors import Conflict, NotFound, NotReady, RankerError
from ranker.keys import Keys
from ranker.models import FieldError
from ranker.periods import retention_closes
from ranker.placements import Placement, live_placements
from ranker.scripts import Scripts
from ranker.settings import Settings
from ranker.shards import home, shards_of

#: How often a change is tried again when the boards or the archives changed under it.
ATTEMPTS = 5
#: The moderation state of a banned player.
BANNED = "b"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A row of the audit log, as read back."""

    seq: int
    at: datetime
    key_id: str
    action: str
    target: str
    reason: str | None
    detail: dict[str, object] | None


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session of the log, with its voiding if any."""

    event_id: UUID
    user_id: int
    score: int
    game_mode: str
    created_at: datetime
    voided_at: datetime | None
    voided_by: str | None
    void_reason: str | None
    voided_by_ban: bool


@dataclass(frozen=True, slots=True)
class VoidedSession:
    """One voided session of a player (what an admin sees)."""

    session_id: str
    event_id: UUID
    score: int
    game_mode: str
    created_at: datetime
    voided_at: datetime
    voided_by: str
    void_reason: str | None
    voided_by_ban: bool


@dataclass(frozen=True, slots=True)
class PlayerRecord:
    """What PostgreSQL holds of a player beyond their scores."""

    sessions: int
    voided: int
    banned_at: datetime | None
    banned_by: str | None
    ban_reason: str | None


@dataclass(frozen=True, slots=True)
class Pending:
    """A moderation state to complete: the player's, as Redis holds it."""

    user_id: int
    state: str

    @property
    def entry_id(self) -> str:
        """The stream entry PostgreSQL must hold before the scores are read."""
        return self.state.rsplit(" ", 1)[1]


def is_pending(state: bytes | str | None) -> bool:
    """Whether a moderation state waits for its completion (an unban or a void)."""
    text = state.decode() if isinstance(state, bytes) else (state or "")
    return text[:1] in ("u", "v")


class PlayerRecords(Protocol):
    """What PostgreSQL holds of players, and the completion of moderation actions
    (``persistence.moderation.Moderator``: the API is handed one by ``ranker.cli``)."""

    async def wait_persisted(
        self, entry_id: str, timeout_s: float, user_id: int | None = None
    ) -> bool:
        """Whether PostgreSQL holds every stream entry up to ``entry_id`` within ``timeout_s``."""
        ...

    async def complete(self, pending: Pending, timeout_s: float) -> bool:
        """Apply an unban's or a void's recomputed scores to Redis; whether done in time."""
        ...

    async def session(self, session_id: str) -> StoredSession | None:
        """The newest stored session of that id."""
        ...

    async def record(self, user_id: int, limit: int) -> tuple[PlayerRecord, list[VoidedSession]]:
        """A player's session counts and ban, and their latest voided sessions."""
        ...

    async def audit(self, before: int | None, limit: int) -> list[AuditEntry]:
        """Admin actions newest first, older than ``before`` when given."""
        ...


class Moderation:
    """Names and moderation of one namespace on one Redis client."""

    def __init__(
        self,
        redis: Client,
        settings: Settings,
        catalog: Catalog | None = None,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = home(settings.namespace, settings.board_shards)
        #: A player's names and moderation state are in the player's board shard, beside the
        #: player's entries and sessions (``ranker.shards``).
        self.shards = shards_of(settings.namespace, settings.board_shards)
        self.scripts = Scripts.register(redis)
        self.catalog = catalog or Catalog(redis, settings)
        self.wall_ms = wall_ms

    async def set_name(self, user_id: int, username: str) -> str:
        """Set a player's display name (already normalised); returns its stream entry."""
        own = self.shards.of(user_id)
        keys = [
            own.names,
            own.names_delta,
            own.rebuild_flag,
            own.events,
            own.pages_version,
        ]
        with translate_redis_errors():
            entry: bytes = await self.scripts.set_name(keys, [user_id, username])
        return entry.decode()

    async def state(self, user_id: int) -> str | None:
        """The player's moderation state (``None``: none)."""
        own = self.shards.of(user_id)
        with translate_redis_errors():
            raw: Any = await self.redis.hget(own.moderation, str(user_id))
        return None if raw is None else raw.decode()

    async def pending(self) -> list[Pending]:
        """Every unban and void waiting for its completion (on every board shard)."""
        found = []
        for keys in self.shards.parts:
            with translate_redis_errors():
                states: Any = await self.redis.hgetall(keys.moderation)
            found += [Pending(int(u), raw.decode()) for u, raw in states.items() if is_pending(raw)]
        return found

    async def ban(self, user_id: int, key_id: str, reason: str) -> str | None:
        """Ban a player: off every board from now on; returns the ban's stream entry, or
        ``None`` when the player was banned already (nothing changes)."""
        own = self.shards.of(user_id)
        for _ in range(ATTEMPTS):
            snapshot = await self.catalog.reload()
            archives = await self._archives(own)
            keys = [
                own.moderation,
                own.moderation_version,
                own.archives,
                own.events,
                own.definitions_version,
                own.marker,
                own.pages_version,
                *archives,
                *(own.board(p.slot) for p in self.placements(snapshot)),
            ]
            args: list[str | int] = [
                user_id,
                snapshot.version or "",
                len(archives),
                key_id,
                reason,
                self.wall_ms(),
            ]
            with translate_redis_errors():
                status, entry = await self.scripts.ban(keys, args)
            if status == b"ok":
                return str(entry.decode())
            if status == b"banned":
                return None
            self._check_loaded(status)
        raise RankerError(f"the boards kept changing while player {user_id} was banned: retry")

    async def unban(self, user_id: int, key_id: str, reason: str) -> Pending | None:
        """Lift a ban; returns the state to complete (an unban already under way: its own), or
        ``None`` when the player is not banned."""
        own = self.shards.of(user_id)
        keys = [own.moderation, own.events, own.marker]
        args: list[str | int] = [user_id, uuid.uuid4().hex, key_id, reason, self.wall_ms()]
        with translate_redis_errors():
            status, state = await self.scripts.unban(keys, args)
        self._check_loaded(status)
        if status == b"not_banned":
            return None
        return Pending(user_id, state.decode())

    async def void(
        self, user_id: int, event_id: str, session_id: str, key_id: str, reason: str
    ) -> tuple[str, Pending | None]:
        """Void one session of a player; returns its stream entry and the state to complete
        (``None`` for a banned player, who is on no board)."""
        own = self.shards.of(user_id)
        keys = [own.moderation, own.events, own.marker]
        args: list[str | int] = [
            user_id,
            event_id,
            session_id,
            uuid.uuid4().hex,
            key_id,
            reason,
            self.wall_ms(),
        ]
        with translate_redis_errors():
            status, entry, state = await self.scripts.void(keys, args)
        self._check_loaded(status)
        return entry.decode(), None if not state else Pending(user_id, state.decode())

    @staticmethod
    def placements(snapshot: Snapshot, now: datetime | None = None) -> list[Placement]:
        """Every period Redis may hold live of every board of ``snapshot`` that still holds
        periods (a deleted board's too: they stay readable)."""
        boards = [r.definition for r in snapshot.records.values() if r.state != "purged"]
        return live_placements(boards, now or datetime.now(UTC))

    async def finish(
        self, pending: Pending, placements: Sequence[Placement], scores: Mapping[str, int]
    ) -> int:
        """Write ``scores`` (by slot; a slot missing: the player leaves it) over the player's
        periods and release them, unless another action overtook ``pending``. Returns 1 when
        done, 0 when overtaken, -1 while a rebuild runs (retry after it)."""
        own = self.shards.of(pending.user_id)
        for _ in range(ATTEMPTS):
            archives = await self._archives(own)
            keys = [
                own.moderation,
                own.moderation_version,
                own.archives,
                own.rebuild_flag,
                own.pages_version,
                *archives,
                *(own.board(p.slot) for p in placements),
            ]
            args: list[str | int] = [pending.user_id, pending.state, len(archives)]
            for p in placements:
                score = scores.get(p.slot)
                args += ["" if score is None else score, p.expires_at_ms]
            with translate_redis_errors():
                done = int(await self.scripts.moderation_finish(keys, args))
            if done != -2:
                return done
        raise RankerError("the archived periods kept changing: retry")

    async def _archives(self, own: Keys) -> list[str]:
        with translate_redis_errors():
            members: Any = await self.redis.smembers(own.archives)
        return sorted(member.decode() for member in members)

    def _check_loaded(self, status: bytes) -> None:
        if status == b"unloaded":
            raise NotReady(
                "the leaderboard lost its boards and waits for their rebuild; retry shortly",
                self.settings.retry_after_s,
            )


# -- the actions, as the admin routes and the CLI take them -------------------------------------


async def ban_player(
    moderation: Moderation, records: PlayerRecords, user_id: int, actor: str, reason: str
) -> tuple[bool, bool]:
    """Ban a player; ``(changed, done)``: not changed when already banned, not done when
    PostgreSQL did not hold the ban within ``moderation_wait_s`` (it gets there by itself)."""
    entry = await moderation.ban(user_id, actor, reason)
    if entry is None:
        return False, True
    return True, await records.wait_persisted(entry, moderation.settings.moderation_wait_s, user_id)


async def unban_player(
    moderation: Moderation, records: PlayerRecords, user_id: int, actor: str, reason: str
) -> bool:
    """Lift a ban and recompute the player's boards; whether that was done in time (else the
    watchdog completes it). ``NotFound`` when the player is not banned."""
    pending = await moderation.unban(user_id, actor, reason)
    if pending is None:
        raise NotFound(f"player {user_id} is not banned")
    return await records.complete(pending, moderation.settings.moderation_wait_s)


async def void_session(
    moderation: Moderation,
    records: PlayerRecords,
    session_id: str,
    stored: StoredSession,
    actor: str,
    reason: str,
) -> bool | None:
    """Void a stored session and recompute its player's boards; whether that was done in time,
    ``None`` when it was voided alone before (nothing changes: the same answer again).
    ``Conflict`` for a session of a month past ``RANKER_SESSIONS_RETENTION_MONTHS``: its
    partition is dropped once every void accepted before the month closed is persisted, and
    its scores are then carried whole, so none can be taken out alone (a ban still can)."""
    if stored.voided_at is not None and not stored.voided_by_ban:
        return None
    months = moderation.settings.sessions_retention_months
    now = datetime.fromtimestamp(moderation.wall_ms() / 1000, UTC)
    if months is not None and now >= retention_closes(stored.created_at, months):
        raise Conflict(
            f"session {session_id!r} was played in {stored.created_at.astimezone(UTC):%Y-%m}, "
            f"past the retention of {months} months (RANKER_SESSIONS_RETENTION_MONTHS): it can no "
            "longer be voided alone; a ban still removes every score of its player",
            [FieldError(field="session_id", message="a session past the retention")],
        )
    entry, pending = await moderation.void(
        stored.user_id, str(stored.event_id), session_id, actor, reason
    )
    wait_s = moderation.settings.moderation_wait_s
    if pending is None:  # voided by a ban still in force: only the log changes
        return await records.wait_persisted(entry, wait_s, stored.user_id)
    return await records.complete(pending, wait_s)
