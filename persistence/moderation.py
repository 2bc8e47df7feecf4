"""The PostgreSQL side of players and moderation (the Redis side is ``ranker.moderation``).

The worker persists every admin action in stream order, in the batch's transaction
(``persist_action``): its audit row first, keyed by its stream entry, so an action committed
once is never applied again; then its effect on the session log (a name, a ban and the sessions
it voids, an unban and the sessions it restores, one session voided); then the player's scores
on every board recomputed from the log (``recompute_player``). Sessions that another worker
commits later, out of order, follow the same rules (``persist_staged_sessions``).

``Moderator`` completes unbans and voids (it waits for PostgreSQL to hold the action, then
writes the recomputed scores back to Redis) and reads what PostgreSQL holds of players for the
API and the CLI.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from uuid import UUID

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from persistence import players, repository
from persistence.database import make_pool, translate_db_errors
from persistence.definitions import logged_boards
from persistence.players import Action
from persistence.stream import Fields, accepted_seq, parse_definition
from ranker.catalog import Catalog
from ranker.connections import Client, background_redis
from ranker.errors import RankerError, Unavailable
from ranker.moderation import (
    AuditEntry,
    Moderation,
    Pending,
    PlayerRecord,
    StoredSession,
    VoidedSession,
)
from ranker.placements import op_of
from ranker.settings import Settings
from ranker.shards import shards_of

log = logging.getLogger("ranker.moderation")
#: How often a completion looks whether PostgreSQL holds the action yet.
POLL_S = 0.02
#: The audit log's action of each state a definition change leaves a board in.
_BOARD_ACTIONS = {
    "live": "board_put",
    "filling": "board_put",
    "deleted": "board_delete",
    "purged": "board_purge",
}


def _ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


async def persist_action(
    conn: AsyncConnection, game_modes: Sequence[str], entry_id: bytes, fields: Fields
) -> None:
    """Persist one stream entry that is not a session, in the caller's transaction."""
    kind = fields[b"k"]
    if kind == b"board":
        stored, position_seq, changed_seq = parse_definition(entry_id, fields)
        await repository.persist_definition(conn, stored, position_seq, changed_seq)
        actor = fields.get(b"a", b"").decode()
        if actor:  # an admin's change (a backfill's end is not)
            change = {"state": stored.state, "definition": json.loads(stored.definition)}
            what = _BOARD_ACTIONS[stored.state]
            target = f"board:{stored.id}"
            await players.insert_audit_entry(
                conn,
                Action(changed_seq, _ms(entry_id), actor, what, target, None, change),
            )
        return
    user_id = int(fields[b"u"])
    if kind == b"name":
        await players.upsert_player_name(
            conn, user_id, fields[b"n"].decode(), accepted_seq(entry_id)
        )
        return
    detail: dict[str, object] = {"user_id": user_id}
    target = f"player:{user_id}"
    if kind == b"void":
        detail["event_id"] = fields[b"e"].decode()
        target = f"session:{fields[b's'].decode()}"
    action = Action(
        seq=accepted_seq(entry_id),
        at_ms=int(fields[b"t"]),
        key_id=fields[b"a"].decode(),
        action=kind.decode(),
        target=target,
        reason=fields[b"r"].decode() or None,
        detail=detail,
    )
    if not await players.insert_audit_entry(conn, action):
        return  # committed before (a redelivery): applied then
    if kind == b"ban":
        await players.insert_ban(conn, user_id, action)
    elif kind == b"unban":
        await players.delete_ban(conn, user_id)
    else:
        await players.void_session(conn, UUID(fields[b"e"].decode()), action)
    await recompute_player(conn, game_modes, user_id)


async def recompute_player(conn: AsyncConnection, game_modes: Sequence[str], user_id: int) -> None:
    """Make the player's rows of every board that holds periods what the session log says:
    the built-in boards, the defined ones (the sessions after their position unless they were
    backfilled; a deleted board's, those before its deletion)."""
    for logged in await logged_boards(conn, game_modes):
        board = logged.board
        await players.recompute_player_scores(
            conn,
            user_id,
            board.id,
            op=op_of(board),
            reset=board.reset,
            timezone=board.timezone,
            game_mode=board.game_mode,
            after_seq=logged.after_seq,
            before_seq=logged.before_seq,
        )


class Moderator:
    """Completes unbans and voids and reads players from PostgreSQL, for the API (a background
    service of its process: it opens its pool and Redis client while the app runs) and the CLI
    (``open`` and ``close`` around its use)."""

    name = "moderation"

    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool | None = None,
        redis: Client | None = None,
    ) -> None:
        self.settings = settings
        self._pool = pool or make_pool(settings, max_size=2)
        self._owns_pool = pool is None
        self._redis = redis
        self._owns_redis = redis is None

    async def run(self, stop: asyncio.Event) -> None:
        await self.open()
        try:
            await stop.wait()
        finally:
            await self.close()

    async def open(self) -> None:
        if self._owns_redis:
            self._redis = background_redis(self.settings)
        if self._owns_pool:
            await self._pool.open(wait=False)

    async def close(self) -> None:
        if self._owns_pool:
            await self._pool.close()
        if self._owns_redis and self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def problem(self) -> str | None:
        return None

    @property
    def redis(self) -> Client:
        if self._redis is None:
            raise Unavailable("moderation is not available while the service starts or stops")
        return self._redis

    async def wait_persisted(
        self, entry_id: str, timeout_s: float, user_id: int | None = None
    ) -> bool:
        """Whether PostgreSQL holds every stream entry up to ``entry_id`` within ``timeout_s``:
        of the stream of ``user_id``'s board shard (by default the namespace's home)."""
        catalog = Catalog(self.redis, self.settings)
        stream = None
        if user_id is not None:
            stream = shards_of(self.settings.namespace, self.settings.board_shards).of(user_id)
        deadline = time.monotonic() + timeout_s
        while not await catalog.persisted(entry_id, stream):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True

    async def complete(self, pending: Pending, timeout_s: float) -> bool:
        """Write the player's scores recomputed in PostgreSQL back to Redis once it holds the
        action, and release the player; whether that happened (or a later action overtook
        this one, which completes both) within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        if not await self.wait_persisted(pending.entry_id, timeout_s, pending.user_id):
            return False
        moderation = Moderation(self.redis, self.settings)
        while True:
            snapshot = await moderation.catalog.reload()
            placements = Moderation.placements(snapshot)
            wanted = [(p.board, p.period) for p in placements]
            with translate_db_errors():
                async with self._pool.connection() as conn:
                    found = await players.select_scores_of_player(conn, pending.user_id, wanted)
            scores = {
                p.slot: found[(p.board, p.period)]
                for p in placements
                if (p.board, p.period) in found
            }
            done = await moderation.finish(pending, placements, scores)
            if done >= 0:
                return True
            if time.monotonic() >= deadline:  # a rebuild runs: its end is waited for
                return False
            await asyncio.sleep(POLL_S * 5)

    async def session(self, session_id: str) -> StoredSession | None:
        """The newest stored session of that id."""
        with translate_db_errors():
            async with self._pool.connection() as conn:
                return await players.select_session(conn, session_id)

    async def record(self, user_id: int, limit: int) -> tuple[PlayerRecord, list[VoidedSession]]:
        """A player's session counts and ban, and their latest ``limit`` voided sessions."""
        with translate_db_errors():
            async with self._pool.connection() as conn:
                record = await players.select_player_record(conn, user_id)
                return record, await players.select_voided_sessions(conn, user_id, limit)

    async def audit(self, before: int | None, limit: int) -> list[AuditEntry]:
        """Admin actions newest first, older than ``before`` when given."""
        with translate_db_errors():
            async with self._pool.connection() as conn:
                return await players.select_audit_log(conn, before, limit)


async def complete_pending(settings: Settings, redis: Client, pool: AsyncConnectionPool) -> int:
    """Complete the unbans and voids whose caller did not (it timed out or died): the
    watchdog's round. Returns how many were completed."""
    moderator = Moderator(settings, pool, redis)
    done = 0
    for pending in await Moderation(redis, settings).pending():
        try:
            done += await moderator.complete(pending, timeout_s=0)
        except RankerError as exc:
            log.warning("could not complete moderation of player %d: %s", pending.user_id, exc)
    return done
