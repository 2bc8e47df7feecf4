"""Connections to PostgreSQL, and the one place psycopg errors become ranker's own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ranker import metrics
from ranker.errors import DatabaseError
from ranker.settings import Settings
from sql import query

#: How long a caller waits for a pooled connection before the attempt counts as failed.
POOL_TIMEOUT_S = 5.0
#: How long the pool retries one failing connection attempt (backing off from 1 s, doubling)
#: before it gives up; the next request starts a fresh attempt. Kept short so that a pool
#: whose server was down for minutes reconnects within seconds of its return, and no shorter
#: than POOL_TIMEOUT_S: an attempt given up while a caller still waits leaves a gap in which
#: nothing tries to reconnect.
RECONNECT_TIMEOUT_S = POOL_TIMEOUT_S


@contextlib.contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turn psycopg and pool failures into ``DatabaseError`` (counted in the metrics)."""
    try:
        yield
    except (psycopg.Error, PoolTimeout) as exc:
        metrics.database_errors.inc()
        raise DatabaseError(f"PostgreSQL failed: {type(exc).__name__}: {exc}".strip()) from exc


async def prepare_connection(conn: AsyncConnection) -> None:
    """Run once per new pooled connection: the session's staging table for the worker's COPY
    (a temp table lives as long as its session, so no transaction pays for making it)."""
    await conn.execute(query("create_staged_sessions"))


def make_pool(settings: Settings, max_size: int | None = None) -> AsyncConnectionPool:
    """An unopened pool; open it with ``open_pool`` (or use ``pool_for``)."""
    return AsyncConnectionPool(
        settings.database_url,
        min_size=1,
        max_size=max_size or settings.pg_pool_max,
        open=False,
        timeout=POOL_TIMEOUT_S,
        reconnect_timeout=RECONNECT_TIMEOUT_S,
        # A connection idle in the pool while the server restarted is broken: check before use.
        check=AsyncConnectionPool.check_connection,
        kwargs={"autocommit": True, "connect_timeout": 5},
        configure=prepare_connection,
        name="ranker",
    )


@contextlib.asynccontextmanager
async def pool_for(settings: Settings, *, wait: bool = True) -> AsyncIterator[AsyncConnectionPool]:
    """An open pool, closed on exit. ``wait=False`` returns at once even if PostgreSQL is down
    (the worker keeps trying); ``wait=True`` raises ``DatabaseError`` when it cannot connect."""
    pool = make_pool(settings)
    with translate_db_errors():
        await pool.open(wait=wait, timeout=POOL_TIMEOUT_S)
    try:
        yield pool
    finally:
        await pool.close()
