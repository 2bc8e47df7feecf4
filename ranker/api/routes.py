"""The HTTP routes (paths kept from the original service) and their handlers."""

from __future__ import annotations

import functools
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from ranker import metrics
from ranker.api.auth import Scope
from ranker.api.board_routes import board_routes
from ranker.api.guards import caller_of, guarded, observed
from ranker.api.inputs import (
    parse_submit,
    path_user_id,
    query_int,
    query_mode,
    read_body,
    reject_unknown_query,
)
from ranker.api.openapi import openapi_document
from ranker.api.player_routes import player_routes
from ranker.api.problems import JSON, EncodedJSON, EntriesJSON
from ranker.api.readiness import readiness
from ranker.api.state import state_of
from ranker.api.stream_routes import stream_routes
from ranker.errors import (
    BacklogFull,
    ClientGone,
    InvalidInput,
    RankerError,
    RedisMemoryFull,
    RedisUnavailable,
    SessionConflict,
    TooManyRequests,
)


@observed("submit")
@guarded(Scope.WRITE, charged_inside=True)
async def submit(request: Request) -> Response:
    state = state_of(request)
    try:
        payload = parse_submit(
            await read_body(request, state.settings.max_body_bytes), state.limits
        )
    except InvalidInput:
        # It never reaches submit.lua, which charges the write budget: charged here instead,
        # so that a caller over its budget is told 429 first, as for any other write.
        await state.rate_limits.spend(Scope.WRITE.value, caller_of(request))
        metrics.submissions.labels("rejected").inc()
        raise
    except ClientGone:
        metrics.submissions.labels("client_closed").inc()
        raise
    try:
        charge = state.rate_limits.charge(Scope.WRITE.value, caller_of(request))
        outcome = await state.ranking.submit(payload, charge)
    except TooManyRequests:
        raise  # refused before it was a submission, as when the guard charged it: not counted
    except RankerError as exc:
        # By the error's class, not its status: Redis away, its memory full and a full backlog
        # are all 503s.
        label = "backlog_full" if isinstance(exc, BacklogFull) else "error"
        if isinstance(exc, RedisMemoryFull):
            label = "memory_full"
        elif isinstance(exc, RedisUnavailable):
            label = "unavailable"
        elif isinstance(exc, SessionConflict):
            label = "conflict"
        metrics.submissions.labels(label).inc()
        raise
    metrics.submissions.labels("duplicate" if outcome.duplicate else "accepted").inc()
    # 200 for a first acceptance and a retry alike: clients of the original service check for it.
    return JSON(outcome)


@observed("top")
@guarded(Scope.READ)
async def top(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, {"limit", "mode"})
    limit = query_int(request, "limit", 10, 1, state.settings.top_limit_max)
    return EncodedJSON(await state.ranking.top_body(limit, query_mode(request, state)))


@observed("rank")
@guarded(Scope.READ)
async def rank(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, {"mode"})
    user_id = path_user_id(request)
    return JSON(await state.ranking.rank(user_id, query_mode(request, state)))


@observed("around")
@guarded(Scope.READ)
async def around(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, {"mode", "n"})
    user_id = path_user_id(request)
    side = query_int(request, "n", 5, 0, state.settings.top_limit_max // 2)
    return EntriesJSON(await state.ranking.around(user_id, side, query_mode(request, state)))


async def healthz(request: Request) -> Response:
    """Liveness: the process answers. Says nothing of Redis or PostgreSQL."""
    return JSON({"status": "ok"})


@observed("readyz")
async def readyz(request: Request) -> Response:
    """Readiness (``ranker.api.readiness``): 200 when ready, else 503 with ``Retry-After`` and
    the reason; ``ranker_ready`` follows each answer."""
    found = await readiness(state_of(request))
    retry = None if found.retry_after_s is None else {"Retry-After": str(found.retry_after_s)}
    return JSON(found.body, status_code=200 if found.ready else 503, headers=retry)


async def prometheus(request: Request) -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


async def openapi(request: Request) -> Response:
    return JSON(openapi_document(state_of(request).settings))


@functools.cache
def _page() -> str:
    return (
        resources.files("ranker.api").joinpath("static", "index.html").read_text(encoding="utf-8")
    )


async def index(request: Request) -> Response:
    return HTMLResponse(_page())


#: The routes most requests take, most frequent first: dispatched without Starlette's router
#: (``ranker.api.direct``).
HOT_PATHS = (
    "/api/leaderboard/rank/{user_id}",
    "/api/leaderboard/top",
    "/api/leaderboard/around/{user_id}",
    "/api/leaderboard/submit",
    "/api/boards/{board_id}/players/{user_id}",
    "/api/boards/{board_id}/top",
    "/api/boards/{board_id}/around/{user_id}",
    "/api/boards/{board_id}/lookup",
)


def hot(all_routes: list[BaseRoute]) -> list[Route]:
    """The routes of ``HOT_PATHS`` among ``all_routes``, in its order."""
    by_path = {r.path: r for r in all_routes if isinstance(r, Route) and r.path in HOT_PATHS}
    return [by_path[path] for path in HOT_PATHS]


def routes(public_metrics: bool = True) -> list[BaseRoute]:
    """Every route of the service (paths kept from the original service); ``/metrics`` only
    when it has no port of its own."""
    metrics_route = [Route("/metrics", prometheus, methods=["GET"])] if public_metrics else []
    return [
        *metrics_route,
        Route("/api/leaderboard/submit", submit, methods=["POST"]),
        Route("/api/leaderboard/top", top, methods=["GET"]),
        Route("/api/leaderboard/rank/{user_id}", rank, methods=["GET"]),
        Route("/api/leaderboard/around/{user_id}", around, methods=["GET"]),
        *board_routes(),
        *stream_routes(),
        *player_routes(),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/", index, methods=["GET"]),
    ]
