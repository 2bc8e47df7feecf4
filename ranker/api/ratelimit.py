"""Per-caller request budgets (``RANKER_WRITE_RATE_LIMIT``, ``RANKER_READ_RATE_LIMIT``).

The counting is the ``limits`` library's sliding-window counter, kept in the namespace's Redis
through the app's own connection pool, so that every API process of a deployment draws on the
same budget. A caller is its API key's id, or its client address for a public read.
"""

from __future__ import annotations

import math
import time
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis

from ranker.connections import translate_redis_errors
from ranker.errors import TooManyRequests
from ranker.keys import Keys
from ranker.settings import Settings

#: The prefix of a caller counted by its address (a public read without a key).
ADDRESS = "address:"


class RateLimits:
    """The write and read budgets of one namespace."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        # The app's pool: the limiter's calls share its connections and its timeouts.
        shared: dict[str, Any] = {"connection_pool": redis.connection_pool}
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=Keys(settings.namespace).rate_limits,
            **shared,
        )
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._budgets: dict[str, list[RateLimitItem]] = {
            "write": budgets(settings.write_rate_limit),
            "read": budgets(settings.read_rate_limit),
        }

    def limits(self, kind: str) -> bool:
        """Whether requests of ``kind`` ("read" or "write") have a budget at all."""
        return bool(self._budgets[kind])

    async def spend(self, kind: str, caller: str) -> None:
        """Count one request of ``kind`` by ``caller`` (an API key's id, or ``address:<ip>``):
        ``TooManyRequests`` (429) when one of its budgets is spent; ``RedisUnavailable`` (503)
        when Redis does not answer."""
        for item in self._budgets[kind]:
            with translate_redis_errors():
                if await self._limiter.hit(item, kind, caller):
                    continue
                stats = await self._limiter.get_window_stats(item, kind, caller)
            field = "client" if caller.startswith(ADDRESS) else "authorization"
            raise over_budget(item, stats.reset_time, f"the {kind} rate limit of", "", field)


def budgets(text: str) -> list[RateLimitItem]:
    """The budgets of a limit setting (``100/second; 1000/hour``); empty: none."""
    return parse_many(text) if text else []


def over_budget(
    item: RateLimitItem, reset_time: float, limit: str, what: str, field: str
) -> TooManyRequests:
    """The 429 of a spent budget: "over <limit> <amount> <what> per <window>; retry after ..."
    (``reset_time``: when its window ends, in epoch seconds), naming ``field``."""
    retry_after = max(1, math.ceil(reset_time - time.time()))
    return TooManyRequests(
        f"over {limit} {item.amount}{what} per {item.multiples} {item.GRANULARITY.name}(s); "
        f"retry after {retry_after} s",
        retry_after,
        item.amount,
        field,
    )
