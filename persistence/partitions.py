"""The months of the session log: ``game_sessions`` is partitioned by UTC month; the partitions
are made ahead, and those past ``RANKER_SESSIONS_RETENTION_MONTHS`` dropped once nothing can
still change them, their scores carried (docs/design.md, "Partitions and retention").

``maintain`` is one round, run by the watchdog every ``MAINTENANCE_INTERVAL_S`` and by
``ranker partitions``: this month's partition and the next ``AHEAD_MONTHS`` made, each month
found in the default partition given its own, then the oldest months dropped while they may be.
A month may be dropped when:

- it closed (``retention_closes``: the retention's whole months after it ended) a day ago or
  more. From its close a session of it can no longer be voided alone (``ranker.moderation``);
  the day is for a void accepted across the close, and for clocks that disagree;
- the events stream holds no entry from before that day: every session of the month and every
  void of one of its sessions is persisted (after it, an entry can be neither);
- the idempotency window is past it (a rebuild restores idempotency keys from sessions);
- no rebuild runs (it would hold the table that the drop must lock), and no board waits for its
  backfill (it will then count the month, as it would have without retention).

Bans and unbans may still come: carried rows hold the sessions voided by a ban too, and are not
counted while their player is banned, so either order gives the same scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from persistence.database import translate_db_errors
from persistence.definitions import logged_boards
from persistence.stream import oldest_entry_ms
from ranker.connections import Client, translate_redis_errors
from ranker.definitions import builtin_boards
from ranker.periods import month_of, months_after, retention_closes
from ranker.placements import op_of
from ranker.settings import Settings
from ranker.shards import shards_of
from sql import query

log = logging.getLogger("ranker.partitions")
#: Months made ahead of this one: a worker down for that long still finds its month there (and
#: were it not, the default partition takes the sessions until the next round).
AHEAD_MONTHS = 2
#: How often the watchdog runs a round: a month's partition exists two months before it starts.
MAINTENANCE_INTERVAL_S = 3600.0
#: How long after its close a month is kept (see the module's docstring).
GRACE = timedelta(days=1)
#: How long a change of partitions waits for its lock: a long reader of game_sessions (a
#: rebuild's snapshot) would otherwise hold every insert queued behind it. Tried next round.
LOCK_TIMEOUT = "2s"


def month_id(month: datetime) -> str:
    """``2026-03``: how logs and the CLI name a month of the session log."""
    return f"{month.year}-{month.month:02d}"


@dataclass
class Maintenance:
    """What one round did: the months whose partitions it made and dropped (first instants,
    UTC), and why the oldest month left is kept (``None``: no retention, or no month);
    ``held``: that month is past its retention, held back by something that ends by itself."""

    created: list[datetime] = field(default_factory=list)
    dropped: list[datetime] = field(default_factory=list)
    kept: str | None = None
    held: bool = False


async def session_months(conn: AsyncConnection) -> list[datetime]:
    """The months game_sessions has a partition of, oldest first."""
    cur = await conn.execute(query("select_session_months"))
    return [month.astimezone(UTC) for (month,) in await cur.fetchall()]


async def create_months(conn: AsyncConnection, months: list[datetime]) -> list[datetime]:
    """Make the partitions of ``months`` that do not exist (each in its own transaction, moving
    the month's sessions out of the default partition); returns those made."""
    created = []
    for month in sorted(set(months)):
        async with conn.transaction():
            await conn.execute(query("set_lock_timeout"), {"timeout": LOCK_TIMEOUT})
            cur = await conn.execute(query("create_session_partition"), {"month": month})
            row = await cur.fetchone()
        if row and row[0]:
            created.append(month)
    return created


async def dropped_months(conn: AsyncConnection) -> tuple[int, datetime | None]:
    """How many months retention dropped, and where the sessions still stored begin."""
    cur = await conn.execute(query("select_dropped_months"))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), row[1] and row[1].astimezone(UTC)


async def maintain(
    settings: Settings, redis: Client, pool: AsyncConnectionPool, now: datetime | None = None
) -> Maintenance:
    """One round: the months ahead made, the default partition's months given their own, the
    oldest months dropped while they may be (as of ``now``; by default this clock's)."""
    now = now or datetime.now(UTC)
    done = Maintenance()
    with translate_db_errors():
        async with pool.connection() as conn:
            cur = await conn.execute(query("select_default_months"))
            found = [month.astimezone(UTC) for (month,) in await cur.fetchall()]
            ahead = [months_after(now, n) for n in range(AHEAD_MONTHS + 1)]
            done.created = await create_months(conn, ahead + found)
            while settings.sessions_retention_months is not None:
                months = await session_months(conn)
                if not months:
                    break
                kept = await _why_kept(settings, redis, months[0], now)
                outcome = kept or await _drop(conn, settings, months[0])
                if isinstance(outcome, str):
                    done.kept, done.held = outcome, now >= _safe_from(settings, months[0])
                    break
                if outcome:  # else another worker dropped it meanwhile
                    done.dropped.append(months[0])
    for month in done.created:
        log.info("made the partition of the sessions of %s", month_id(month))
    for month in done.dropped:
        log.info("dropped the sessions of %s: their scores are carried", month_id(month))
    return done


async def _why_kept(
    settings: Settings, redis: Client, month: datetime, now: datetime
) -> str | None:
    """Why ``month`` may not be dropped now, as Redis and the clock tell (``None``: it may, as
    far as they know)."""
    shards = shards_of(settings.namespace, settings.board_shards)
    name = month_id(month)
    safe_from = _safe_from(settings, month)
    if now < safe_from:
        return f"{name} is kept until {safe_from:%Y-%m-%d %H:%M} UTC (retention)"
    ends = months_after(month, 1)
    idempotent_until = ends + timedelta(seconds=settings.idempotency_ttl_s)
    if now < idempotent_until:
        until = f"{idempotent_until:%Y-%m-%d %H:%M} UTC"
        return f"{name} holds sessions inside the idempotency window until {until}"
    with translate_redis_errors():
        rebuilding = [bool(await redis.exists(keys.rebuild_flag)) for keys in shards.parts]
    if any(rebuilding):
        return f"{name} waits for the rebuild that runs"
    entries = [await oldest_entry_ms(redis, keys) for keys in shards.parts]
    oldest = min((ms for ms in entries if ms is not None), default=None)
    if oldest is not None and oldest < safe_from.timestamp() * 1000:
        since = datetime.fromtimestamp(oldest / 1000, UTC)
        return (
            f"{name} waits for the worker: the events stream still holds an entry of "
            f"{since:%Y-%m-%d %H:%M} UTC, which may carry a session or a void of it"
        )
    return None


def _safe_from(settings: Settings, month: datetime) -> datetime:
    """When ``month`` may be dropped as far as the clock tells."""
    assert settings.sessions_retention_months is not None
    return retention_closes(month, settings.sessions_retention_months) + GRACE


async def _drop(conn: AsyncConnection, settings: Settings, month: datetime) -> bool | str:
    """Carry ``month``'s scores and drop its partition, in one transaction: whether it was
    dropped (not: it was gone already), or why it was kept instead."""
    ends = months_after(month, 1)
    async with conn.transaction():
        # First, before any table: a backfill holding the shared lock is waited for, and one
        # starting now waits, so neither reads the log while a month leaves it.
        await conn.execute(query("lock_session_months"))
        if month not in await session_months(conn):
            return False
        cur = await conn.execute(query("select_filling_boards"))
        if filling := [board for (board,) in await cur.fetchall()]:
            return f"{month_id(month)} waits for the backfill of board {filling[0]}"
        builtin = {board.id for board in builtin_boards(settings.game_modes)}
        for logged in await logged_boards(conn, settings.game_modes):
            board = logged.board
            params = {
                "board": board.id,
                "builtin": board.id in builtin,
                "op": op_of(board),
                "reset": board.reset,
                "timezone": board.timezone,
                "game_mode": board.game_mode,
                "after_seq": logged.after_seq,
                "before_seq": logged.before_seq,
                "month": month,
                "month_end": ends,
            }
            await conn.execute(query("carry_month_scores"), params)
        await conn.execute(query("set_lock_timeout"), {"timeout": LOCK_TIMEOUT})
        await conn.execute(query("drop_session_partition"), {"month": month_of(month)})
    return True
