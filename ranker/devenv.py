"""The local stack of ``ranker dev`` (``make run``): real Redis and PostgreSQL for one checkout.

URLs from the environment win (``RANKER_REDIS_URL``/``REDIS_URL``, ``RANKER_DATABASE_URL``/
``DATABASE_URL``); otherwise servers are started with their data under ``<root>/redis`` and
``<root>/postgres``, kept between runs and stopped on exit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from ranker import devservers

DATABASE = "ranker"


def _from_env(*names: str) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


def ensure_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server unless it exists; returns its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


@contextlib.contextmanager
def local_stack(root: Path) -> Iterator[dict[str, str]]:
    """Yield the environment (``RANKER_REDIS_URL``, ``RANKER_DATABASE_URL``) of a running stack."""
    redis_url = _from_env("RANKER_REDIS_URL", "REDIS_URL")
    database_url = _from_env("RANKER_DATABASE_URL", "DATABASE_URL")
    with contextlib.ExitStack() as stack:
        if redis_url is None:
            server = stack.enter_context(devservers.redis_server(root / "redis"))
            print(f"redis: {server.url} ({server.how}), data in {root / 'redis'}")
            redis_url = server.url
        if database_url is None:
            server = stack.enter_context(devservers.postgres_server(root / "postgres"))
            print(f"postgres: {server.url} ({server.how}), data in {root / 'postgres'}")
            database_url = ensure_database(server.url, DATABASE)
        yield {"RANKER_REDIS_URL": redis_url, "RANKER_DATABASE_URL": database_url}
