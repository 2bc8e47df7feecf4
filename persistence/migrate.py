"""Apply the numbered migrations of ``sql/migrations`` that a database lacks, in order."""

from __future__ import annotations

from psycopg import AsyncConnection

from sql import migrations, query


async def migrate(conn: AsyncConnection) -> list[int]:
    """Apply every pending migration; returns the versions applied (empty when up to date).

    Concurrent runs are serialised by an advisory lock, and each migration commits with its
    record in ``ranker_migrations``, so a run that dies half-way resumes where it stopped.
    """
    applied: list[int] = []
    for migration in migrations():
        async with conn.transaction():
            await conn.execute(query("lock_migrations"))
            await conn.execute(query("create_migrations_table"))
            cur = await conn.execute(query("select_applied_migrations"))
            if migration.version in {row[0] for row in await cur.fetchall()}:
                continue
            await conn.execute(migration.text)
            params = {"version": migration.version, "name": migration.name}
            await conn.execute(query("insert_migration"), params)
            applied.append(migration.version)
    return applied
