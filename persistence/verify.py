"""Compare every member of every board period in Redis with the scores in PostgreSQL, and
(``deep``) every board's scores with the session log.

Run it once the worker has drained (``verify`` waits for that): a difference then means a lost or
double-counted submission. The periods compared are the current and retained ones of every board
that counts (older ones are only in PostgreSQL). Both directions are checked in pages, so memory
stays bounded: Client -> SQL (ZSCAN, then the scores of those members) and SQL -> Client (the
period's scores through a cursor, then ZMSCORE of those members).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from persistence import repository
from persistence.database import translate_db_errors
from persistence.definitions import logged_boards
from persistence.partitions import dropped_months
from persistence.stream import unpersisted
from ranker.catalog import Catalog
from ranker.connections import Client, translate_redis_errors
from ranker.definitions import BoardDefinition
from ranker.entries import to_int
from ranker.errors import Unavailable
from ranker.keys import Keys
from ranker.periods import ALL
from ranker.placements import op_of, retained, slot_of
from ranker.settings import Settings
from ranker.shards import Shards, shards_of


@dataclass(frozen=True)
class Difference:
    """One member whose total differs (``None``: absent on that side)."""

    board: str
    user_id: int
    redis: int | None
    sql: int | None
    period: str = ALL

    def __str__(self) -> str:
        where = self.board if self.period == ALL else f"{self.board} {self.period}"
        return f"{where} user {self.user_id}: redis={self.redis} sql={self.sql}"


@dataclass(frozen=True)
class VerifyReport:
    """The outcome: the members compared and the first differences found."""

    members: int
    differences: list[Difference]
    total_differences: int

    @property
    def ok(self) -> bool:
        """Whether Redis and SQL agree on every member."""
        return self.total_differences == 0


async def wait_drained(redis: Client, keys: Keys | Shards, timeout_s: float) -> None:
    """Return once no entry awaits persistence (in the stream of ``keys``, or of every board
    shard); ``Unavailable`` after ``timeout_s``."""
    parts = keys.parts if isinstance(keys, Shards) else (keys,)
    deadline = time.monotonic() + timeout_s
    for part in parts:
        while (left := await unpersisted(redis, part)) > 0:
            if time.monotonic() > deadline:
                raise Unavailable(f"{left} events still wait for the worker after {timeout_s} s")
            await asyncio.sleep(0.05)


class Verifier:
    """Compares the boards of one namespace."""

    def __init__(
        self,
        settings: Settings,
        redis: Client,
        pool: AsyncConnectionPool,
        page_size: int = 5_000,
        keep: int = 20,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.pool = pool
        self.shards = shards_of(settings.namespace, settings.board_shards)
        self.page_size = page_size
        self.keep = keep

    async def run(self, now: datetime | None = None) -> VerifyReport:
        """Compare the current and retained periods of every board that counts (current as of
        ``now``: by default this clock's)."""
        found: list[Difference] = []
        members = total = 0
        snapshot = await Catalog(self.redis, self.settings).reload()
        now = now or datetime.now(UTC)
        with translate_db_errors():
            async with self.pool.connection() as conn, conn.transaction():
                for record in snapshot.records.values():
                    if record.state != "live":
                        continue  # filling: not yet complete; stopped: frozen in SQL
                    for period in retained(record.definition, now):
                        seen, diffs = await self._period(conn, record.definition, period.id)
                        members += seen
                        total += len(diffs)
                        found.extend(diffs[: self.keep - len(found)])
        return VerifyReport(members, found, total)

    async def _period(
        self, conn: AsyncConnection, board: BoardDefinition, period: str
    ) -> tuple[int, list[Difference]]:
        slot = slot_of(board, period)
        diffs: list[Difference] = []
        members = 0
        for keys in self.shards.parts:  # Redis -> SQL, each shard's members
            key = keys.board(slot)
            cursor = 0
            while True:
                with translate_redis_errors():
                    cursor, page = await self.redis.zscan(key, cursor, count=self.page_size)
                members += len(page)
                ids = [int(member) for member, _ in page]
                sql = await repository.select_scores_of_users(conn, board.id, period, ids)
                for member, score in page:
                    user_id, in_redis = int(member), to_int(score)
                    if sql.get(user_id) != in_redis or self.shards.of(user_id) != keys:
                        # (A member on a shard not its own is a difference too: it would be
                        # counted twice, or read where no submission of it goes.)
                        diffs.append(
                            Difference(board.id, user_id, in_redis, sql.get(user_id), period)
                        )
                if cursor == 0:
                    break
        async for rows in repository.iter_board_scores(conn, board.id, period, self.page_size):
            for (user_id, score), found in zip(rows, await self._scores(slot, rows), strict=True):
                if found is None:
                    diffs.append(Difference(board.id, user_id, None, score, period))
        return members, diffs

    async def _scores(self, slot: str, rows: list[tuple[int, int]]) -> list[float | None]:
        """The Redis scores of the players of ``rows``, each from its own shard."""
        found: list[float | None] = [None] * len(rows)
        by_shard: dict[Keys, list[int]] = {}
        for i, (user_id, _) in enumerate(rows):
            by_shard.setdefault(self.shards.of(user_id), []).append(i)
        for keys, where in by_shard.items():
            members = [str(rows[i][0]) for i in where]
            with translate_redis_errors():
                scores = await self.redis.zmscore(keys.board(slot), members)
            for i, score in zip(where, scores, strict=True):
                found[i] = score
        return found

    async def deep(self, keep: int = 20) -> list[str]:
        """Up to ``keep`` scores of PostgreSQL's boards that differ from their aggregates
        recomputed from ``game_sessions`` with each board's filter, operator and periods, every
        period included (a board that stopped counting is left out: later sessions would be
        counted on it). Over what retention kept: the retained sessions joined with what the
        dropped months carried (``horizon`` says where the stored sessions begin)."""
        found: list[str] = []
        with translate_db_errors():
            async with self.pool.connection() as conn, conn.transaction():
                boards = await logged_boards(conn, self.settings.game_modes)
                for logged in (logged for logged in boards if logged.state == "live"):
                    board = logged.board
                    drift = await repository.select_session_drift(
                        conn,
                        board.id,
                        op=op_of(board),
                        reset=board.reset,
                        timezone=board.timezone,
                        game_mode=board.game_mode,
                        after_seq=logged.after_seq,
                        limit=keep - len(found),
                    )
                    for d in drift:
                        where = board.id if d.period == ALL else f"{board.id} {d.period}"
                        found.append(
                            f"{where} user {d.user_id}: stored={d.stored} recomputed={d.recomputed}"
                        )
                    if len(found) >= keep:
                        break
        return found

    async def horizon(self) -> tuple[int, datetime | None]:
        """What ``deep`` read the log over: how many months retention dropped, and where the
        sessions still stored begin (``None``: none was dropped, the log is whole). The scores
        of the dropped months are compared as ``carried_scores`` holds them."""
        with translate_db_errors():
            async with self.pool.connection() as conn:
                return await dropped_months(conn)
