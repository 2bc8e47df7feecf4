"""Which database a namespace is bound to: only the workers of that database persist it.

Two deployments that share a Redis namespace but not a database would each persist the other's
sessions, since every worker consumes the namespace's one stream. So each database has an
identity (a random id made on first use, table ``database_identity``) and the namespace's key
``bound_database`` records the identity of the database it belongs to, with a label a person
recognises (database name, host and port, never a password). The first process that has the
database and finds the key absent writes it, with SET NX GET so that two racing processes agree
on one; a rebuild writes it unconditionally (``rebuild_begin.lua``): the boards are then that
database's. docs/design.md, "Invariants" (I6).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from persistence import repository
from persistence.database import translate_db_errors
from ranker.connections import Client, translate_redis_errors
from ranker.errors import ConfigurationError
from ranker.keys import Keys

log = logging.getLogger("ranker.binding")


@dataclass(frozen=True, slots=True)
class DatabaseIdentity:
    """A database's id and a label for people (``<name> on <host>:<port>``)."""

    id: str
    label: str

    @property
    def value(self) -> str:
        """The ``bound_database`` key's value: id first (it holds no space), then the label."""
        return f"{self.id} {self.label}"

    @classmethod
    def parse(cls, raw: bytes | str) -> DatabaseIdentity:
        """The identity a ``bound_database`` value records."""
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        database_id, _, label = text.partition(" ")
        return cls(database_id, label or "no label")

    def __str__(self) -> str:
        return f"{self.id} ({self.label})"


class BoundElsewhere(ConfigurationError):
    """The namespace is bound to another database than this process's.

    ``detail`` names the two databases by id only: it is what ``/readyz`` tells any caller,
    which learns no host from it. ``str()`` adds their labels and the ways out, for the log and
    the CLI's one-line reason."""

    def __init__(self, namespace: str, bound: DatabaseIdentity, mine: DatabaseIdentity) -> None:
        super().__init__(
            f"namespace {namespace} is bound to database {bound.id}, not to this one ({mine.id})"
        )
        self.namespace = namespace
        self.bound = bound
        self.mine = mine

    def __str__(self) -> str:
        return (
            f"namespace {self.namespace} is bound to database {self.bound}, not to this one, "
            f"{self.mine}: set RANKER_DATABASE_URL to that database or RANKER_NAMESPACE to "
            "another namespace, or run `ranker rebuild` to bind the namespace to this database "
            "(its boards are then reloaded from it)"
        )


async def database_identity(conn: AsyncConnection) -> DatabaseIdentity:
    """The identity of ``conn``'s database (an autocommit connection), made if it has none."""
    with translate_db_errors():
        database_id = await repository.ensure_database_id(conn, uuid.uuid4())
    info = conn.info
    return DatabaseIdentity(str(database_id), f"{info.dbname} on {info.host}:{info.port}")


async def pool_identity(pool: AsyncConnectionPool) -> DatabaseIdentity:
    """``database_identity`` through a connection of ``pool``."""
    with translate_db_errors():
        async with pool.connection() as conn:
            return await database_identity(conn)


async def bound_to(redis: Client, keys: Keys) -> DatabaseIdentity | None:
    """The database the namespace is bound to; ``None`` when it is bound to none (new, or
    Redis lost its data)."""
    with translate_redis_errors():
        raw = await redis.get(keys.bound_database)
    return None if raw is None else DatabaseIdentity.parse(raw)


async def claim(
    redis: Client, namespace: str, mine: DatabaseIdentity, keys: Keys | None = None
) -> None:
    """Bind the namespace to ``mine`` if it is bound to none; ``BoundElsewhere`` when it is
    bound to another database."""
    with translate_redis_errors():
        # One atomic call: of two processes that find the key absent, one sets it and the
        # other reads what the first set.
        key = (keys or Keys(namespace)).bound_database
        raw = await redis.set(key, mine.value, nx=True, get=True)
    if isinstance(raw, bytes | str):  # the value found; None: it was absent, now ours
        bound = DatabaseIdentity.parse(raw)
        if bound.id != mine.id:
            raise BoundElsewhere(namespace, bound, mine)


class Binding:
    """The binding as the workers of one process see it: their database's identity (read
    once) and the refusal in force, if any (``refusal``, which ``/readyz`` reports)."""

    def __init__(
        self, namespace: str, redis: Client, pool: AsyncConnectionPool, keys: Keys | None = None
    ) -> None:
        """``keys``: those of the board shard whose binding this is (each shard is rebuilt, and
        so bound, on its own); by default the namespace's."""
        self.namespace = namespace
        self.keys = keys
        self.redis = redis
        self.pool = pool
        self.refusal: BoundElsewhere | None = None
        self._mine: DatabaseIdentity | None = None

    async def identity(self) -> DatabaseIdentity:
        """This process's database identity; ``DatabaseError`` while PostgreSQL is away."""
        if self._mine is None:
            self._mine = await pool_identity(self.pool)
        return self._mine

    async def check(self) -> None:
        """Claim the namespace if it is bound to none; ``BoundElsewhere`` when it is bound to
        another database. A refusal is logged once, at error, and so is its end (the namespace
        was bound to this database again, by a rebuild from it)."""
        mine = await self.identity()
        try:
            await claim(self.redis, self.namespace, mine, self.keys)
        except BoundElsewhere as refusal:
            if self.refusal is None or self.refusal.bound != refusal.bound:
                log.error("%s; this worker persists nothing meanwhile", refusal)
            self.refusal = refusal
            raise
        if self.refusal is not None:
            log.warning("namespace %s is bound to this database again: persisting", self.namespace)
            self.refusal = None
