"""The live ranking: submit, rank, top and around, each one Lua call on the namespace's sorted sets.

Every operation here is O(log n) in the size of the board (plus the length of the list asked for):
nothing scans a board on the request path.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from redis.asyncio import Redis

from ranker import boards
from ranker.connections import translate_redis_errors
from ranker.errors import BacklogFull, NotFound, NotReady, SessionConflict
from ranker.keys import Keys
from ranker.models import Entry, Standing, SubmitRequest, SubmitResponse
from ranker.scripts import Scripts
from ranker.settings import Settings


def session_says(user_id: int, score: int, game_mode: str) -> str:
    """What a session was accepted with, as its idempotency key keeps it (``submit.lua``): a
    retry must say the same, or it is another session reusing the id."""
    return f"{user_id} {score} {game_mode}"


def to_int(raw: bytes | str | int | float) -> int:
    """A sorted-set score as an int (Redis replies with the text of a double)."""
    if isinstance(raw, int):
        return raw
    try:
        return int(raw)
    except ValueError:
        return int(float(raw))


def ranked(flat: Sequence[bytes], first_rank: int = 1, first_position: int = 0) -> list[Entry]:
    """Entries from a flat ``member, score, ...`` reply ordered best first.

    The first member has rank ``first_rank`` and 0-based board position ``first_position``
    (they differ when it ties with members above the slice). Each next member shares the
    previous rank on a tie and otherwise ranks by its position: standard competition ranking,
    like SQL ``RANK()``.
    """
    entries: list[Entry] = []
    rank = first_rank
    previous: int | None = None
    for offset in range(0, len(flat), 2):
        total = to_int(flat[offset + 1])
        if previous is not None and total != previous:
            rank = first_position + offset // 2 + 1
        entries.append(Entry(rank=rank, user_id=int(flat[offset]), total_score=total))
        previous = total
    return entries


class Ranking:
    """The operations of one namespace on one Redis client."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.scripts = Scripts.register(redis)
        self._ttl_ms = str(settings.idempotency_ttl_s * 1000)
        self._max_backlog = str(settings.max_backlog)

    async def submit(self, request: SubmitRequest) -> SubmitResponse:
        """Count one session on the global board and its mode's board, once per session id.

        Raises ``BacklogFull`` when the stream holds ``max_backlog`` unpersisted entries. While
        the namespace is rebuilt the submission is accepted but total and rank are ``None``.
        """
        mode = request.game_mode or self.settings.default_game_mode
        session_id = request.session_id or uuid.uuid4().hex
        counted_on = boards.of_session(mode)
        keys = [
            self.keys.seen(session_id),
            self.keys.events,
            self.keys.rebuild_flag,
            self.keys.marker,
            *(self.keys.board(board) for board in counted_on),
            *(self.keys.delta(board) for board in counted_on),
        ]
        args: list[str | int] = [
            request.user_id,
            request.score,
            session_id,
            str(uuid.uuid4()),
            mode,
            self._ttl_ms,
            time.time_ns() // 1_000_000,
            self._max_backlog,
            session_says(request.user_id, request.score, mode),
        ]
        with translate_redis_errors():
            status, total, rank, ready, event_id = await self.scripts.submit(keys, args)
        if status == b"conflict":
            raise SessionConflict(
                f"session {session_id} was accepted with another player, score or game mode; "
                "a retry must repeat the session exactly, and a new session needs a new id"
            )
        if status == b"full":
            raise BacklogFull(
                "too many submissions wait to be persisted; retry later",
                self.settings.retry_after_s,
            )
        loaded = bool(ready) and total is not None
        return SubmitResponse(
            user_id=request.user_id,
            total_score=to_int(total) if loaded else None,
            rank=int(rank) if loaded else None,
            session_id=session_id,
            duplicate=status == b"dup",
            event_id=event_id.decode(),
        )

    async def rank(self, user_id: int, mode: str | None = None) -> Standing:
        """A player's total and rank; ``NotFound`` when the player has no score on the board."""
        keys = [self.keys.marker, self.keys.board(boards.of_mode(mode))]
        with translate_redis_errors():
            ready, total, rank = await self.scripts.rank(keys, [user_id])
        self._check_ready(ready)
        if total is None:
            raise NotFound(f"player {user_id} has no score on board {boards.of_mode(mode)}")
        return Standing(user_id=user_id, total_score=to_int(total), rank=int(rank))

    async def top(self, limit: int, mode: str | None = None) -> list[Entry]:
        """The ``limit`` best players of a board, best first (ties share a rank)."""
        keys = [self.keys.marker, self.keys.board(boards.of_mode(mode))]
        with translate_redis_errors():
            ready, flat = await self.scripts.top(keys, [limit])
        self._check_ready(ready)
        return ranked(flat)

    async def around(self, user_id: int, side: int, mode: str | None = None) -> list[Entry]:
        """The player and up to ``side`` players above and below; ``NotFound`` if absent."""
        keys = [self.keys.marker, self.keys.board(boards.of_mode(mode))]
        with translate_redis_errors():
            ready, first_rank, first_position, flat = await self.scripts.around(
                keys, [user_id, side]
            )
        self._check_ready(ready)
        if first_rank is None:
            raise NotFound(f"player {user_id} has no score on board {boards.of_mode(mode)}")
        return ranked(flat, int(first_rank), int(first_position))

    async def ready(self) -> bool:
        """Whether the namespace's boards are loaded (its marker exists)."""
        with translate_redis_errors():
            return bool(await self.redis.exists(self.keys.marker))

    async def backlog(self) -> int:
        """Stream entries not yet deleted: accepted submissions not yet known to be persisted."""
        with translate_redis_errors():
            return int(await self.redis.xlen(self.keys.events))

    def _check_ready(self, ready: int) -> None:
        if not ready:
            raise NotReady(
                "the leaderboard is being rebuilt from the database; retry shortly",
                self.settings.retry_after_s,
            )
