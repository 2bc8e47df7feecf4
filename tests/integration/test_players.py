"""Display names, on real Redis and PostgreSQL: set by a submission and by PUT /api/players
(the latest wins), NFKC-normalised and trimmed, refused with a 422 naming ``username`` that
stores nothing when invalid, shown (null when unknown) by every read that names a player,
durable in PostgreSQL, given back by a rebuild after a Redis wipe and by a rebuild that runs
before the worker persisted them, and read with a page for one HMGET."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.rebuild import Rebuild
from persistence.worker import Worker
from ranker.settings import Settings
from tests.fixtures.ranker import READ_KEY, auth_headers, namespace_keys, snapshot

SUBMIT = "/api/leaderboard/submit"
JSON = {"content-type": "application/json"}
BOARDS = ("global", "mode-solo")
#: Three players of the solo mode: two named (one by PUT, one by a submission), one never.
NAMES: dict[int, str | None] = {1: "Alice", 2: "Bob", 3: None}
SCORES = {1: 30, 2: 20, 3: 10}


async def submit(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    response = await client.post(SUBMIT, json=body)
    assert response.status_code == 200, response.text
    return response


async def put_name(client: httpx.AsyncClient, user_id: int, username: str) -> httpx.Response:
    response = await client.put(f"/api/players/{user_id}", json={"username": username})
    assert response.status_code == 200, response.text
    assert response.json() == {"user_id": user_id, "username": response.json()["username"]}
    return response


async def name_of(client: httpx.AsyncClient, user_id: int) -> str | None:
    """The name GET /api/players gives a player (the key is there, null when unknown)."""
    response = await client.get(f"/api/players/{user_id}")
    assert response.status_code == 200, response.text
    name: str | None = response.json()["username"]
    return name


async def sql_names(pool: AsyncConnectionPool) -> dict[int, str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT user_id, username FROM players WHERE username IS NOT NULL")
        return {user_id: name for user_id, name in await cur.fetchall()}


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, (path, response.text)
    return response.json()


async def names_read(client: httpx.AsyncClient) -> dict[str, dict[int, set[str | None]]]:
    """``{read: {user: names it gave}}`` over every read that names a player of ``NAMES``."""
    seen: dict[str, dict[int, set[str | None]]] = {}

    def saw(read: str, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            seen.setdefault(read, {}).setdefault(entry["user_id"], set()).add(entry["username"])

    saw("top", await get(client, "/api/leaderboard/top"))
    saw("top solo", await get(client, "/api/leaderboard/top", mode="solo"))
    for user in NAMES:
        rank = await get(client, f"/api/leaderboard/rank/{user}")
        assert set(rank) == {"user_id", "total_score", "rank", "username"}, rank
        saw("rank", [rank])
        saw("rank solo", [await get(client, f"/api/leaderboard/rank/{user}", mode="solo")])
        saw("around", await get(client, f"/api/leaderboard/around/{user}", n=2))
        saw("player", [await get(client, f"/api/players/{user}")])
        for board in BOARDS:
            path = f"/api/boards/{board}"
            saw(f"{board} player", [await get(client, f"{path}/players/{user}")])
            saw(f"{board} around", (await get(client, f"{path}/around/{user}", limit=3))["entries"])
    for board in BOARDS:
        saw(f"{board} top", (await get(client, f"/api/boards/{board}/top", limit=10))["entries"])
        wanted = {"user_ids": [*NAMES, 99]}
        found = await client.post(f"/api/boards/{board}/lookup", json=wanted)
        assert found.status_code == 200, found.text
        assert found.json()["missing"] == [99]
        saw(f"{board} lookup", found.json()["entries"])
    return seen


def expected_reads(names: Mapping[int, str | None]) -> dict[str, dict[int, set[str | None]]]:
    reads = ["top", "top solo", "rank", "rank solo", "around", "player"]
    reads += [f"{board} {read}" for board in BOARDS for read in ("player", "around", "top")]
    reads += [f"{board} lookup" for board in BOARDS]
    return {read: {user: {name} for user, name in names.items()} for read in reads}


async def three_players(client: httpx.AsyncClient) -> None:
    """The players of ``NAMES`` on the solo boards: Alice named by PUT before she plays, Bob
    by his submission, player 3 never."""
    await put_name(client, 1, "Alice")
    await submit(client, user_id=1, score=SCORES[1])
    await submit(client, user_id=2, score=SCORES[2], username="Bob")
    await submit(client, user_id=3, score=SCORES[3])


@pytest.mark.cluster
@pytest.mark.sharded
async def test_a_name_is_set_by_submit_and_by_put_and_the_latest_wins(
    client: httpx.AsyncClient,
) -> None:
    unknown = await client.get("/api/players/1")
    assert unknown.status_code == 404, unknown.text
    assert unknown.headers["content-type"] == "application/problem+json"

    named = await put_name(client, 1, "First")
    assert named.json() == {"user_id": 1, "username": "First"}
    profile = await get(client, "/api/players/1")
    assert (profile["username"], profile["banned"], profile["boards"]) == ("First", False, {})

    await submit(client, user_id=1, score=5, username="Second")
    assert await name_of(client, 1) == "Second"
    await put_name(client, 1, "Third")
    assert await name_of(client, 1) == "Third"
    await submit(client, user_id=1, score=5)  # no name: the name stays
    await submit(client, user_id=1, score=5, username=None)  # null: as if absent
    assert await name_of(client, 1) == "Third"
    assert (await get(client, "/api/leaderboard/rank/1"))["total_score"] == 15

    await submit(client, user_id=2, score=1, username="Third")  # names need not be unique
    top = await get(client, "/api/leaderboard/top")
    assert [(e["user_id"], e["username"]) for e in top] == [(1, "Third"), (2, "Third")]


@pytest.mark.cluster
async def test_a_name_is_set_only_with_the_write_key(client: httpx.AsyncClient) -> None:
    body = {"username": "Mallory"}
    read_only = await client.put("/api/players/1", json=body, headers=auth_headers(READ_KEY))
    anonymous = client.build_request("PUT", "/api/players/1", json=body)
    del anonymous.headers["authorization"]
    keyless = await client.send(anonymous)

    assert read_only.status_code == 403, read_only.text
    assert keyless.status_code == 401, keyless.text
    assert (await client.get("/api/players/1")).status_code == 404


NORMALISED = [
    (" \uff21lice ", "Alice"),  # fullwidth A, spaces trimmed
    ("\ufb01", "fi"),  # the ligature
    ("\tBob\n", "Bob"),  # controls at the ends are trimmed, not refused
    ("e\u0301", "\u00e9"),  # composed
    ("\u216b", "XII"),  # the roman numeral twelve
    ("\uff53\uff41\uff4d\u3000\uff4c\uff45\uff45", "sam lee"),  # fullwidth, U+3000 space
    (" " * 40 + "a" * 32, "a" * 32),  # long only before the trim
    ("\ufb01" * 16, "fi" * 16),  # 32 characters once normalised
    ("Zoë 🎮", "Zoë 🎮"),  # kept as it is
]


@pytest.mark.cluster
@pytest.mark.parametrize("route", ["submit", "put"])
@pytest.mark.parametrize(("given", "stored"), NORMALISED, ids=[n for _, n in NORMALISED])
async def test_a_name_is_stored_normalised_and_trimmed(
    client: httpx.AsyncClient, route: str, given: str, stored: str
) -> None:
    if route == "put":
        answer = await put_name(client, 7, given)
        assert answer.json()["username"] == stored
    await submit(client, user_id=7, score=3, **({"username": given} if route == "submit" else {}))

    assert await name_of(client, 7) == stored
    assert (await get(client, "/api/leaderboard/top"))[0]["username"] == stored
    assert (await get(client, "/api/boards/global/players/7"))["username"] == stored


BAD_NAMES: list[tuple[str, object]] = [
    ("empty", ""),
    ("spaces", "   "),
    ("33 characters", "a" * 33),
    ("34 once normalised", "\ufb01" * 17),
    ("NUL (Cc)", "a\u0000b"),
    ("zero-width space (Cf)", "a\u200bb"),
    ("private use (Co)", "\ue000"),
    ("line separator (Zl)", "a\u2028b"),
    ("paragraph separator (Zp)", "a\u2029b"),
    ("a number", 5),
    ("a list", ["Alice"]),
    ("a boolean", True),
]
CASES = [(route, value) for route in ("submit", "put") for _, value in BAD_NAMES]
CASES.append(("put", None))
IDS = [f"{route} {what}" for route in ("submit", "put") for what, _ in BAD_NAMES] + ["put null"]


@pytest.mark.cluster
@pytest.mark.parametrize(("route", "bad"), CASES, ids=IDS)
async def test_an_invalid_name_is_a_422_naming_username_and_stores_nothing(
    client: httpx.AsyncClient,
    redis: Redis,
    pool: AsyncConnectionPool,
    settings: Settings,
    worker: Worker,
    route: str,
    bad: object,
) -> None:
    await submit(client, user_id=1, score=5, username="Before")
    await worker.drain()
    before = await snapshot(redis, pool, settings)
    if route == "submit":
        path, body = SUBMIT, {"user_id": 1, "score": 7, "username": bad}
        method = "POST"
    else:
        path, body, method = "/api/players/1", {"username": bad}, "PUT"

    # json.dumps escapes every non-ASCII character: a lone surrogate travels as \ud800.
    response = await client.request(method, path, content=json.dumps(body).encode(), headers=JSON)
    await worker.drain()

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert "username" in [error["field"] for error in problem["errors"]], problem
    await assert_nothing_changed(client, redis, pool, settings, before)


async def assert_nothing_changed(
    client: httpx.AsyncClient,
    redis: Redis,
    pool: AsyncConnectionPool,
    settings: Settings,
    before: dict[str, Any],
) -> None:
    assert await snapshot(redis, pool, settings) == before
    assert await name_of(client, 1) == "Before"
    assert (await get(client, "/api/leaderboard/rank/1"))["total_score"] == 5
    assert await sql_names(pool) == {1: "Before"}


@pytest.mark.cluster
@pytest.mark.sharded
async def test_every_read_naming_a_player_shows_the_name_or_null(
    client: httpx.AsyncClient,
) -> None:
    await three_players(client)

    reads = await names_read(client)

    assert reads == expected_reads(NAMES)
    top = await get(client, "/api/boards/global/top", limit=10)
    assert [(e["rank"], e["user_id"], e["score"]) for e in top["entries"]] == [
        (1, 1, 30),
        (2, 2, 20),
        (3, 3, 10),
    ]
    profile = await get(client, "/api/players/3")
    assert profile["username"] is None and set(BOARDS) <= set(profile["boards"])
    assert profile["boards"]["global"]["score"] == SCORES[3]


@pytest.mark.cluster
async def test_names_are_durable_in_postgresql_once_drained(
    client: httpx.AsyncClient, worker: Worker, pool: AsyncConnectionPool
) -> None:
    await three_players(client)
    await put_name(client, 4, "Dora")
    assert await sql_names(pool) == {}

    await worker.drain()
    first = await sql_names(pool)
    await put_name(client, 4, "Dorothea")
    await submit(client, user_id=2, score=1, username="Robert")
    await worker.drain()

    assert first == {1: "Alice", 2: "Bob", 4: "Dora"}
    assert await sql_names(pool) == {1: "Alice", 2: "Robert", 4: "Dorothea"}
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM players WHERE username IS NOT NULL")
        assert await cur.fetchone() == (3,)
        cur = await conn.execute("SELECT min(name_seq) FROM players WHERE username IS NOT NULL")
        row = await cur.fetchone()
        assert row is not None and row[0] > 0


@pytest.mark.cluster
@pytest.mark.sharded
async def test_names_are_restored_by_a_rebuild_after_a_redis_wipe(
    client: httpx.AsyncClient,
    worker: Worker,
    settings: Settings,
    redis: Redis,
    pool: AsyncConnectionPool,
) -> None:
    await three_players(client)
    await put_name(client, 1, "Alicia")  # a change: the newest name must come back
    await worker.drain()
    named = {**NAMES, 1: "Alicia"}
    assert await names_read(client) == expected_reads(named)

    wiped = 0
    for key in await namespace_keys(redis, settings):
        wiped += await redis.delete(key)
    assert wiped > 0
    assert (await client.get("/api/leaderboard/top")).status_code == 503
    await Rebuild(settings, redis, pool).run()

    assert await names_read(client) == expected_reads(named)
    assert await sql_names(pool) == {1: "Alicia", 2: "Bob"}


@pytest.mark.cluster
async def test_a_name_still_in_the_stream_is_restored_by_a_rebuild_before_the_drain(
    client: httpx.AsyncClient,
    worker: Worker,
    settings: Settings,
    redis: Redis,
    pool: AsyncConnectionPool,
) -> None:
    await three_players(client)
    await worker.drain()
    await put_name(client, 1, "Alicia")  # in the stream, not persisted
    await submit(client, user_id=3, score=1, username="Carol")  # and a first name too
    assert await sql_names(pool) == {1: "Alice", 2: "Bob"}

    await Rebuild(settings, redis, pool).run()

    named = {1: "Alicia", 2: "Bob", 3: "Carol"}
    reads = await names_read(client)
    await worker.drain()
    assert reads == expected_reads(named)
    assert await sql_names(pool) == named
    assert await names_read(client) == expected_reads(named)


def calls(stats: dict[str, Any], command: str) -> int:
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.mark.parametrize(
    ("path", "entries_of"),
    [("/api/boards/global/top", "entries"), ("/api/leaderboard/top", None)],
    ids=["board top", "leaderboard top"],
)
async def test_a_page_of_a_hundred_named_players_is_one_script_with_one_hmget(
    client: httpx.AsyncClient, redis: Redis, path: str, entries_of: str | None
) -> None:
    players = 120
    for user in range(1, players + 1):
        await submit(client, user_id=user, score=user, username=f"player {user}")

    await redis.config_resetstat()
    response = await client.get(path, params={"limit": 100})
    stats: dict[str, Any] = await redis.info("commandstats")

    assert response.status_code == 200, response.text
    body = response.json()
    page = body[entries_of] if entries_of else body
    assert [(e["user_id"], e["username"]) for e in page] == [
        (user, f"player {user}") for user in range(players, players - 100, -1)
    ]
    assert calls(stats, "hmget") == 1, stats
    assert calls(stats, "evalsha") + calls(stats, "eval") == 1, stats
    assert calls(stats, "hget") == 0, stats


@pytest.mark.cluster
@pytest.mark.parametrize("route", ["submit", "put"])
async def test_a_lone_surrogate_is_not_json_here_a_400_naming_the_body(
    client: httpx.AsyncClient,
    redis: Redis,
    pool: AsyncConnectionPool,
    settings: Settings,
    worker: Worker,
    route: str,
) -> None:
    """A name with a lone surrogate escape (category Cs) is refused before any field is read:
    no UTF-8 text holds one, so the body is not JSON to ranker (400 naming ``body``), on both
    routes alike."""
    await submit(client, user_id=1, score=5, username="Before")
    await worker.drain()
    before = await snapshot(redis, pool, settings)
    body: dict[str, object] = {"username": "a\ud800b"}
    if route == "submit":
        body |= {"user_id": 1, "score": 7}
    path, method = (SUBMIT, "POST") if route == "submit" else ("/api/players/1", "PUT")

    response = await client.request(method, path, content=json.dumps(body).encode(), headers=JSON)
    await worker.drain()

    assert response.status_code == 400, response.text
    assert [error["field"] for error in response.json()["errors"]] == ["body"]
    await assert_nothing_changed(client, redis, pool, settings, before)
