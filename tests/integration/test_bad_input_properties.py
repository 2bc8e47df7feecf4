"""I5 under generated input: any malformed submit body or query gets a 4xx problem+json naming a
field, never a 5xx, and nothing reaches Redis or PostgreSQL."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError
from redis.asyncio import Redis

from ranker.models import Limits, SubmitRequest
from ranker.settings import Settings
from tests.fixtures.ranker import snapshot

SUBMIT = "/api/leaderboard/submit"
VALID = {"user_id": 7, "score": 10, "game_mode": "solo", "session_id": "ok-1"}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=8,
)


@st.composite
def submit_bodies(draw: st.DrawFn) -> bytes:
    """A valid body with one field replaced, removed or added, or any JSON, or any bytes."""
    kind = draw(st.sampled_from(["replace", "remove", "add", "json", "bytes"]))
    body: dict[str, Any] = dict(VALID)
    if kind == "replace":
        body[draw(st.sampled_from(sorted(VALID)))] = draw(json_values)
    elif kind == "remove":
        del body[draw(st.sampled_from(["user_id", "score"]))]
    elif kind == "add":
        body[draw(st.text(max_size=12).filter(lambda k: k not in VALID))] = draw(json_values)
    elif kind == "json":
        return json.dumps(draw(json_values)).encode()
    else:
        return draw(st.binary(max_size=64))
    return json.dumps(body).encode()


def accepted_by_the_model(body: bytes, settings: Settings) -> bool:
    try:
        SubmitRequest.model_validate_json(body, context=Limits.from_settings(settings))
    except ValidationError:
        return False
    return True


def assert_problem(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == response.status_code
    assert problem["errors"] and all(error["field"] for error in problem["errors"])


@hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=submit_bodies())
async def test_malformed_submit_bodies_are_refused_at_the_door(
    body: bytes,
    client: httpx.AsyncClient,
    settings: Settings,
    redis: Redis,
    pool: AsyncConnectionPool,
) -> None:
    assume(not accepted_by_the_model(body, settings))
    before = await snapshot(redis, pool, settings)

    response = await client.post(SUBMIT, content=body, headers={"content-type": "application/json"})

    assert_problem(response)
    assert await snapshot(redis, pool, settings) == before


@hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(limit=st.text(max_size=8), mode=st.text(max_size=8), user=st.text(min_size=1, max_size=22))
async def test_malformed_queries_are_refused_at_the_door(
    limit: str, mode: str, user: str, client: httpx.AsyncClient, settings: Settings
) -> None:
    valid_limit = limit.isascii() and limit.isdigit() and 1 <= int(limit) <= settings.top_limit_max
    valid_user = user.isascii() and user.isdigit() and 1 <= int(user) < 2**63
    top = await client.get("/api/leaderboard/top", params={"limit": limit, "mode": mode})
    rank = await client.get(f"/api/leaderboard/rank/{quote(user, safe='')}")

    if not (valid_limit and mode in settings.game_modes):
        assert_problem(top)
    else:
        assert top.status_code == 200
    if not valid_user:
        # An id holding "/" or ".." names another path: the router's 404, also problem+json.
        assert 400 <= rank.status_code < 500, rank.text
        assert rank.headers["content-type"] == "application/problem+json"
        if rank.status_code == 422:
            assert [error["field"] for error in rank.json()["errors"]] == ["user_id"]
