"""Where a read of a board's period finds it: the board the path names, the period the query
names and the sorted set holding it (its live key, or a copy reloaded from PostgreSQL). Shared
by the routes of boards and the live feeds of their streams, so that a stream's events are
exactly what ``GET /api/boards/{board_id}/top`` answers."""

from __future__ import annotations

import asyncio
import re

from starlette.requests import Request

from ranker.api.guards import printable
from ranker.api.state import AppState
from ranker.catalog import Record
from ranker.connections import translate_redis_errors
from ranker.definitions import BOARD_ID_PATTERN, BoardDefinition
from ranker.errors import NotFound, NotReady, Unavailable
from ranker.fanout import Part
from ranker.models import BoardPage
from ranker.pages import Where
from ranker.periods import Period
from ranker.placements import ARCHIVE_TTL_S, resolve_period, retained, slot_of

_BOARD_ID = re.compile(BOARD_ID_PATTERN)


def path_board_id(request: Request) -> str:
    """The board id of the path; 404 for one no board can have."""
    board_id: str = request.path_params["board_id"]
    if not _BOARD_ID.match(board_id):
        raise NotFound(f"there is no board {printable(board_id)!r}")
    return board_id


async def board_record(state: AppState, board_id: str) -> Record:
    """The board ``board_id`` (a deleted one too: its periods stay readable); 404 when none."""
    record = (await state.ranking.catalog.snapshot()).find(board_id)
    if record is None:
        raise NotFound(f"there is no board {board_id!r}")
    return record


async def board_period(state: AppState, board_id: str, wanted: str | None) -> tuple[Record, Period]:
    """The board and the period ``wanted`` names (``current`` when None or empty): 503 while
    the board is being filled, 422 for a period that is no period, 404 for one not begun."""
    record = await board_record(state, board_id)
    if record.state == "filling":
        raise NotReady(
            f"board {record.definition.id} is being computed from past sessions; retry shortly",
            state.settings.retry_after_s,
        )
    period = resolve_period(record.definition, wanted or "current", state.ranking.now())
    return record, period


def in_redis(state: AppState, board: BoardDefinition, period: Period) -> bool:
    """Whether Redis retains ``period`` (else only PostgreSQL holds it)."""
    return any(p.id == period.id for p in retained(board, state.ranking.now()))


async def period_key(state: AppState, board: BoardDefinition, period: Period) -> Where:
    """Where ``period`` is: its live key while Redis retains it, else a copy reloaded from
    PostgreSQL (kept while it is read: EXPIRE both renews it and says whether it is there); on
    a sharded board, those of every shard (``ranker.fanout``)."""
    slot = slot_of(board, period.id)
    shards = state.ranking.shards
    if in_redis(state, board, period):
        if not shards.sharded:
            return state.ranking.keys.board(slot)
        return [Part(keys, keys.board(slot)) for keys in shards.parts]
    parts = [Part(keys, keys.archive(slot)) for keys in shards.parts]
    with translate_redis_errors():
        present = await asyncio.gather(
            *(state.redis.expire(part.key, ARCHIVE_TTL_S) for part in parts)
        )
    for shard, (part, there) in enumerate(zip(parts, present, strict=True)):
        if there:
            continue
        if state.archive is None:
            raise Unavailable(
                f"period {period.id} of board {board.id} is only in PostgreSQL, which this "
                "process does not read"
            )
        await state.archive.load(board.id, period.id, part.key, part.keys, shard)
    return parts[0].key if len(parts) == 1 else parts


async def top_page(
    state: AppState, record: Record, period: Period, limit: int, cursor: str | None
) -> BoardPage:
    """The page of ``GET /api/boards/{board_id}/top`` (one Lua call for a period in Redis)."""
    board = record.definition
    key = await period_key(state, board, period)
    return await state.pages.top(key, board.id, period.id, board.order, limit, cursor)


async def top_body(
    state: AppState, record: Record, period: Period, limit: int, cursor: str | None
) -> bytes:
    """``top_page`` as the JSON of ``GET /api/boards/{board_id}/top``, the process's copy
    when Redis says it is current (``ranker.page_cache``)."""
    board = record.definition
    key = await period_key(state, board, period)
    return await state.pages.top_body(key, board.id, period.id, board.order, limit, cursor)


async def watched_top(
    state: AppState, board_id: str, wanted: str, limit: int, shown: BoardPage | None
) -> BoardPage | None:
    """The first page of ``GET /api/boards/{board_id}/top?period=<wanted>&limit=<limit>`` as
    it is now, for a feed that last showed ``shown``; None, without reading it, when ``shown``
    is of the same period and that period is only in PostgreSQL: it no longer changes."""
    record, period = await board_period(state, board_id, wanted)
    if shown is not None and shown.period == period.id:
        if not in_redis(state, record.definition, period):
            return None
    return await top_page(state, record, period, limit, None)
