"""The board definitions PostgreSQL holds (the worker persists every change from the events
stream), and giving them back to a Redis that lost its own."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from persistence import repository
from persistence.database import translate_db_errors
from persistence.player_restore import restore_bans
from persistence.stream import accepted_seq
from ranker.catalog import Record, sync_definitions_version
from ranker.connections import Client, translate_redis_errors
from ranker.definitions import BoardDefinition, builtin_boards
from ranker.keys import Keys
from ranker.scripts import Scripts
from ranker.settings import Settings
from ranker.shards import home, shards_of

log = logging.getLogger("ranker.definitions")


@dataclass(frozen=True, slots=True)
class LoggedBoard:
    """A board as the session log gives it: the sessions accepted after ``after_seq`` count on
    it (all of them when ``None``: a built-in board, or one backfilled), up to ``before_seq``
    (a deleted board's deletion; ``None``: still counting)."""

    board: BoardDefinition
    state: str
    after_seq: int | None
    before_seq: int | None


async def logged_boards(conn: AsyncConnection, game_modes: Sequence[str]) -> list[LoggedBoard]:
    """Every board with periods in PostgreSQL, built-in and defined (live, filling or
    deleted), with the bounds of the sessions that count on it: what the recomputations of
    moderation and ``verify --deep`` read the log with."""
    boards = [LoggedBoard(board, "live", None, None) for board in builtin_boards(game_modes)]
    for stored in await repository.select_board_definitions(conn):
        boards.append(
            LoggedBoard(
                BoardDefinition.model_validate_json(stored.definition),
                stored.state,
                None if stored.backfilled else accepted_seq(stored.position),
                stored.changed_seq if stored.state == "deleted" else None,
            )
        )
    return boards


async def stored_definitions(pool: AsyncConnectionPool) -> list[Record]:
    """The defined boards PostgreSQL holds, oldest first (a record it cannot read is left out
    with a warning)."""
    with translate_db_errors():
        async with pool.connection() as conn:
            rows = await repository.select_board_definitions(conn)
    records = []
    for row in rows:
        try:
            records.append(Record.parse(f"{row.position} {row.state} {row.definition}"))
        except ValueError as exc:
            log.warning("board %r in PostgreSQL cannot be read: %s", row.id, exc)
    return records


async def restore_definitions(
    redis: Client,
    settings: Settings,
    pool: AsyncConnectionPool,
    shard: Keys | None = None,
    mine: Callable[[int], bool] | None = None,
) -> bool:
    """Give Redis the definitions PostgreSQL holds if it lost its own; whether it did. From
    then on submissions are accepted again, before the boards are loaded: the bans are given
    back first (when Redis lost the namespace), so none of a banned player's is accepted.
    ``shard``: the board shard whose bans are given back (``mine``: its players); by default
    the namespace's home. The definitions are the home's."""
    keys = home(settings.namespace, settings.board_shards)
    await restore_bans(redis, shard or keys, pool, mine)
    restore = [part for r in await stored_definitions(pool) for part in (r.definition.id, r.text)]
    with translate_redis_errors():
        restored = await Scripts.register(redis).restore_definitions(
            [keys.definitions, keys.definitions_version, keys.pages_version],
            [uuid.uuid4().hex, *restore],
        )
    # The other board shards check submissions against their copy of the version.
    await sync_definitions_version(redis, shards_of(settings.namespace, settings.board_shards))
    return bool(restored)
