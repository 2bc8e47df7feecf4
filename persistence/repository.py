"""Named queries of ``sql/queries.sql`` as typed functions. Nothing else in ranker holds SQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

from psycopg import AsyncConnection, sql

from ranker.placements import Token
from sql import query


@dataclass(frozen=True, slots=True)
class Session:
    """One accepted submission, as the stream carries it and ``game_sessions`` stores it."""

    event_id: UUID
    session_id: str
    user_id: int
    score: int
    game_mode: str
    created_ms: int
    #: Where Redis ordered its acceptance (``stream.accepted_seq``).
    accepted_seq: int = 0
    #: The boards and periods it counted on.
    tokens: tuple[Token, ...] = ()
    #: The display name it set, if any.
    username: str | None = None


async def persist_sessions(conn: AsyncConnection, rows: Iterable[Sequence[bytes]]) -> int:
    """Insert the sessions not yet stored and add them to the board totals; in the caller's
    transaction. Returns how many were new (the others were stored before: a redelivery).

    Each row holds the text of event id, session id, user id, score, game mode, created
    time (unix ms), acceptance order, placements and name, as the events stream carries them
    (``stream.columns_of``). They are written to COPY as they are: the API admitted none that
    holds a tab, a newline or a backslash (ids, modes, session ids and placements match strict
    patterns, names hold no control character), but for a name's backslashes, doubled there.
    The connection must come from ``database.make_pool``, which makes its staging table.
    """
    async with conn.cursor() as cur:
        async with cur.copy(query("copy_staged_sessions")) as copy:
            await copy.write(b"".join(b"\t".join(row) + b"\n" for row in rows))
        return await _persist_staged(conn)


async def _persist_staged(conn: AsyncConnection) -> int:
    cur = await conn.execute(query("persist_staged_sessions"))
    row = await cur.fetchone()
    assert row is not None
    added: int = row[0]
    return added


async def insert_random_sessions(
    conn: AsyncConnection, run: str, first: int, last: int, players: int, modes: Sequence[str]
) -> None:
    """Sessions ``first..last`` of seed run ``run`` (8 hex digits), made server-side."""
    params = {"run": run, "first": first, "last": last, "players": players, "modes": list(modes)}
    await conn.execute(query("insert_random_sessions"), params)


async def add_run_to_board_scores(conn: AsyncConnection, run: str, *, empty: bool) -> None:
    """Add every session of seed run ``run`` to the built-in boards. ``empty``: the table has no
    row and no primary key (dropped for the load, see ``without_primary_key``), so a plain
    insert does, without the cost of an upsert per row."""
    await conn.execute(query("create_run_totals"), {"run": run})
    await conn.execute(query("insert_run_totals" if empty else "add_run_totals"))


@contextlib.asynccontextmanager
async def without_primary_key(conn: AsyncConnection, table: str) -> AsyncIterator[None]:
    """Drop ``table``'s primary key for the block and build it again after, in one sorted pass
    (inside the caller's transaction: on failure the key was never gone)."""
    cur = await conn.execute(query("select_primary_key"), {"table": table})
    row = await cur.fetchone()
    assert row is not None, f"{table} has no primary key"
    name, definition = row
    await conn.execute(
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            sql.Identifier(table), sql.Identifier(name)
        )
    )
    yield
    await conn.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
            sql.Identifier(table), sql.Identifier(name)
        )
        + sql.SQL(definition)
    )


async def set_bulk_memory(conn: AsyncConnection) -> None:
    """Give the current transaction memory for bulk sorts and index builds."""
    await conn.execute(query("set_bulk_memory"))


async def drop_secondary_indexes(conn: AsyncConnection, tables: Sequence[str]) -> list[str]:
    """Drop the non-primary-key indexes of ``tables``; returns their definitions, to build them
    again with ``create_indexes`` (one sorted build is far cheaper than millions of inserts)."""
    cur = await conn.execute(query("select_secondary_indexes"), {"tables": list(tables)})
    found = await cur.fetchall()
    for name, _ in found:
        await conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return [definition for _, definition in found]


async def create_indexes(conn: AsyncConnection, definitions: Sequence[str]) -> None:
    """Run ``CREATE INDEX`` statements as the catalog wrote them (``pg_indexes.indexdef``)."""
    for definition in definitions:
        await conn.execute(sql.SQL(definition))


async def insert_seed_players(conn: AsyncConnection, first: int, last: int) -> None:
    """Players ``first..last`` named ``user_<id>`` (existing ones are left alone)."""
    await conn.execute(query("insert_seed_players"), {"first": first, "last": last})


async def iter_board_scores(
    conn: AsyncConnection, board: str, period: str, batch_size: int
) -> AsyncIterator[list[tuple[int, int]]]:
    """Every ``(user_id, score)`` of a board's period in batches, through a server-side cursor
    (inside the caller's transaction, so memory stays bounded at any board size)."""
    async with conn.cursor(name=f"scores_{abs(hash((board, period)))}") as cur:
        cur.itersize = batch_size
        await cur.execute(query("select_board_scores"), {"board": board, "period": period})
        while rows := await cur.fetchmany(batch_size):
            yield rows


async def select_persisted_event_ids(conn: AsyncConnection, event_ids: Sequence[UUID]) -> set[UUID]:
    """The subset of ``event_ids`` stored in ``game_sessions``."""
    cur = await conn.execute(query("select_persisted_event_ids"), {"event_ids": list(event_ids)})
    return {row[0] for row in await cur.fetchall()}


RecentSession = tuple[str, str, int, int, int, str]


async def select_recent_sessions(
    conn: AsyncConnection, window_s: int
) -> AsyncIterator[RecentSession]:
    """``(session_id, event_id, created_ms, user_id, score, game_mode)`` of the sessions inside
    the idempotency window."""
    async with conn.cursor(name="recent_sessions") as cur:
        await cur.execute(query("select_recent_sessions"), {"window_s": window_s})
        async for row in cur:
            yield row


async def select_scores_of_users(
    conn: AsyncConnection, board: str, period: str, user_ids: Sequence[int]
) -> dict[int, int]:
    """``{user_id: score}`` of those of ``user_ids`` that have a score in the board's period."""
    params = {"board": board, "period": period, "user_ids": list(user_ids)}
    cur = await conn.execute(query("select_scores_of_users"), params)
    return dict(await cur.fetchall())


async def select_seqs_of_users(
    conn: AsyncConnection, board: str, period: str, user_ids: Sequence[int]
) -> dict[int, int]:
    """``{user_id: seq}``: the acceptance order of the scores those players hold."""
    params = {"board": board, "period": period, "user_ids": list(user_ids)}
    cur = await conn.execute(query("select_seqs_of_users"), params)
    return dict(await cur.fetchall())


async def has_totals(conn: AsyncConnection) -> bool:
    """Whether any board has a member in the database."""
    cur = await conn.execute(query("select_any_total"))
    row = await cur.fetchone()
    return bool(row and row[0])


async def ensure_database_id(conn: AsyncConnection, new_id: UUID) -> UUID:
    """This database's identity, made as ``new_id`` if it has none yet (autocommit
    connection: the select sees the row a racing process committed first)."""
    await conn.execute(query("insert_database_identity"), {"database_id": new_id})
    cur = await conn.execute(query("select_database_identity"))
    row = await cur.fetchone()
    assert row is not None, "database_identity is empty after its insert"
    database_id: UUID = row[0]
    return database_id


async def select_periods_of_board(
    conn: AsyncConnection, board: str, before: str | None, limit: int
) -> list[tuple[str, int]]:
    """Up to ``limit`` ``(period, members)`` of a board, newest first, older than ``before``."""
    params = {"board": board, "before": before, "limit": limit}
    cur = await conn.execute(query("select_periods_of_board"), params)
    return [(period, members) for period, members in await cur.fetchall()]


@dataclass(frozen=True, slots=True)
class Drift:
    """A score the session log disagrees with (``None``: no row on that side)."""

    period: str
    user_id: int
    stored: int | None
    recomputed: int | None


async def select_session_drift(
    conn: AsyncConnection,
    board: str,
    *,
    op: str,
    reset: str,
    timezone: str,
    game_mode: str | None,
    after_seq: int | None,
    limit: int,
) -> list[Drift]:
    """Up to ``limit`` scores of ``board`` that differ from its aggregate recomputed from
    ``game_sessions`` (``after_seq``: count only sessions accepted after it)."""
    params = {
        "board": board,
        "op": op,
        "reset": reset,
        "timezone": timezone,
        "game_mode": game_mode,
        "after_seq": after_seq,
        "limit": limit,
    }
    cur = await conn.execute(query("select_session_drift"), params)
    return [Drift(*row) for row in await cur.fetchall()]


@dataclass(frozen=True, slots=True)
class StoredDefinition:
    """A defined board as PostgreSQL holds it (``board_definitions``)."""

    id: str
    definition: str
    position: str
    state: str
    backfilled: bool
    #: The stream entry of its latest change (for a deleted board: its deletion).
    changed_seq: int = 0


async def upsert_board_definition(
    conn: AsyncConnection, stored: StoredDefinition, position_seq: int, changed_seq: int
) -> str | None:
    """Record one change of a definition; returns the state stored, or ``None`` when a newer
    change was stored before (a redelivery)."""
    params = {
        "id": stored.id,
        "definition": stored.definition,
        "position": stored.position,
        "position_seq": position_seq,
        "state": stored.state,
        "backfilled": stored.backfilled,
        "changed_seq": changed_seq,
    }
    cur = await conn.execute(query("upsert_board_definition"), params)
    row = await cur.fetchone()
    return row[0] if row else None


async def backfill_board(
    conn: AsyncConnection,
    board: str,
    *,
    position: str,
    position_seq: int,
    op: str,
    reset: str,
    timezone: str,
    game_mode: str | None,
) -> tuple[bool, int]:
    """Merge the sessions before a filling board's position into its scores, once: whether
    this call claimed the board (else it ran before) and how many rows it merged. In the
    caller's transaction, which it first makes wait for a month being dropped (and holds
    retention off until it ends): the backfill reads the whole log."""
    params = {
        "board": board,
        "position": position,
        "position_seq": position_seq,
        "op": op,
        "reset": reset,
        "timezone": timezone,
        "game_mode": game_mode,
    }
    await conn.execute(query("share_session_months"))
    cur = await conn.execute(query("backfill_board"), params)
    row = await cur.fetchone()
    assert row is not None
    return bool(row[0]), int(row[1])


async def persist_definition(
    conn: AsyncConnection, stored: StoredDefinition, position_seq: int, changed_seq: int
) -> None:
    """Record one change of a definition; a purge removes the board's periods with it."""
    state = await upsert_board_definition(conn, stored, position_seq, changed_seq)
    if state == "purged":
        await conn.execute(query("delete_board_scores"), {"board": stored.id})


async def select_board_definitions(conn: AsyncConnection) -> list[StoredDefinition]:
    """The defined boards that are not purged, oldest first."""
    cur = await conn.execute(query("select_board_definitions"))
    return [StoredDefinition(*row) for row in await cur.fetchall()]


async def select_sql_ranks(conn: AsyncConnection, board: str) -> dict[int, tuple[int, int]]:
    """``{user_id: (total, rank)}`` of a never-reset board by ``RANK() OVER (ORDER BY score
    DESC)``."""
    cur = await conn.execute(query("select_sql_ranks"), {"board": board})
    return {user_id: (total, rank) for user_id, total, rank in await cur.fetchall()}
