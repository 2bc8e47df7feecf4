"""What the app holds while it runs, and the port through which background services join it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

from ranker.api.abuse import AddressLimits, SampledLog
from ranker.api.auth import KeyRing
from ranker.api.live import Hub
from ranker.api.ratelimit import RateLimits
from ranker.connections import Client
from ranker.keys import Keys
from ranker.memory import RedisMemory
from ranker.models import Limits
from ranker.moderation import Moderation, PlayerRecords
from ranker.pages import Pages
from ranker.ranking import Ranking
from ranker.settings import Settings


class BackgroundService(Protocol):
    """Something that runs beside the API until ``stop`` is set, then returns."""

    name: str

    async def run(self, stop: asyncio.Event) -> None: ...

    def problem(self) -> str | None:
        """Why the service cannot do its work now (``/readyz`` answers 503 with it), else
        ``None``. What it says is shown to any caller: no address, no secret."""
        ...


class ArchivedPeriods(Protocol):
    """Past periods that left Redis with their retention, read back from PostgreSQL
    (``persistence.archive``, handed in by ``ranker.cli``: the API does not import it)."""

    async def load(
        self, board: str, period: str, key: str, keys: Keys | None = None, shard: int = 0
    ) -> None:
        """Fill the sorted set ``key`` with the period's scores, for ``ARCHIVE_TTL_S``
        (nothing when the period holds none); of a board shard's players only (``keys``:
        the shard's, ``shard``: its index)."""
        ...

    async def periods(self, board: str, before: str | None, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` ``(period id, members)`` of the board in PostgreSQL, newest first,
        older than ``before``."""
        ...


@dataclass
class AppState:
    """What request handlers use: settings, the Redis client and the ranking of the namespace
    (and the background services, whose problems ``/readyz`` reports)."""

    settings: Settings
    redis: Client
    ranking: Ranking
    limits: Limits
    keys: KeyRing
    rate_limits: RateLimits
    address_limits: AddressLimits
    refusals: SampledLog
    memory: RedisMemory
    pages: Pages
    moderation: Moderation
    background: Sequence[BackgroundService] = ()
    archive: ArchivedPeriods | None = None
    records: PlayerRecords | None = None
    #: The feeds of the live streams (made by the lifespan, which reads through this state).
    live: Hub | None = None


def state_of(request: Request) -> AppState:
    """The state of the app serving ``request``."""
    state: AppState = request.app.state.ranker
    return state
