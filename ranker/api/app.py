"""The Starlette application: its lifespan, its state and its background services.

The app owns the Redis client and the live ranking. Background services (the write-behind worker
and the rebuild watchdog, from ``persistence``) are handed in by ``ranker.cli``, so the request
path never imports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from ranker.api.abuse import AddressLimits, SampledLog
from ranker.api.access import RequestContext
from ranker.api.auth import KeyRing
from ranker.api.direct import DirectRoutes
from ranker.api.edge import RequestLimits
from ranker.api.problems import exception_handlers
from ranker.api.ratelimit import RateLimits
from ranker.api.readiness import watch as watch_readiness
from ranker.api.routes import hot, routes
from ranker.api.state import AppState, ArchivedPeriods, BackgroundService
from ranker.api.stream_routes import live_hub
from ranker.api.traces import traced
from ranker.coalesce import Coalescer
from ranker.connections import request_redis
from ranker.errors import ConfigurationError
from ranker.memory import RedisMemory
from ranker.models import Limits
from ranker.moderation import Moderation, PlayerRecords
from ranker.pages import Pages
from ranker.ranking import Ranking
from ranker.settings import Settings

log = logging.getLogger("ranker")
#: How long shutdown waits for background services to finish their current step.
SHUTDOWN_GRACE_S = 10.0


def key_ring(settings: Settings) -> KeyRing:
    """The deployment's API keys; ``ConfigurationError`` when there is none (an API anyone
    could write to is never started by accident)."""
    keys = KeyRing.from_settings(settings)
    if not keys:
        raise ConfigurationError(
            "no API key is configured: set RANKER_API_KEYS or RANKER_API_KEY_FILE "
            "(`ranker dev` and `make run` make a development key)"
        )
    return keys


#: What a page of another origin may send: its key and a JSON body.
CORS_HEADERS = ("authorization", "content-type")


def cors(settings: Settings) -> list[Middleware]:
    """Starlette's CORS middleware for ``RANKER_CORS_ORIGINS`` (none when empty): it answers
    the browser's preflight and adds the headers to the answers of those origins. Outermost,
    so that a preflight is answered before any route (which would answer 405)."""
    if not settings.cors_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=list(CORS_HEADERS),
            expose_headers=["Retry-After", "RateLimit-Limit", "RateLimit-Remaining"],
            max_age=600,
        )
    ]


def create_app(
    settings: Settings,
    background: Sequence[BackgroundService] = (),
    archive: ArchivedPeriods | None = None,
    records: PlayerRecords | None = None,
) -> Starlette:
    """The ASGI app; ``background`` services run for as long as the app does; ``archive``
    reads the periods that left Redis (without it, reads of those answer 503); ``records``
    reads players from PostgreSQL and completes moderation (without it, moderation answers
    503)."""
    keys = key_ring(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = request_redis(settings)
        memory = RedisMemory(redis, settings)
        # One batcher for every read of the process: reads of any route in one turn share it.
        reads = Coalescer(redis, settings.coalesce_reads, settings.read_from_replicas)
        ranking = Ranking(redis, settings, memory, reads=reads)
        app.state.ranker = AppState(
            settings,
            redis,
            ranking,
            Limits.from_settings(settings),
            keys,
            RateLimits(redis, settings),
            AddressLimits(settings),
            SampledLog(settings.refusal_log_interval_s),
            memory,
            Pages(redis, settings, reads),
            # The clock is read through the ranking's: tests move it there.
            Moderation(redis, settings, ranking.catalog, lambda: ranking.wall_ms()),
            background,
            archive,
            records,
        )
        # The feeds of live streams read through the state, so the hub comes after it.
        app.state.ranker.live = hub = live_hub(app.state.ranker)
        stop = asyncio.Event()
        # The memory watcher runs in every API process (each refuses on its own reading).
        tasks = [asyncio.create_task(memory.run(stop), name=memory.name)]
        tasks += [asyncio.create_task(svc.run(stop), name=svc.name) for svc in background]
        tasks.append(asyncio.create_task(watch_readiness(app.state.ranker, stop), name="readiness"))
        try:
            yield
        finally:
            # In-flight requests have finished when uvicorn runs this; background services
            # finish their current batch and acknowledge it before they return. Streams have
            # ended at the exit signal (ranker.api.stream_routes); in process, they end here.
            await hub.close()
            stop.set()
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
                for task in late:
                    log.warning("background service %s did not stop in time", task.get_name())
                    task.cancel()
            await redis.aclose()

    all_routes = routes(public_metrics=settings.metrics_port is None)
    app = Starlette(
        routes=all_routes,
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
        middleware=[
            # Outermost: every answer, a refusal at the edge or a preflight too, has an id.
            Middleware(RequestContext, access_log=settings.access_log),
            # Inside it, so that a request's span names its id; with traces off, none.
            *traced(),
            *cors(settings),
            Middleware(
                RequestLimits,
                max_url_bytes=settings.max_url_bytes,
                max_header_bytes=settings.max_header_bytes,
            ),
            # Innermost: the hot routes' handlers are called without the router's layers.
            Middleware(DirectRoutes, routes=hot(all_routes)),
        ],
    )
    # A path with a trailing slash is not ours: a 404 problem, not a redirect to a guess.
    app.router.redirect_slashes = False
    return app
