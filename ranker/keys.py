"""Every Redis key name of ranker, built in this one module.

All keys of one namespace share the hash tag ``{<ns>}``, so a Lua script may touch any of them and
Redis Cluster keeps them on one node. Lua scripts receive every key in KEYS and never build one.
Only validated names reach these functions: namespaces and game modes match
``boards.NAME_PATTERN``, session ids match ``models.SESSION_ID_PATTERN``. The layout is in
docs/design.md, "Redis keys".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ranker import boards
from ranker.models import SESSION_ID_PATTERN

PREFIX = "ranker"
# Checked again here, where input becomes a key name: a name that slipped past validation
# (a bug) raises instead of reaching Redis as a key of someone else's or with a hash tag.
_SESSION_ID = re.compile(SESSION_ID_PATTERN)
#: The consumer group of the write-behind worker on the events stream.
WORKER_GROUP = "persist"


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names of one namespace."""

    namespace: str

    @property
    def _base(self) -> str:
        return f"{PREFIX}:{{{self.namespace}}}"

    def board(self, board: str) -> str:
        """The live sorted set of a board (member: user id, score: total); ``ValueError`` for
        a name that is not ``global`` or ``mode:<game mode>``."""
        if not boards.is_board(board):
            raise ValueError(f"not a board name: {board!r}")
        return f"{self._base}:board:{board}"

    def temp(self, board: str) -> str:
        """The shadow sorted set a rebuild loads before it is renamed over the live one."""
        return f"{self._base}:temp:{board}"

    def delta(self, board: str) -> str:
        """Scores submitted while a rebuild runs, added to the shadow at the swap."""
        return f"{self._base}:delta:{board}"

    def seen(self, session_id: str) -> str:
        """The idempotency key of one session (value: the event id it was accepted as);
        ``ValueError`` for an id that does not match ``SESSION_ID_PATTERN``."""
        if not _SESSION_ID.match(session_id):
            raise ValueError(f"not a session id: {session_id!r}")
        return f"{self._base}:seen:{session_id}"

    @property
    def events(self) -> str:
        """The stream of accepted submissions that the worker persists."""
        return f"{self._base}:events"

    @property
    def marker(self) -> str:
        """Present while the namespace's boards are loaded; missing means Redis was wiped."""
        return f"{self._base}:marker"

    @property
    def rebuild_flag(self) -> str:
        """Set (value: generation id, with a TTL) while a rebuild runs."""
        return f"{self._base}:rebuild"

    @property
    def bound_database(self) -> str:
        """The database the namespace is bound to (value: ``<database id> <label>``): only a
        worker of that database persists the namespace's events."""
        return f"{self._base}:database"

    @property
    def rate_limits(self) -> str:
        """The prefix of the rate limiter's counters (the ``limits`` library names the rest:
        ``<prefix>:<kind>/<caller>/...``)."""
        return f"{self._base}:limits"
