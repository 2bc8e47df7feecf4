"""Redis memory, watched: ``INFO memory`` read in the background about once a second per API
process, so that submit refuses new sessions above ``RANKER_REDIS_MEMORY_WATERMARK`` of Redis's
``maxmemory``, before Redis itself refuses writes, at no extra round trip per submission.

Redis is meant to run with ``maxmemory-policy noeviction`` (``compose.yaml``, ``make run``):
evicting would drop idempotency keys, board members or stream entries, each a broken promise.
With no ``maxmemory`` on the server there is nothing to compare with: nothing is refused, and
``/readyz`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

from ranker import metrics
from ranker.connections import Client, node_info, translate_redis_errors
from ranker.errors import RedisUnavailable
from ranker.settings import Settings
from ranker.shards import home

log = logging.getLogger("ranker")
#: How often each API process reads INFO memory. Between two readings a Redis near its limit
#: takes at most a second of submissions (about 200 B each) before submit refuses.
POLL_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class MemoryReading:
    """One reading of Redis's memory against ranker's watermark."""

    used_bytes: int
    #: Client's ``maxmemory``; 0 when none is configured.
    max_bytes: int
    watermark: float

    @property
    def fraction(self) -> float | None:
        """used / maxmemory; None without a maxmemory."""
        return self.used_bytes / self.max_bytes if self.max_bytes else None

    @property
    def full(self) -> bool:
        """Whether submit refuses new sessions: used at or above the watermark of maxmemory."""
        return bool(self.max_bytes) and self.used_bytes >= self.watermark * self.max_bytes

    def detail(self) -> str:
        """The reading in words (never the server's address)."""
        mark = f"watermark {self.watermark * 100:g}%"
        if self.fraction is None:
            return f"Redis has no maxmemory configured: nothing to compare with the {mark}"
        # Rounded down, so that a refusal never shows a figure under the watermark.
        percent = math.floor(self.fraction * 100)
        return f"Redis memory is {percent}% full ({mark})"

    def report(self) -> dict[str, Any]:
        """The reading as ``/readyz`` shows it."""
        fraction = self.fraction
        return {
            "used_bytes": self.used_bytes,
            "maxmemory_bytes": self.max_bytes or None,
            "used_fraction": None if fraction is None else round(fraction, 4),
            "watermark": self.watermark,
            "full": self.full,
            "detail": self.detail(),
        }


class RedisMemory:
    """The latest reading of one Redis, refreshed by ``run`` (a background service)."""

    name = "redis-memory"

    def __init__(self, redis: Client, settings: Settings) -> None:
        self.redis = redis
        #: On a cluster, the node read is the one that holds the namespace's keys.
        self.key = home(settings.namespace, settings.board_shards).marker
        self.watermark = settings.redis_memory_watermark
        #: None until the first reading, and after a failed one: nothing is refused on a
        #: reading that may be stale (the submission's own call then meets the real state).
        self.reading: MemoryReading | None = None

    def pressure(self) -> MemoryReading | None:
        """The latest reading when it is above the watermark, else None (no extra call)."""
        reading = self.reading
        return reading if reading is not None and reading.full else None

    async def refresh(self) -> MemoryReading:
        """Read INFO memory now; ``RedisUnavailable`` when Redis does not answer."""
        try:
            with translate_redis_errors():
                info = await node_info(self.redis, "memory", self.key)
        except RedisUnavailable:
            self.reading = None
            raise
        reading = MemoryReading(
            int(info["used_memory"]), int(info.get("maxmemory", 0)), self.watermark
        )
        self.reading = reading
        metrics.redis_memory_used.set(reading.used_bytes)
        metrics.redis_memory_max.set(reading.max_bytes)
        return reading

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh every ``POLL_INTERVAL_S`` until ``stop`` is set; outages are waited out."""
        while not stop.is_set():
            try:
                await self.refresh()
            except RedisUnavailable as exc:
                log.debug("INFO memory: %s", exc)  # the request path reports the outage
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_INTERVAL_S)
