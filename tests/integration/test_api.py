"""The HTTP interface on real Redis and PostgreSQL: submit, rank, top, around, readiness."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from persistence.worker import Worker
from ranker.keys import Keys
from ranker.settings import Settings
from tests.fixtures.ranker import auth_headers

#: The core tests run on the single server and on the local Redis Cluster.
pytestmark = pytest.mark.cluster


async def submit(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await client.post("/api/leaderboard/submit", json=body)


async def test_submit_returns_total_and_rank_on_the_global_board(client: httpx.AsyncClient) -> None:
    first = await submit(client, user_id=1, score=50)
    second = await submit(client, user_id=2, score=70, game_mode="team")
    third = await submit(client, user_id=1, score=30, session_id="s-3")

    assert first.status_code == 200, first.text
    assert first.json()["rank"] == 1
    assert second.json()["rank"] == 1
    assert third.json() | {"event_id": None, "boards": None} == {
        "user_id": 1,
        "total_score": 80,
        "rank": 1,
        "session_id": "s-3",
        "duplicate": False,
        "event_id": None,
        "boards": None,
        "message": "Score submitted successfully",
    }
    # Each board it counted on: the global one and the default mode's.
    (mode_board,) = set(third.json()["boards"]) - {"global"}
    assert mode_board.startswith("mode-")
    assert third.json()["boards"]["global"] == {"score": 80, "rank": 1, "period": "all"}
    assert third.json()["boards"][mode_board] == {"score": 80, "rank": 1, "period": "all"}


async def test_retry_of_a_session_is_not_counted_again(client: httpx.AsyncClient) -> None:
    first = await submit(client, user_id=9, score=10, session_id="match-1")
    retry = await submit(client, user_id=9, score=10, session_id="match-1")

    assert retry.status_code == 200
    assert retry.json()["duplicate"] is True
    assert retry.json()["event_id"] == first.json()["event_id"]
    assert (await client.get("/api/leaderboard/rank/9")).json()["total_score"] == 10


async def test_ties_share_a_rank_in_top_rank_and_around(client: httpx.AsyncClient) -> None:
    for user_id, score in [(1, 10), (2, 30), (3, 30), (4, 20), (5, 30)]:
        await submit(client, user_id=user_id, score=score)

    top = (await client.get("/api/leaderboard/top", params={"limit": 5})).json()
    around = (await client.get("/api/leaderboard/around/4", params={"n": 1})).json()

    assert [(e["rank"], e["total_score"]) for e in top] == [
        (1, 30),
        (1, 30),
        (1, 30),
        (4, 20),
        (5, 10),
    ]
    assert (await client.get("/api/leaderboard/rank/3")).json()["rank"] == 1
    assert [(e["rank"], e["user_id"]) for e in around][1:] == [(4, 4), (5, 1)]
    assert around[0]["rank"] == 1


async def test_mode_boards_count_only_their_sessions(client: httpx.AsyncClient) -> None:
    await submit(client, user_id=1, score=5, game_mode="solo")
    await submit(client, user_id=1, score=7, game_mode="team")
    await submit(client, user_id=2, score=6, game_mode="team")

    solo = (await client.get("/api/leaderboard/rank/1", params={"mode": "solo"})).json()
    team = (await client.get("/api/leaderboard/top", params={"mode": "team"})).json()
    overall = (await client.get("/api/leaderboard/rank/1")).json()

    assert (solo["total_score"], solo["rank"]) == (5, 1)
    assert [(e["user_id"], e["total_score"]) for e in team] == [(1, 7), (2, 6)]
    assert overall["total_score"] == 12


async def test_unknown_player_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/leaderboard/rank/424242")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404
    assert response.json()["detail"] == "player 424242 has no score in the leaderboard"


async def test_a_404_names_the_game_mode_not_an_internal_key(client: httpx.AsyncClient) -> None:
    for path in ("rank", "around"):
        response = await client.get(f"/api/leaderboard/{path}/424242?mode=solo")
        assert response.status_code == 404
        assert response.json()["detail"] == "player 424242 has no score in game mode solo"


async def test_reads_answer_503_and_not_ready_while_the_boards_are_wiped(
    client: httpx.AsyncClient, redis: Redis, settings: Settings, worker: Worker
) -> None:
    await submit(client, user_id=1, score=5)
    await redis.delete(Keys(settings.namespace).marker)

    rank = await client.get("/api/leaderboard/rank/1")
    ready = await client.get("/readyz")
    accepted = await submit(client, user_id=1, score=5)

    assert rank.status_code == 503 and rank.headers["retry-after"] == "1"
    assert ready.status_code == 503 and ready.json()["boards_loaded"] is False
    assert accepted.status_code == 200
    assert (accepted.json()["total_score"], accepted.json()["rank"]) == (None, None)


async def test_readyz_reports_the_backlog(client: httpx.AsyncClient, worker: Worker) -> None:
    await submit(client, user_id=1, score=5)
    before = (await client.get("/readyz")).json()
    await worker.drain()
    after = (await client.get("/readyz")).json()

    assert (before["backlog"], after["backlog"]) == (1, 0)
    assert after["ready"] is True


async def test_full_backlog_answers_503_with_retry_after(
    make_settings: object, redis: Redis, settings: Settings, client: httpx.AsyncClient
) -> None:
    # The limit is the stream's length: fill it past the limit of a second app's settings.
    for user_id in range(1, 4):
        await submit(client, user_id=user_id, score=1)
    from ranker.api.app import create_app

    small = settings.model_copy(update={"max_backlog": 3})
    app = create_app(small)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://r", headers=auth_headers()
        ) as http:
            refused = await submit(http, user_id=1, score=1)
            retry = await submit(http, user_id=1, score=1, session_id="x")

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == str(small.retry_after_s)
    assert retry.status_code == 503
    assert await redis.xlen(Keys(settings.namespace).events) == 3


async def test_openapi_describes_every_route(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()

    assert set(spec["paths"]) >= {
        "/api/leaderboard/submit",
        "/api/leaderboard/top",
        "/api/leaderboard/rank/{user_id}",
        "/healthz",
        "/readyz",
    }
    assert "SubmitRequest" in spec["components"]["schemas"]


async def test_web_page_and_metrics_are_served(client: httpx.AsyncClient) -> None:
    await submit(client, user_id=1, score=1)
    page = await client.get("/")
    metrics = await client.get("/metrics")

    assert page.status_code == 200 and "<table" in page.text
    assert 'ranker_submissions_total{outcome="accepted"}' in metrics.text


async def test_a_trailing_slash_is_a_404_problem_not_a_redirect(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/leaderboard/rank/0/")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_boards_are_listed_with_their_period_and_members(
    client: httpx.AsyncClient,
) -> None:
    for user_id, mode in [(1, "solo"), (2, "solo"), (3, "team"), (1, "team")]:
        assert (await submit(client, user_id=user_id, score=5, game_mode=mode)).is_success

    listed = await client.get("/api/boards")
    assert listed.status_code == 200, listed.text
    boards = {board["id"]: board for board in listed.json()["boards"]}
    assert list(boards) == ["global", "mode-solo", "mode-team"]
    assert {b: boards[b]["members"] for b in boards} == {
        "global": 3,
        "mode-solo": 2,
        "mode-team": 2,
    }
    assert boards["mode-solo"] | {"members": None} == {
        "id": "mode-solo",
        "title": "solo",
        "operator": "sum",
        "order": "desc",
        "reset": "never",
        "timezone": "UTC",
        "game_mode": "solo",
        "retain_periods": 0,
        "state": "live",
        "period": {"id": "all", "starts_at": None, "ends_at": None},
        "members": None,
    }
    one = await client.get("/api/boards/mode-team")
    assert one.status_code == 200 and one.json() == boards["mode-team"]

    missing = await client.get("/api/boards/weekly-best")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert (await client.get("/api/boards?x=1")).status_code == 422
