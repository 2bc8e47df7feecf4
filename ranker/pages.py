"""Reads of one period of a board, of either order: pages, a player, the players around them,
a friends list. Each is one Lua call (one round trip), O(log n + page length) in Redis.

Board order is the score order of the board (``desc``: highest first; ``asc``: lowest first),
ties in Redis's own member order (ZREVRANGE for desc, ZRANGE for asc), which does not change
while the board does not: paging by offset is stable. Ranks are competition ranks (ties share
one, like SQL ``RANK()``).

A page's cursor is opaque to clients: base64url (no padding) of ``<board>|<period>|<offset>``
followed by a 4-byte BLAKE2b check of that text. The check is unkeyed: it catches a cursor
mangled in transit (truncated, edited), not a forged one, and a forged offset costs no more than
any other (a page at most, O(log n + length)). A cursor of another board or period is told apart
by the ids it holds, and refused.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Sequence

from ranker.coalesce import Coalescer
from ranker.connections import Client, translate_redis_errors
from ranker.definitions import Order
from ranker.entries import name_of, ranked, to_int
from ranker.errors import InvalidInput, NotFound, NotReady
from ranker.fanout import Fanout, Part, Run
from ranker.keys import Keys
from ranker.models import (
    BoardEntry,
    BoardPage,
    BoardPlayer,
    FieldError,
    LookupResponse,
    page_json,
)
from ranker.page_cache import PageCache
from ranker.scripts import Scripts
from ranker.settings import Settings
from ranker.shards import home, shard_of

#: Where a board period is: its sorted set's key in the namespace (one shard), or one part per
#: shard (``ranker.fanout``; a list of one is read as the key alone).
Where = str | Sequence[Part]

_CHECK_BYTES = 4
#: Distinct from every other BLAKE2b use of ranker, so a digest of one kind never checks another.
_PERSON = b"ranker-cursor"
#: Longer than any cursor made here (ids of 48 characters, up to 16 offsets of up to 19 digits):
#: a longer one is refused before any decoding work.
CURSOR_CHARS_MAX = 600
#: The base64url alphabet only: the decoder would also take "+" and "/" and skip other bytes.
_CURSOR = re.compile(rf"[A-Za-z0-9_-]{{1,{CURSOR_CHARS_MAX}}}")
_OFFSET_DIGITS_MAX = 19


def _check(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECK_BYTES, person=_PERSON).digest()


def encode_cursor(board: str, period: str, offset: int | Sequence[int]) -> str:
    """The cursor of the page of ``board`` in ``period`` that starts at 0-based ``offset`` (on a
    sharded board, one offset per shard: ``ranker.fanout``)."""
    where = str(offset) if isinstance(offset, int) else ".".join(str(o) for o in offset)
    payload = f"{board}|{period}|{where}".encode()
    return base64.urlsafe_b64encode(payload + _check(payload)).rstrip(b"=").decode()


def _bad_cursor(detail: str, message: str) -> InvalidInput:
    return InvalidInput(detail, [FieldError(field="cursor", message=message)], status=400)


_MALFORMED = (
    "the cursor is not one this service returned; start again without it",
    "not a cursor returned by this board's pages",
)


def decode_cursor(cursor: str, board: str, period: str) -> int:
    """The offset a cursor of ``encode_cursor`` holds.

    A 400 ``InvalidInput`` naming the field ``cursor`` when it is not a cursor this service
    made (malformed, truncated, altered) or was made for another board or period.
    """
    (offset,) = decode_offsets(cursor, board, period, 1)
    return offset


def decode_offsets(cursor: str, board: str, period: str, shards: int) -> list[int]:
    """The ``shards`` offsets a cursor of ``encode_cursor`` holds (one on a board of one
    shard); the errors of ``decode_cursor``, and a cursor of another shard count is refused."""
    malformed = _bad_cursor(*_MALFORMED)
    if not _CURSOR.fullmatch(cursor):
        raise malformed
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except binascii.Error:  # a length no base64 text has
        raise malformed from None
    payload, check = raw[:-_CHECK_BYTES], raw[-_CHECK_BYTES:]
    if len(raw) <= _CHECK_BYTES or check != _check(payload):
        raise malformed
    parts = payload.decode(errors="replace").split("|")
    if len(parts) != 3:
        raise malformed
    made_for_board, made_for_period, where = parts
    if (made_for_board, made_for_period) != (board, period):
        raise _bad_cursor(
            f"the cursor was made for another board or period than board {board} in period "
            f"{period}; start again without it",
            "made for another board or period",
        )
    offsets = where.split(".")
    # Digits only, and few of them: int() would also take "+1", " 1" or "1_000".
    for offset in offsets:
        if not (offset.isascii() and offset.isdigit() and len(offset) <= _OFFSET_DIGITS_MAX):
            raise malformed
    if len(offsets) != shards:  # made before RANKER_BOARD_SHARDS changed
        raise malformed
    return [int(offset) for offset in offsets]


def _board_entries(
    flat: Sequence[bytes], first_rank: int, first_position: int, names: Sequence[bytes | None]
) -> list[BoardEntry]:
    return [
        BoardEntry(rank=e.rank, user_id=e.user_id, score=e.total_score, username=e.username)
        for e in ranked(flat, first_rank, first_position, names)
    ]


def _positive(name: str, value: int) -> None:
    # The scripts refuse these too; failing here spares the round trip of a caller's bug.
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")


class Pages:
    """The reads of board periods of one namespace on one Redis client.

    Every method takes where the period is (``Where``: its sorted set's ``key``, resolved by the
    caller, or the parts of a sharded board), and the ``board`` and ``period`` ids, which only
    name the period in replies, cursors and errors (never the key: it is internal). Each raises
    ``NotReady`` while the namespace (or a shard) is not loaded (a rebuild is due or under way).
    """

    def __init__(self, redis: Client, settings: Settings, reads: Coalescer | None = None) -> None:
        """``reads``: the batcher of read scripts (by default this client's own)."""
        self.settings = settings
        self.keys = home(settings.namespace, settings.board_shards)
        self.scripts = Scripts.register(redis)
        self.reads = reads or Coalescer(redis, settings.coalesce_reads, settings.read_from_replicas)
        self.top_cache = PageCache(settings.top_cache)
        self.fanout = Fanout(self.scripts, self.reads, settings.retry_after_s)

    def _single(self, where: Where) -> tuple[Keys, str]:
        """The keys and sorted set of a period on one shard."""
        if isinstance(where, str):
            return self.keys, where
        return where[0].keys, where[0].key

    async def top(
        self, where: Where, board: str, period: str, order: Order, limit: int, cursor: str | None
    ) -> BoardPage:
        """Up to ``limit`` entries in board order, from the start or from where ``cursor`` (a
        previous page's ``next_cursor``) left off.

        ``next_cursor`` is None on the last page. Walking every page of an unchanged board
        yields each member once; if the board changes between pages, members may move across
        the page boundary (seen twice or not at all), as with any offset paging. A cursor past
        the end gives an empty last page. 400 (``InvalidInput``, field ``cursor``) for a cursor
        that is malformed or made for another board or period.
        """
        _positive("limit", limit)
        parts = _sharded(where)
        if parts is not None:
            return await self._sharded_top(parts, board, period, order, limit, cursor)
        single = self._single(where)
        offset = 0 if cursor is None else decode_cursor(cursor, board, period)
        _, page = await self._top(single, board, period, order, offset, limit, b"")
        assert page is not None  # a read of no copy is answered with the page
        return page

    async def top_body(
        self, where: Where, board: str, period: str, order: Order, limit: int, cursor: str | None
    ) -> bytes:
        """``top``'s page as the JSON ``GET /api/boards/{board}/top`` answers, this process's
        copy when Redis says it is current (``ranker.page_cache``; one shard only: a sharded
        page is read each time); the same errors as ``top``."""
        _positive("limit", limit)
        parts = _sharded(where)
        if parts is not None:
            return page_json(await self._sharded_top(parts, board, period, order, limit, cursor))
        single = self._single(where)
        offset = 0 if cursor is None else decode_cursor(cursor, board, period)
        read = functools.partial(self._top, single, board, period, order, offset, limit)
        return await self.top_cache.body(
            (single[1], order, offset, limit, board, period), read, page_json
        )

    async def _top(
        self,
        single: tuple[Keys, str],
        board: str,
        period: str,
        order: Order,
        offset: int,
        limit: int,
        version: bytes,
    ) -> tuple[bytes, BoardPage | None]:
        """The pages version and the page, or None when ``version`` is current (board_top.lua)."""
        keys, key = single
        with translate_redis_errors():
            ready, current, *page = await self.reads.run(
                self.scripts.board_top,
                [keys.marker, key, keys.names, keys.pages_version],
                [order, offset, limit, version],
            )
        self._check_ready(ready)
        if not page:
            return current, None
        members, first_rank, flat, names = page
        entries = _board_entries(flat, int(first_rank), offset, names)
        after = offset + len(entries)
        more = bool(entries) and after < int(members)
        return current, BoardPage(
            board=board,
            period=period,
            members=int(members),
            entries=entries,
            next_cursor=encode_cursor(board, period, after) if more else None,
        )

    async def _sharded_top(
        self,
        parts: Sequence[Part],
        board: str,
        period: str,
        order: Order,
        limit: int,
        cursor: str | None,
    ) -> BoardPage:
        offsets = [0] * len(parts)
        if cursor is not None:
            offsets = decode_offsets(cursor, board, period, len(parts))
        run = await self.fanout.top(parts, order, offsets, limit)
        more = bool(run.entries) and sum(run.offsets) < run.members
        return BoardPage(
            board=board,
            period=period,
            members=run.members,
            entries=_run_entries(run),
            next_cursor=encode_cursor(board, period, run.offsets) if more else None,
        )

    async def player(
        self, where: Where, board: str, period: str, order: Order, user_id: int
    ) -> BoardPlayer:
        """A player's score, rank and percentile, ``100 * (members - rank) / members`` to two
        decimals (0 for the last or only player); ``NotFound`` when absent."""
        parts = _sharded(where)
        if parts is not None:
            point = await self.fanout.point(parts, order, user_id, self._shard(parts, user_id))
            if point is None:
                raise _absent(user_id, board, period)
            members, score, rank, name = point.members, point.score, point.rank, point.name
        else:
            keys, key = self._single(where)
            with translate_redis_errors():
                ready, members, score, rank, name = await self.reads.run(
                    self.scripts.board_player, [keys.marker, key, keys.names], [order, user_id]
                )
            self._check_ready(ready)
            if score is None:
                raise _absent(user_id, board, period)
        count, place = int(members), int(rank)
        return BoardPlayer(
            user_id=user_id,
            score=to_int(score),
            rank=place,
            members=count,
            percentile=round(100 * (count - place) / count, 2),
            period=period,
            username=name_of(name),
        )

    async def around(
        self, where: Where, board: str, period: str, order: Order, user_id: int, limit: int
    ) -> BoardPage:
        """A window of ``limit`` entries in board order that contains the player.

        Away from the ends of the board the window holds ``(limit - 1) // 2`` players above
        the player and ``limit // 2`` below (an even ``limit`` puts the player just above the
        middle); near an end it slides, so it is full whenever the board has ``limit`` players.
        ``next_cursor`` is None. ``NotFound`` when the player is not on the board.
        """
        _positive("limit", limit)
        parts = _sharded(where)
        if parts is not None:
            point = await self.fanout.point(parts, order, user_id, self._shard(parts, user_id))
            if point is None:
                raise _absent(user_id, board, period)
            run = await self.fanout.window(parts, order, point, limit)
            return BoardPage(
                board=board, period=period, members=run.members, entries=_run_entries(run)
            )
        keys, key = self._single(where)
        with translate_redis_errors():
            ready, members, found_, first_rank, start, flat, names = await self.reads.run(
                self.scripts.board_around, [keys.marker, key, keys.names], [order, user_id, limit]
            )
        self._check_ready(ready)
        if not found_:
            raise _absent(user_id, board, period)
        return BoardPage(
            board=board,
            period=period,
            members=int(members),
            entries=_board_entries(flat, int(first_rank), int(start), names),
        )

    async def lookup(
        self, where: Where, board: str, period: str, order: Order, user_ids: Sequence[int]
    ) -> LookupResponse:
        """The players of ``user_ids`` that are on the board, in board order, and (``missing``)
        those that are not, in request order; a player asked for twice counts once."""
        wanted = list(dict.fromkeys(user_ids))
        parts = _sharded(where)
        if parts is not None:
            count = len(parts)
            members, players = await self.fanout.lookup(
                parts, order, wanted, lambda user: shard_of(user, count)
            )
            entries = [
                BoardEntry(user_id=user, score=score, rank=rank, username=name_of(name))
                for user, score, rank, name in players
            ]
        else:
            members, entries = await self._lookup(self._single(where), order, wanted)
        present = {e.user_id for e in entries}
        return LookupResponse(
            board=board,
            period=period,
            members=int(members),
            entries=entries,
            missing=[user_id for user_id in wanted if user_id not in present],
        )

    async def _lookup(
        self, single: tuple[Keys, str], order: Order, wanted: Sequence[int]
    ) -> tuple[int, list[BoardEntry]]:
        keys, key = single
        with translate_redis_errors():
            ready, members, flat, names = await self.reads.run(
                self.scripts.board_lookup, [keys.marker, key, keys.names], [order, *wanted]
            )
        self._check_ready(ready)
        entries = [
            BoardEntry(
                user_id=int(flat[i]),
                score=to_int(flat[i + 1]),
                rank=int(flat[i + 2]),
                username=name_of(names[i // 3]),
            )
            for i in range(0, len(flat), 3)
        ]
        # Board order: ties as Redis orders them, by member text (user ids compare as strings,
        # "10" before "9"), ascending on asc boards and descending on desc ones.
        entries.sort(key=lambda e: (e.score, str(e.user_id)), reverse=order == "desc")
        return int(members), entries

    @staticmethod
    def _shard(parts: Sequence[Part], user_id: int) -> int:
        return shard_of(user_id, len(parts))

    def _check_ready(self, ready: int) -> None:
        if not ready:
            raise NotReady(
                "the leaderboard is being rebuilt from the database; retry shortly",
                self.settings.retry_after_s,
            )


def _sharded(where: Where) -> Sequence[Part] | None:
    """The parts of a period on more than one shard (``None``: it is on one)."""
    if isinstance(where, str) or len(where) == 1:
        return None
    return where


def _run_entries(run: Run) -> list[BoardEntry]:
    flat, names = run.flat()
    return _board_entries(flat, run.first_rank, run.position, names)


def _absent(user_id: int, board: str, period: str) -> NotFound:
    return NotFound(f"player {user_id} has no score on board {board} in period {period}")
