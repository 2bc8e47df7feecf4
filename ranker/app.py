"""The Starlette application: its state, its lifespan and its background services.

The app owns the Redis client and the live ranking. Background services (the write-behind worker
and the rebuild watchdog, from ``persistence``) are handed in by the ``serve`` command, so the
request path never imports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.applications import Starlette
from starlette.middleware import Middleware

from ranker.auth import KeyRing
from ranker.models import Limits
from ranker.ranking import Ranking
from ranker.ratelimit import RateLimits
from ranker.settings import Settings

log = logging.getLogger("ranker")
#: How long shutdown waits for background services to finish their current step.
SHUTDOWN_GRACE_S = 10.0


class BackgroundService(Protocol):
    """Something that runs beside the API until ``stop`` is set, then returns."""

    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


@dataclass
class AppState:
    """What request handlers use: settings, the Redis client and the ranking of the namespace."""

    settings: Settings
    redis: Redis
    ranking: Ranking
    limits: Limits
    keys: KeyRing
    rate_limits: RateLimits


def redis_client(settings: Settings) -> Redis:
    """A Redis client whose calls fail within ``redis_timeout_s`` when Redis is away."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        # A pooled connection that died while idle (Redis restarted, a proxy or the network
        # cut it) fails on its next use: one immediate retry on a fresh connection keeps that
        # from failing a request once Redis is back. Only for connection errors, not timeouts,
        # so a stalled Redis still fails within the timeout. Safe for submit too: a retried
        # submission is recognised by its session id and counted once.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


def create_app(
    settings: Settings | None = None, background: Sequence[BackgroundService] = ()
) -> Starlette:
    """The ASGI app; ``background`` services run for as long as the app does."""
    from ranker.api import RequestLimits, exception_handlers, routes

    settings = settings or Settings()
    keys = KeyRing.from_settings(settings)
    if not keys:
        raise ValueError(
            "no API key is configured: set RANKER_API_KEYS or RANKER_API_KEY_FILE "
            "(`ranker dev` and `make run` make a development key)"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = redis_client(settings)
        app.state.ranker = AppState(
            settings,
            redis,
            Ranking(redis, settings),
            Limits.from_settings(settings),
            keys,
            RateLimits(redis, settings),
        )
        stop = asyncio.Event()
        tasks = [asyncio.create_task(svc.run(stop), name=svc.name) for svc in background]
        try:
            yield
        finally:
            # In-flight requests have finished when uvicorn runs this; background services
            # finish their current batch and acknowledge it before they return.
            stop.set()
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
                for task in late:
                    log.warning("background service %s did not stop in time", task.get_name())
                    task.cancel()
            await redis.aclose()

    app = Starlette(
        routes=routes(),
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
        middleware=[
            Middleware(
                RequestLimits,
                max_url_bytes=settings.max_url_bytes,
                max_header_bytes=settings.max_header_bytes,
            )
        ],
    )
    # A path with a trailing slash is not ours: a 404 problem, not a redirect to a guess.
    app.router.redirect_slashes = False
    return app
