"""The floor app: the least any service can do per request on this stack.

A bare Starlette app on the same uvicorn settings as ranker, whose endpoints make one Redis call
each (ZREVRANK for a rank, ZREVRANGE 0 9 for the top) on the same Redis, with no validation,
no Lua and no metrics. ranker's throughput is compared with it in the same run. Run it with
``uvicorn --factory loadgen.bench.floor:app`` and ``FLOOR_REDIS_URL`` / ``FLOOR_BOARD`` set.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import orjson
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def app() -> Starlette:
    """The floor app (a factory: the Redis client is made in the worker process)."""
    board = os.environ["FLOOR_BOARD"]
    redis = Redis.from_url(os.environ["FLOOR_REDIS_URL"])

    async def rank(request: Request) -> Response:
        position = await redis.zrevrank(board, request.path_params["user_id"])
        return Response(orjson.dumps({"rank": position}), media_type="application/json")

    async def top(request: Request) -> Response:
        entries: Any = await redis.zrevrange(board, 0, 9, withscores=True)
        body = [{"user_id": int(m), "total_score": int(s)} for m, s in entries]
        return Response(orjson.dumps(body), media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await redis.aclose()

    return Starlette(
        routes=[
            Route("/api/leaderboard/rank/{user_id}", rank),
            Route("/api/leaderboard/top", top),
        ],
        lifespan=lifespan,
    )
