"""Named queries of players, moderation and the audit log as typed functions (the rest are
``persistence.repository``'s): the SQL side of ``persistence.moderation``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from uuid import UUID

from psycopg import AsyncConnection

from ranker.moderation import AuditEntry, PlayerRecord, StoredSession, VoidedSession
from sql import query


@dataclass(frozen=True, slots=True)
class Action:
    """One admin action as the audit log records it."""

    seq: int
    at_ms: int
    key_id: str
    action: str
    target: str
    reason: str | None = None
    detail: dict[str, object] | None = None


async def insert_audit_entry(conn: AsyncConnection, action: Action) -> bool:
    """Record an admin action; whether it is new (a redelivered one is not)."""
    params = {
        "seq": action.seq,
        "at_ms": action.at_ms,
        "key_id": action.key_id,
        "action": action.action,
        "target": action.target,
        "reason": action.reason,
        "detail": None if action.detail is None else json.dumps(action.detail),
    }
    cur = await conn.execute(query("insert_audit_entry"), params)
    return await cur.fetchone() is not None


async def upsert_player_name(conn: AsyncConnection, user_id: int, username: str, seq: int) -> None:
    """Set a player's name unless a newer one is stored."""
    params = {"user_id": user_id, "username": username, "seq": seq}
    await conn.execute(query("upsert_player_name"), params)


async def insert_ban(conn: AsyncConnection, user_id: int, action: Action) -> int:
    """Ban a player at ``action.seq`` and void their sessions before it; how many."""
    params = {
        "user_id": user_id,
        "seq": action.seq,
        "at_ms": action.at_ms,
        "key_id": action.key_id,
        "reason": action.reason or "",
    }
    cur = await conn.execute(query("insert_ban"), params)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def delete_ban(conn: AsyncConnection, user_id: int) -> int:
    """Lift a player's ban; how many sessions count again."""
    cur = await conn.execute(query("delete_ban"), {"user_id": user_id})
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def void_session(conn: AsyncConnection, event_id: UUID, action: Action) -> int | None:
    """Void one session alone; its player, or ``None`` when it was voided alone already."""
    params = {
        "event_id": event_id,
        "at_ms": action.at_ms,
        "key_id": action.key_id,
        "reason": action.reason,
    }
    cur = await conn.execute(query("void_session"), params)
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def recompute_player_scores(
    conn: AsyncConnection,
    user_id: int,
    board: str,
    *,
    op: str,
    reset: str,
    timezone: str,
    game_mode: str | None,
    after_seq: int | None,
    before_seq: int | None,
) -> tuple[int, int]:
    """Make one player's rows of one board what the session log says; (changed, removed)."""
    params = {
        "user_id": user_id,
        "board": board,
        "op": op,
        "reset": reset,
        "timezone": timezone,
        "game_mode": game_mode,
        "after_seq": after_seq,
        "before_seq": before_seq,
    }
    cur = await conn.execute(query("recompute_player_scores"), params)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def select_scores_of_player(
    conn: AsyncConnection, user_id: int, periods: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The player's scores in those (board, period) pairs that hold one."""
    params = {
        "user_id": user_id,
        "boards": [board for board, _ in periods],
        "periods": [period for _, period in periods],
    }
    cur = await conn.execute(query("select_scores_of_player"), params)
    return {(board, period): score for board, period, score in await cur.fetchall()}


async def select_session(conn: AsyncConnection, session_id: str) -> StoredSession | None:
    """The newest session accepted with ``session_id``."""
    cur = await conn.execute(query("select_session"), {"session_id": session_id})
    row = await cur.fetchone()
    return None if row is None else StoredSession(*row)


async def select_player_record(conn: AsyncConnection, user_id: int) -> PlayerRecord:
    """A player's session counts and ban."""
    cur = await conn.execute(query("select_player_record"), {"user_id": user_id})
    row = await cur.fetchone()
    assert row is not None
    return PlayerRecord(*row)


async def select_voided_sessions(
    conn: AsyncConnection, user_id: int, limit: int
) -> list[VoidedSession]:
    """A player's voided sessions, newest first."""
    params = {"user_id": user_id, "limit": limit}
    cur = await conn.execute(query("select_voided_sessions"), params)
    return [VoidedSession(*row) for row in await cur.fetchall()]


async def select_audit_log(
    conn: AsyncConnection, before: int | None, limit: int
) -> list[AuditEntry]:
    """Admin actions newest first, older than ``before`` (a seq) when given."""
    cur = await conn.execute(query("select_audit_log"), {"before": before, "limit": limit})
    return [
        AuditEntry(seq, at, key_id, action, target, reason, None if d is None else json.loads(d))
        for seq, at, key_id, action, target, reason, d in await cur.fetchall()
    ]


async def select_bans(conn: AsyncConnection) -> list[int]:
    """The players banned now."""
    cur = await conn.execute(query("select_bans"))
    return [user_id for (user_id,) in await cur.fetchall()]


async def iter_named_players(
    conn: AsyncConnection, batch_size: int
) -> AsyncIterator[list[tuple[int, str, int]]]:
    """Every named player as (user id, name, name_seq), in batches (server-side cursor)."""
    async with conn.cursor(name="named_players") as cur:
        await cur.execute(query("select_named_players"))
        while rows := await cur.fetchmany(batch_size):
            yield rows


async def select_name_seqs_of_users(
    conn: AsyncConnection, user_ids: Sequence[int]
) -> dict[int, int]:
    """The acceptance order of the names these players hold (0: none)."""
    cur = await conn.execute(query("select_name_seqs_of_users"), {"user_ids": list(user_ids)})
    return {user_id: seq for user_id, seq in await cur.fetchall()}
