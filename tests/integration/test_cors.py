"""The original service's clients: its submit answer's ``message``, and CORS for a page served
from another origin (``RANKER_CORS_ORIGINS``): the browser's preflight is answered for the
origins listed, reads carry the headers, other origins get none (and nothing without the
setting, where the preflight stays a 405)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.rebuild import Rebuild
from ranker.settings import Settings
from tests.fixtures.ranker import api_process

UI = "http://ui.example:3000"
PREFLIGHT = {
    "Origin": UI,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}
SUBMIT = "/api/leaderboard/submit"


async def test_the_submit_answer_carries_the_original_services_message(
    client: httpx.AsyncClient,
) -> None:
    first = await client.post(SUBMIT, json={"user_id": 7, "score": 10, "session_id": "m1"})
    again = await client.post(SUBMIT, json={"user_id": 7, "score": 10, "session_id": "m1"})

    assert first.status_code == again.status_code == 200
    assert first.json()["message"] == again.json()["message"] == "Score submitted successfully"
    top = (await client.get("/api/leaderboard/top")).json()
    assert {"user_id", "total_score", "rank"} <= set(top[0])
    rank = (await client.get("/api/leaderboard/rank/7")).json()
    assert (rank["user_id"], rank["rank"], rank["total_score"]) == (7, 1, 10)


async def test_a_listed_origin_gets_its_preflight_and_the_headers(
    make_settings: Callable[..., Settings], redis: Redis, pool: AsyncConnectionPool
) -> None:
    settings = make_settings(cors_origins=f"{UI},https://other.example")
    await Rebuild(settings, redis, pool).run()
    async with api_process(settings) as http:
        preflight = await http.options(SUBMIT, headers=PREFLIGHT)
        submitted = await http.post(SUBMIT, json={"user_id": 1, "score": 5}, headers={"Origin": UI})
        read = await http.get("/api/leaderboard/top", headers={"Origin": UI})
        stranger = await http.options(
            SUBMIT, headers={**PREFLIGHT, "Origin": "https://evil.example"}
        )
        foreign_read = await http.get(
            "/api/leaderboard/top", headers={"Origin": "https://evil.example"}
        )

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == UI
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert submitted.status_code == 200
    assert submitted.headers["access-control-allow-origin"] == UI
    assert read.headers["access-control-allow-origin"] == UI
    assert stranger.status_code == 400
    assert "access-control-allow-origin" not in stranger.headers
    assert "access-control-allow-origin" not in foreign_read.headers


async def test_without_the_setting_no_origin_is_allowed(client: httpx.AsyncClient) -> None:
    preflight = await client.options(SUBMIT, headers=PREFLIGHT)
    read = await client.get("/api/leaderboard/top", headers={"Origin": UI})

    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in read.headers


@pytest.mark.parametrize(
    "bad", ["ui.example", "ftp://ui.example", "https://ui.example/page", "https://"]
)
def test_an_origin_that_is_not_one_is_refused(
    make_settings: Callable[..., Settings], bad: str
) -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        make_settings(cors_origins=bad)
