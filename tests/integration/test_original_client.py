"""The original service's own smoke test (its tests/test_main.py: submit, top, rank with httpx),
run against a real ``ranker serve`` over HTTP, as its clients call it, with the one change
ranker asks of them: a key on submit. Its assertions are the original's: what those clients
read of each answer, field by field."""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx

from ranker.settings import Settings
from tests.fixtures.ranker import Processes, auth_headers, wait_for


async def test_the_original_clients_submit_top_and_rank_unchanged(
    processes: Processes, make_settings: Callable[..., Settings]
) -> None:
    url, _ = await processes.serve(settings=make_settings())
    async with httpx.AsyncClient(base_url=url) as client:

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await wait_for(ready, 30, "the service to load its boards")
        user_id = random.randint(1, 1_000_000)

        # test_submit_score
        response = await client.post(
            "/api/leaderboard/submit",
            json={"user_id": user_id, "score": 500},
            headers=auth_headers(),
        )
        assert response.status_code == 200
        assert response.json()["message"] == "Score submitted successfully"

        # test_get_top_players
        response = await client.get("/api/leaderboard/top")
        assert response.status_code == 200
        top = response.json()
        assert isinstance(top, list)
        assert top, "the submitted player is on the board"
        for player in top:
            assert {"user_id", "total_score", "rank"} <= player.keys()
        assert any(p["user_id"] == user_id and p["total_score"] == 500 for p in top)

        # test_get_player_rank
        response = await client.get(f"/api/leaderboard/rank/{user_id}")
        assert response.status_code == 200
        data = response.json()
        assert data["user_id"] == user_id
        assert data["total_score"] == 500
        assert data["rank"] >= 1

        # Its UI's rank lookup of a player who never played: a clear 404, not a 500.
        response = await client.get("/api/leaderboard/rank/999999999")
        assert response.status_code == 404
