"""The local stack of ``ranker dev`` (``make run``): real Redis and PostgreSQL for one checkout.

URLs the caller already has win; otherwise servers are started with their data under
``<root>/redis`` and ``<root>/postgres`` (or, where PostgreSQL's user cannot reach the checkout,
a place it can: ``postgres_local.reachable_data_dir``), kept between runs and stopped on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from ranker.dev import servers
from ranker.dev.base import PG_USER

DATABASE = "ranker"
#: The local Redis of ``make run``: bounded like compose.yaml's, smaller (a demo holds a few MB).
#: noeviction: evicting would drop idempotency keys or boards; ranker refuses submit above its
#: watermark of this instead (RANKER_REDIS_MEMORY_WATERMARK).
DEV_REDIS: dict[str, str | int] = {"maxmemory": "256mb", "maxmemory-policy": "noeviction"}


@dataclass(frozen=True)
class LocalStack:
    """Where the stack's servers are: URLs a client can use as they are."""

    redis_url: str
    database_url: str


def ensure_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server unless it exists; returns its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


@contextlib.contextmanager
def local_stack(
    root: Path, redis_url: str | None = None, database_url: str | None = None
) -> Iterator[LocalStack]:
    """The servers of a checkout: ``redis_url`` / ``database_url`` when given, else servers
    started with their data under ``root``; each started one is said on stdout."""
    with contextlib.ExitStack() as stack:
        if redis_url is None:
            server = stack.enter_context(
                servers.redis_server(root / "redis", server_settings=DEV_REDIS)
            )
            redis_url = server.url
            print(f"redis:    {redis_url}  ({server.how}; data in {server.data_dir or root})")
        if database_url is None:
            server = stack.enter_context(servers.postgres_server(root / "postgres"))
            database_url = ensure_database(server.url, DATABASE)
            moved = server.data_dir != (root / "postgres").resolve()
            why = f", as {PG_USER} cannot reach {root / 'postgres'}" if moved else ""
            print(f"postgres: {database_url}  ({server.how}; data in {server.data_dir}{why})")
        yield LocalStack(redis_url, database_url)
