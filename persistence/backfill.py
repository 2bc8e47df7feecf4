"""Boards created with ``"backfill": true``: computed from the sessions stored before them,
while submissions keep flowing.

A board counts the sessions accepted after its position (the stream entry that created it)
from its creation on, like any other; while it is ``filling`` its reads answer 503. Once every
entry up to its position is persisted (so ``game_sessions`` holds every session before it), one
statement places the sessions before the position by the board's filter, periods and op and
merges them into ``board_scores``, claiming the board's ``backfilled`` flag in the same
statement, so that it runs once whoever runs it. The board's periods are then rebuilt into Redis
(the rebuild protocol keeps the sessions arriving meanwhile) and the board goes ``live``. No
session is counted twice or missed at the hand-over: each is before the position or after it.
"""

from __future__ import annotations

import logging

from psycopg_pool import AsyncConnectionPool

from persistence import repository
from persistence.database import translate_db_errors
from persistence.rebuild import Rebuild
from persistence.stream import accepted_seq
from ranker.catalog import Catalog, Record
from ranker.connections import Client
from ranker.placements import op_of
from ranker.settings import Settings

log = logging.getLogger("ranker.backfill")


async def fill_boards(settings: Settings, redis: Client, pool: AsyncConnectionPool) -> list[str]:
    """Backfill every board that is filling and whose position is persisted; the ids done."""
    catalog = Catalog(redis, settings)
    filled = []
    for record in (await catalog.reload()).records.values():
        if record.state == "filling" and await catalog.persisted(record.position):
            await _fill(settings, redis, pool, catalog, record)
            filled.append(record.definition.id)
    return filled


async def _fill(
    settings: Settings, redis: Client, pool: AsyncConnectionPool, catalog: Catalog, record: Record
) -> None:
    board = record.definition
    with translate_db_errors():
        async with pool.connection() as conn, conn.transaction():
            claimed, merged = await repository.backfill_board(
                conn,
                board.id,
                position=record.position,
                position_seq=accepted_seq(record.position),
                op=op_of(board),
                reset=board.reset,
                timezone=board.timezone,
                game_mode=board.game_mode,
            )
    if claimed:
        log.info("board %s: %d scores computed from the sessions before it", board.id, merged)
    # Again after a crash between the two (the claim is then already taken): both are safe
    # to repeat.
    await Rebuild(settings, redis, pool, only={board.id}).run(wait_s=settings.rebuild_ttl_s)
    await catalog.set_state(board.id, "live")
    log.info("board %s is live", board.id)
