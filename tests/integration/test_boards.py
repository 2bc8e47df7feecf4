"""Board definitions through the HTTP interface: created, listed, changed, refused, deleted,
counted on by submissions and read back, on real Redis and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.worker import Worker
from ranker.settings import Settings
from tests.fixtures.ranker import (
    ADMIN_KEY,
    READ_KEY,
    Processes,
    api_process,
    auth_headers,
    wait_for,
)

#: The core tests run on the single server and on the local Redis Cluster.
pytestmark = pytest.mark.cluster

ADMIN = auth_headers(ADMIN_KEY)
WEEKLY_BEST = {
    "title": "Best run this week",
    "operator": "best",
    "order": "desc",
    "reset": "weekly",
    "timezone": "UTC",
    "game_mode": None,
    "retain_periods": 8,
}


async def put(client: httpx.AsyncClient, board_id: str, **body: Any) -> httpx.Response:
    return await client.put(f"/api/boards/{board_id}", json=body, headers=ADMIN)


async def submit(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    response = await client.post("/api/leaderboard/submit", json=body)
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
async def second(settings: Settings, loaded: None) -> AsyncIterator[httpx.AsyncClient]:
    """Another API process of the deployment (its own app, catalog and Redis client)."""
    async with api_process(settings) as http:
        yield http


async def test_a_board_is_created_listed_changed_and_deleted(client: httpx.AsyncClient) -> None:
    created = await put(client, "weekly-best", **WEEKLY_BEST)
    again = await put(client, "weekly-best", **WEEKLY_BEST)
    retitled = await put(
        client, "weekly-best", **{**WEEKLY_BEST, "title": "Top runs", "retain_periods": 2}
    )

    assert created.status_code == 201, created.text
    assert created.json()["id"] == "weekly-best"
    assert created.json()["period"]["id"].count("-W") == 1
    assert created.json()["members"] == 0
    assert again.status_code == 200
    assert retitled.status_code == 200
    assert (retitled.json()["title"], retitled.json()["retain_periods"]) == ("Top runs", 2)
    listed = (await client.get("/api/boards")).json()["boards"]
    assert [b["id"] for b in listed][-1] == "weekly-best"
    assert listed[0]["id"] == "global"

    deleted = await client.delete("/api/boards/weekly-best", headers=ADMIN)

    assert deleted.status_code == 200, deleted.text
    assert "weekly-best" not in [
        b["id"] for b in (await client.get("/api/boards")).json()["boards"]
    ]
    kept = await client.get("/api/boards/weekly-best")
    assert kept.status_code == 200 and kept.json()["state"] == "deleted"
    refused = await put(client, "weekly-best", **WEEKLY_BEST)
    assert refused.status_code == 409
    assert "purge" in refused.json()["detail"]


@pytest.mark.parametrize("field", ["operator", "order", "reset", "timezone", "game_mode"])
async def test_a_fixed_field_cannot_change(client: httpx.AsyncClient, field: str) -> None:
    other = {
        "operator": "sum",
        "order": "asc",
        "reset": "daily",
        "timezone": "Europe/Paris",
        "game_mode": "solo",
    }
    assert (await put(client, "weekly-best", **WEEKLY_BEST)).status_code == 201

    response = await put(client, "weekly-best", **{**WEEKLY_BEST, field: other[field]})

    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]
    board = (await client.get("/api/boards/weekly-best")).json()
    assert board[field] == WEEKLY_BEST[field]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"operator": "max"}, "operator"),
        ({"order": "up"}, "order"),
        ({"reset": "hourly"}, "reset"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"game_mode": "chess"}, "game_mode"),
        ({"retain_periods": -1}, "retain_periods"),
        ({"retain_periods": "8"}, "retain_periods"),
        ({"title": "x" * 101}, "title"),
        ({"title": "bad\u0000title"}, "title"),
        ({"colour": "red"}, "colour"),
        ({"id": "another"}, "id"),
        ({"backfill": "yes"}, "backfill"),
    ],
)
async def test_a_bad_definition_is_refused_naming_the_field(
    client: httpx.AsyncClient, redis: Redis, settings: Settings, body: dict[str, Any], field: str
) -> None:
    response = await put(client, "weekly-best", **{**WEEKLY_BEST, **body})

    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert (await client.get("/api/boards/weekly-best")).status_code == 404


async def test_only_an_admin_key_changes_boards(client: httpx.AsyncClient) -> None:
    write = await client.put("/api/boards/weekly-best", json=WEEKLY_BEST)
    read = await client.put(
        "/api/boards/weekly-best", json=WEEKLY_BEST, headers=auth_headers(READ_KEY)
    )
    anonymous = await client.delete("/api/boards/weekly-best", headers={"Authorization": ""})

    assert (write.status_code, read.status_code) == (403, 403)
    assert anonymous.status_code == 401
    assert (await client.get("/api/boards/weekly-best")).status_code == 404


@pytest.mark.parametrize("board_id", ["global", "mode-solo", "mode-anything"])
async def test_built_in_boards_cannot_be_changed_or_deleted(
    client: httpx.AsyncClient, board_id: str
) -> None:
    changed = await put(client, board_id, title="mine")
    deleted = await client.delete(f"/api/boards/{board_id}", headers=ADMIN)

    assert changed.status_code == 409, changed.text
    assert (
        deleted.status_code == 409
        if board_id != "mode-anything"
        else deleted.status_code in (404, 409)
    )


async def test_a_new_board_counts_the_next_session_on_every_api_process(
    client: httpx.AsyncClient, second: httpx.AsyncClient
) -> None:
    await submit(second, user_id=1, score=10)  # the second process has read the boards

    assert (await put(client, "weekly-best", **WEEKLY_BEST)).status_code == 201
    counted = await submit(second, user_id=1, score=30)

    # Submit compares the definitions' version in its script: the very next session counts.
    assert "weekly-best" in counted.json()["boards"], counted.json()
    standing = counted.json()["boards"]["weekly-best"]
    assert (standing["score"], standing["rank"]) == (30, 1)

    async def listed() -> bool:
        boards = (await second.get("/api/boards")).json()["boards"]
        return "weekly-best" in [b["id"] for b in boards]

    await wait_for(listed, 1.0, "the second process to list the new board")
    assert (await client.delete("/api/boards/weekly-best", headers=ADMIN)).status_code == 200
    after = await submit(second, user_id=1, score=50)
    assert "weekly-best" not in after.json()["boards"]


async def test_a_best_board_keeps_the_best_session_and_reads_it_back(
    client: httpx.AsyncClient, worker: Worker, pool: AsyncConnectionPool
) -> None:
    assert (await put(client, "weekly-best", **WEEKLY_BEST)).status_code == 201
    assert (
        await put(client, "fastest", **{**WEEKLY_BEST, "order": "asc", "reset": "never"})
    ).status_code == 201
    for user_id, score in [(1, 40), (2, 70), (1, 90), (3, 70), (1, 10)]:
        await submit(client, user_id=user_id, score=score)

    top = (await client.get("/api/boards/weekly-best/top", params={"limit": 2})).json()
    fastest = (await client.get("/api/boards/fastest/top")).json()
    player = (await client.get("/api/boards/weekly-best/players/3")).json()

    assert [(e["user_id"], e["score"], e["rank"]) for e in top["entries"]] == [
        (1, 90, 1),
        (3, 70, 2),
    ]
    assert top["members"] == 3 and top["next_cursor"] is not None
    rest = (
        await client.get("/api/boards/weekly-best/top", params={"cursor": top["next_cursor"]})
    ).json()
    assert [(e["user_id"], e["rank"]) for e in rest["entries"]] == [(2, 2)]
    assert [(e["user_id"], e["score"], e["rank"]) for e in fastest["entries"]] == [
        (1, 10, 1),
        (2, 70, 2),
        (3, 70, 2),
    ]
    assert (player["rank"], player["members"], player["percentile"]) == (2, 3, 33.33)

    await worker.drain()
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT board, user_id, score FROM board_scores"
            " WHERE board IN ('weekly-best', 'fastest')"
            " ORDER BY board, user_id"
        )
        rows = await cur.fetchall()
    assert rows == [
        ("fastest", 1, 10),
        ("fastest", 2, 70),
        ("fastest", 3, 70),
        ("weekly-best", 1, 90),
        ("weekly-best", 2, 70),
        ("weekly-best", 3, 70),
    ]


async def test_reads_of_a_period_refuse_bad_names_and_cursors(client: httpx.AsyncClient) -> None:
    assert (await put(client, "weekly-best", **WEEKLY_BEST)).status_code == 201
    await submit(client, user_id=1, score=5)
    page = (await client.get("/api/boards/global/top", params={"limit": 1})).json()

    bad_period = await client.get("/api/boards/weekly-best/top", params={"period": "last-week"})
    other_kind = await client.get("/api/boards/weekly-best/top", params={"period": "2026-12-01"})
    future = await client.get("/api/boards/weekly-best/top", params={"period": "2999-W01"})
    other_board = await client.get(
        "/api/boards/weekly-best/top", params={"cursor": page["next_cursor"] or "x"}
    )
    mangled = await client.get("/api/boards/weekly-best/top", params={"cursor": "!!"})
    unknown = await client.get("/api/boards/nope/top")
    absent = await client.get("/api/boards/weekly-best/players/999")

    assert bad_period.status_code == 422 and bad_period.json()["errors"][0]["field"] == "period"
    assert future.status_code == 404
    assert (
        other_kind.status_code == 404 and "has no period 2026-12-01" in other_kind.json()["detail"]
    )
    assert other_board.status_code == 400 and other_board.json()["errors"][0]["field"] == "cursor"
    assert mangled.status_code == 400 and mangled.json()["errors"][0]["field"] == "cursor"
    assert unknown.status_code == 404
    assert absent.status_code == 404 and "board:" not in absent.json()["detail"]


async def test_lookup_gives_friends_in_board_order(client: httpx.AsyncClient) -> None:
    for user_id, score in [(1, 10), (2, 30), (3, 20), (4, 30)]:
        await submit(client, user_id=user_id, score=score)

    found = await client.post("/api/boards/global/lookup", json={"user_ids": [3, 9, 4, 1, 9]})

    assert found.status_code == 200, found.text
    body = found.json()
    assert [(e["user_id"], e["rank"]) for e in body["entries"]] == [(4, 1), (3, 3), (1, 4)]
    assert body["missing"] == [9]


async def test_a_purged_board_leaves_postgresql_and_its_id_can_be_used_again(
    client: httpx.AsyncClient, worker: Worker, pool: AsyncConnectionPool
) -> None:
    assert (await put(client, "weekly-best", **WEEKLY_BEST)).status_code == 201
    await submit(client, user_id=1, score=5)
    await worker.drain()

    purged = await client.delete("/api/boards/weekly-best", params={"purge": "true"}, headers=ADMIN)
    assert purged.status_code == 200
    assert (await client.get("/api/boards/weekly-best")).status_code == 404
    await worker.drain()

    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM board_scores WHERE board = 'weekly-best'")
        assert await cur.fetchone() == (0,)
    again = await put(client, "weekly-best", **{**WEEKLY_BEST, "operator": "sum"})
    assert again.status_code == 201, again.text
    assert again.json()["members"] == 0


BOARDS_FILE = """
[[board]]
id = "daily-best"
title = "Best run today"
operator = "best"
reset = "daily"
timezone = "Europe/Paris"

[[board]]
id = "time-trial"
operator = "best"
order = "asc"
"""


async def test_the_boards_file_applies_at_start_up_and_a_contradiction_stops_the_service(
    make_settings: Callable[..., Settings],
    processes: Processes,
    redis: Redis,
    tmp_path: Path,
) -> None:
    path = tmp_path / "boards.toml"
    path.write_text(BOARDS_FILE)
    settings = make_settings(boards_file=path)

    url, _ = await processes.serve(settings=settings)  # its watchdog loads the boards

    async with httpx.AsyncClient(base_url=url) as http:

        async def loaded() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await wait_for(loaded, 30, "the boards to be loaded")
        listed = (await http.get("/api/boards")).json()["boards"]
    boards = {board["id"]: board for board in listed}
    assert {"daily-best", "time-trial"} <= set(boards)
    assert boards["daily-best"]["timezone"] == "Europe/Paris"
    assert boards["time-trial"]["order"] == "asc"
    processes.stop_all()

    path.write_text(BOARDS_FILE.replace('order = "asc"', 'order = "desc"'))
    refused = processes.run("serve", "--no-worker", "--port", "1", settings=settings)

    assert refused.returncode == 1
    reason = refused.stderr.strip().splitlines()[-1]
    assert reason.startswith("ranker serve: boards file: board time-trial: order"), refused.stderr
    assert "Traceback" not in refused.stderr


async def test_a_board_that_fills_answers_503_until_it_is_live(client: httpx.AsyncClient) -> None:
    # No watchdog runs beside this app: the board stays filling.
    created = await put(client, "weekly-best", **WEEKLY_BEST, backfill=True)
    counted = await submit(client, user_id=1, score=5)

    assert created.status_code == 201 and created.json()["state"] == "filling"
    assert "weekly-best" in counted.json()["boards"]  # sessions after it count meanwhile
    for path in ["top", "players/1", "around/1"]:
        response = await client.get(f"/api/boards/weekly-best/{path}")
        assert response.status_code == 503, (path, response.text)
        assert response.headers["retry-after"] == "1"
    assert (await client.get("/api/boards/weekly-best")).json()["state"] == "filling"
