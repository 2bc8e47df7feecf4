"""I5: bad input stops at the door. Each malformed request gets a 4xx problem+json naming the
field, and neither Redis nor PostgreSQL changes."""

from __future__ import annotations

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.worker import Worker
from ranker.settings import Settings
from tests.fixtures.ranker import READ_KEY, WRITE_KEY, auth_headers, snapshot

SUBMIT = "/api/leaderboard/submit"
JSON = {"content-type": "application/json"}

# (name, method, path, body bytes or None, headers, expected status, field named)
CASES = [
    ("missing user_id", "POST", SUBMIT, b'{"score": 5}', JSON, 422, "user_id"),
    ("missing score", "POST", SUBMIT, b'{"user_id": 1}', JSON, 422, "score"),
    ("user_id zero", "POST", SUBMIT, b'{"user_id": 0, "score": 5}', JSON, 422, "user_id"),
    ("user_id negative", "POST", SUBMIT, b'{"user_id": -3, "score": 5}', JSON, 422, "user_id"),
    (
        "user_id 2**63",
        "POST",
        SUBMIT,
        b'{"user_id": 9223372036854775808, "score": 5}',
        JSON,
        422,
        "user_id",
    ),
    ("user_id as string", "POST", SUBMIT, b'{"user_id": "1", "score": 5}', JSON, 422, "user_id"),
    ("user_id as bool", "POST", SUBMIT, b'{"user_id": true, "score": 5}', JSON, 422, "user_id"),
    ("score as float", "POST", SUBMIT, b'{"user_id": 1, "score": 5.5}', JSON, 422, "score"),
    (
        "user_id as a whole float past 2**53",
        "POST",
        SUBMIT,
        b'{"user_id": 1e17, "score": 5}',
        JSON,
        422,
        "user_id",
    ),
    ("score as string", "POST", SUBMIT, b'{"user_id": 1, "score": "5"}', JSON, 422, "score"),
    ("score above max", "POST", SUBMIT, b'{"user_id": 1, "score": 1000000001}', JSON, 422, "score"),
    ("score below min", "POST", SUBMIT, b'{"user_id": 1, "score": -1}', JSON, 422, "score"),
    ("score null", "POST", SUBMIT, b'{"user_id": 1, "score": null}', JSON, 422, "score"),
    ("unknown field", "POST", SUBMIT, b'{"user_id": 1, "score": 5, "rank": 1}', JSON, 422, "rank"),
    (
        "unknown mode",
        "POST",
        SUBMIT,
        b'{"user_id": 1, "score": 5, "game_mode": "duo"}',
        JSON,
        422,
        "game_mode",
    ),
    (
        "mode with key syntax",
        "POST",
        SUBMIT,
        b'{"user_id": 1, "score": 5, "game_mode": "solo:x}"}',
        JSON,
        422,
        "game_mode",
    ),
    (
        "session id with spaces",
        "POST",
        SUBMIT,
        b'{"user_id": 1, "score": 5, "session_id": "a b"}',
        JSON,
        422,
        "session_id",
    ),
    (
        "session id too long",
        "POST",
        SUBMIT,
        b'{"user_id": 1, "score": 5, "session_id": "' + b"x" * 129 + b'"}',
        JSON,
        422,
        "session_id",
    ),
    (
        "empty session id",
        "POST",
        SUBMIT,
        b'{"user_id": 1, "score": 5, "session_id": ""}',
        JSON,
        422,
        "session_id",
    ),
    ("body is an array", "POST", SUBMIT, b"[1, 5]", JSON, 422, "body"),
    ("body is not JSON", "POST", SUBMIT, b"user_id=1&score=5", JSON, 400, "body"),
    ("truncated JSON", "POST", SUBMIT, b'{"user_id": 1, "score"', JSON, 400, "body"),
    ("empty body", "POST", SUBMIT, b"", JSON, 400, "body"),
    (
        "form content type",
        "POST",
        SUBMIT,
        b'{"user_id": 1, "score": 5}',
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        "content-type",
    ),
    (
        "oversized body",
        "POST",
        SUBMIT,
        b'{"user_id": 1, "score": 5, "session_id": "' + b"a" * 5000 + b'"}',
        JSON,
        413,
        "body",
    ),
    ("top limit zero", "GET", "/api/leaderboard/top?limit=0", None, {}, 422, "limit"),
    ("top limit too big", "GET", "/api/leaderboard/top?limit=100000", None, {}, 422, "limit"),
    ("top limit not a number", "GET", "/api/leaderboard/top?limit=ten", None, {}, 422, "limit"),
    ("top unknown mode", "GET", "/api/leaderboard/top?mode=duo", None, {}, 422, "mode"),
    ("top unknown parameter", "GET", "/api/leaderboard/top?page=2", None, {}, 422, "page"),
    ("rank of user 0", "GET", "/api/leaderboard/rank/0", None, {}, 422, "user_id"),
    ("rank of non-number", "GET", "/api/leaderboard/rank/abc", None, {}, 422, "user_id"),
    ("rank of 2**63", "GET", "/api/leaderboard/rank/9223372036854775808", None, {}, 422, "user_id"),
    ("around n negative", "GET", "/api/leaderboard/around/1?n=-1", None, {}, 422, "n"),
    # Who may write, and how much may be sent (the client's own key would be accepted).
    (
        "unknown API key",
        "POST",
        SUBMIT,
        b'{"user_id": 1, "score": 5}',
        {**JSON, "authorization": "Bearer not-a-key-of-this-service"},
        401,
        "authorization",
    ),
    (
        "basic credentials",
        "POST",
        SUBMIT,
        b'{"user_id": 1, "score": 5}',
        {**JSON, "authorization": f"Basic {WRITE_KEY}"},
        401,
        "authorization",
    ),
    (
        "read-only API key",
        "POST",
        SUBMIT,
        b'{"user_id": 1, "score": 5}',
        {**JSON, **auth_headers(READ_KEY)},
        403,
        "authorization",
    ),
    ("url too long", "GET", "/api/leaderboard/top?limit=1" + "&" * 2100, None, {}, 414, "url"),
    (
        "headers too large",
        "POST",
        SUBMIT,
        b'{"user_id": 1, "score": 5}',
        {**JSON, "x-padding": "p" * 9000},
        431,
        "headers",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "field"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_malformed_request_is_a_4xx_problem_and_changes_nothing(
    client: httpx.AsyncClient,
    redis: Redis,
    pool: AsyncConnectionPool,
    settings: Settings,
    worker: Worker,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    field: str,
) -> None:
    # A player on the board, persisted, so "unchanged" has something to compare.
    await client.post(SUBMIT, json={"user_id": 1, "score": 5, "session_id": "before"})
    await worker.drain()
    before = await snapshot(redis, pool, settings)

    response = await client.request(method, path, content=body, headers=headers)
    await worker.drain()

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert field in [error["field"] for error in problem["errors"]], problem
    assert await snapshot(redis, pool, settings) == before


def test_the_table_covers_at_least_fifteen_cases() -> None:
    assert len({case[0] for case in CASES}) >= 15
