"""The floor app: the least any service can do per request on this stack.

A bare Starlette app on the same uvicorn settings as ranker, whose endpoints make one Redis call
each (ZREVRANK for a rank, ZREVRANGE 0 9 for the top, one EVALSHA of ``AROUND`` for the players
around one) on the same Redis, with no validation, no auth and no metrics. ranker's throughput
is compared with it in the same run. Run it with ``uvicorn --factory loadgen.bench.floor:app``
and ``FLOOR_REDIS_URL`` / ``FLOOR_BOARD`` set (``--http ranker.api.protocol:GuardedProtocol``:
on ranker's server).

With ``FLOOR_SUBMIT`` set (JSON: ``SubmitKeys``), ``POST /api/leaderboard/submit`` too: the body
parsed with orjson, and one EVALSHA of ``floor_submit.lua`` (registered once, at start-up), the
Redis work of ranker's submission on the five-board set, on keys of its own (``loadgen.bench.
boards`` names them under a throwaway prefix, so that ranker's stream and boards never see them).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypedDict

import orjson
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SCRIPT = Path(__file__).with_name("floor_submit.lua")
#: A player and the ``ARGV[2]`` players either side of it, with scores (the least Redis work of
#: an around answer: one call, no names).
AROUND = """
local rank = redis.call('ZREVRANK', KEYS[1], ARGV[1])
if not rank then return false end
local side = tonumber(ARGV[2])
return redis.call('ZREVRANGE', KEYS[1], math.max(rank - side, 0), rank + side, 'WITHSCORES')
"""


class SubmitKeys(TypedDict):
    """Where the floor app's submissions go (``FLOOR_SUBMIT``)."""

    stream: str
    idempotency_prefix: str  # the digest of the session id follows
    ttl_ms: int
    default_mode: str
    global_board: str
    pages_version: str
    #: Per game mode: its board, then the daily best, weekly sum and monthly best boards.
    boards: dict[str, list[str]]
    #: Per game mode: the stream field ``b`` ranker writes for it (``placements.tokens_text``).
    placements: dict[str, str]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def app() -> Starlette:
    """The floor app (a factory: the Redis client is made in the worker process)."""
    board = os.environ["FLOOR_BOARD"]
    redis = Redis.from_url(os.environ["FLOOR_REDIS_URL"])
    keys: SubmitKeys | None = None
    if "FLOOR_SUBMIT" in os.environ:
        keys = orjson.loads(os.environ["FLOOR_SUBMIT"])
    sha = ""
    around_sha = ""

    async def rank(request: Request) -> Response:
        position = await redis.zrevrank(board, request.path_params["user_id"])
        return Response(orjson.dumps({"rank": position}), media_type="application/json")

    async def top(request: Request) -> Response:
        entries: Any = await redis.zrevrange(board, 0, 9, withscores=True)
        body = [{"user_id": int(m), "total_score": int(s)} for m, s in entries]
        return Response(orjson.dumps(body), media_type="application/json")

    async def around(request: Request) -> Response:
        side = int(request.query_params.get("n", "5"))
        user_id = request.path_params["user_id"]
        found: Any = await redis.evalsha(around_sha, 1, board, user_id, side)
        if found is None:
            return Response(b"{}", status_code=404, media_type="application/json")
        pairs = zip(found[::2], found[1::2], strict=True)
        body = [{"user_id": int(m), "total_score": int(s)} for m, s in pairs]
        return Response(orjson.dumps(body), media_type="application/json")

    async def submit(request: Request) -> Response:
        assert keys is not None
        body = orjson.loads(await request.body())
        user, score = body["user_id"], body["score"]
        mode = body.get("game_mode") or keys["default_mode"]
        session = body.get("session_id") or uuid.uuid4().hex
        event = uuid.uuid4()
        # ranker's idempotency key and value: BLAKE2b digests, base64url (ranker.keys, .ranking).
        says = hashlib.blake2b(f"{user} {score} {mode}".encode(), digest_size=4).digest()
        session_digest = hashlib.blake2b(session.encode(), digest_size=16).digest()
        reply: Any = await redis.evalsha(
            sha,
            8,
            keys["idempotency_prefix"] + _b64(session_digest),
            keys["stream"],
            keys["global_board"],
            *keys["boards"][mode],
            keys["pages_version"],
            user,
            score,
            session,
            str(event),
            mode,
            keys["ttl_ms"],
            int(time.time() * 1000),
            keys["placements"][mode],
            secrets.token_hex(8),  # a request id, as ranker's access middleware makes one
            _b64(event.bytes) + _b64(says),
        )
        if reply[0] == b"seen":
            answer = {"user_id": user, "duplicate": True}
        else:
            answer = {"user_id": user, "rank": reply[1] + 1, "total_score": int(float(reply[2]))}
        return Response(orjson.dumps(answer), media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        nonlocal sha, around_sha
        around_sha = await redis.script_load(AROUND)
        if keys is not None:
            sha = await redis.script_load(SCRIPT.read_text())
        yield
        await redis.aclose()

    routes = [
        Route("/api/leaderboard/rank/{user_id}", rank),
        Route("/api/leaderboard/top", top),
        Route("/api/leaderboard/around/{user_id}", around),
    ]
    if keys is not None:
        routes.append(Route("/api/leaderboard/submit", submit, methods=["POST"]))
    return Starlette(routes=routes, lifespan=lifespan)
