"""Rebuild: boards reloaded from PostgreSQL when Redis comes back empty, and ``ranker rebuild``
while submissions keep flowing loses none and counts none twice."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence import repository
from persistence.rebuild import Rebuild
from persistence.seed import seed
from persistence.service import trim_leftovers
from persistence.stream import unpersisted
from persistence.verify import Verifier, wait_drained
from persistence.worker import Worker
from ranker.catalog import Catalog
from ranker.definitions import BoardDefinition
from ranker.dev import servers as devservers
from ranker.keys import WORKER_GROUP, Keys
from ranker.models import SubmitRequest
from ranker.ranking import Ranking
from ranker.scripts import Scripts
from ranker.settings import Settings
from ranker.shards import shards_of
from tests.fixtures.ranker import (
    DEFINED_FIVE,
    FIVE_BOARDS,
    Processes,
    auth_headers,
    boards_counted,
    wait_for,
)

#: The core tests run on the single server and on the local Redis Cluster.
pytestmark = pytest.mark.cluster


@pytest.fixture
def own_redis_url() -> Iterator[str]:
    """A Redis server of this test's own, so that it may be flushed."""
    with devservers.redis_server() as server:
        yield server.url


@contextlib.asynccontextmanager
async def http(url: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        url, connector=aiohttp.TCPConnector(limit=32), headers=auth_headers()
    ) as session:
        yield session


async def get(session: aiohttp.ClientSession, path: str) -> tuple[int, object]:
    async with session.get(path) as response:
        return response.status, await response.json(content_type=None)


async def assert_ranks_match_sql(
    session: aiohttp.ClientSession, pool: AsyncConnectionPool, settings: Settings
) -> int:
    """Every player's rank on every board, through the API, equals SQL's RANK(); returns how
    many were compared."""
    compared = 0
    for board in settings.boards:
        async with pool.connection() as conn:
            expected = await repository.select_sql_ranks(conn, board.replace(":", "-"))
        query = "" if board == "global" else f"?mode={board.removeprefix('mode:')}"

        async def check(user_id: int, total: int, rank: int, query: str = query) -> None:
            status, body = await get(session, f"/api/leaderboard/rank/{user_id}{query}")
            assert status == 200
            assert body == {
                "user_id": user_id,
                "total_score": total,
                "rank": rank,
                "username": f"user_{user_id}",  # as the seed names its players
            }

        await asyncio.gather(*(check(u, t, r) for u, (t, r) in expected.items()))
        compared += len(expected)
    return compared


async def test_service_restarted_on_an_empty_redis_is_not_ready_until_rebuilt(
    make_settings: Callable[..., Settings],
    own_redis_url: str,
    processes: Processes,
    pool: AsyncConnectionPool,
) -> None:
    settings = make_settings(redis_url=own_redis_url)
    processes.settings = settings
    keys = Keys(settings.namespace)
    await seed(settings, pool, players=1_500, sessions=6_000)
    redis = Redis.from_url(own_redis_url)
    try:
        # Another rebuild holds the flag: the restarted service must wait for the boards.
        await redis.set(keys.rebuild_flag, "someone-else", px=60_000)
        url, _ = await processes.serve()
        async with http(url) as session:
            for _ in range(5):
                status, body = await get(session, "/readyz")
                assert (status, body["boards_loaded"]) == (503, False)  # type: ignore[index]
                assert (await get(session, "/api/leaderboard/top"))[0] == 503

            await redis.delete(keys.rebuild_flag)

            async def ready() -> bool:
                return (await get(session, "/readyz"))[0] == 200

            await wait_for(ready, 30, "the service to rebuild its boards")
            compared = await assert_ranks_match_sql(session, pool, settings)

            # Wiped while serving: the watchdog notices and rebuilds again.
            await redis.flushall()
            await wait_for(ready, 30, "the boards to be rebuilt after FLUSHALL")
            assert await assert_ranks_match_sql(session, pool, settings) == compared
    finally:
        await redis.aclose()
    assert compared > 1_500


@pytest.mark.sharded  # each board shard rebuilt in turn, while the flow goes on
async def test_rebuilds_during_a_flow_of_submissions_lose_none_and_count_none_twice(
    settings: Settings,
    processes: Processes,
    redis: Redis,
    pool: AsyncConnectionPool,
) -> None:
    await seed(settings, pool, players=2_000, sessions=8_000)
    five = settings.model_copy(update={"boards_file": FIVE_BOARDS})
    url, _ = await processes.serve(settings=five)  # its watchdog's rebuild may overlap ours
    accepted: list[str] = []
    flowing = asyncio.Event()

    async def flow(session: aiohttp.ClientSession, index: int) -> None:
        rng = random.Random(index)
        for n in range(200):
            body = {
                "user_id": rng.randint(1, 2_500),
                "score": rng.randint(1, 50),
                "game_mode": rng.choice(["solo", "team"]),
                "session_id": f"f{index}-{n}",
            }
            async with session.post("/api/leaderboard/submit", json=body) as response:
                assert response.status == 200, await response.text()
                accepted.append((await response.json())["event_id"])
            flowing.set()

    async def rebuilds() -> int:
        await flowing.wait()
        done = 0
        for _ in range(3):
            result = await asyncio.to_thread(processes.run, "rebuild")
            assert result.returncode == 0, result.stderr
            done += 1
        return done

    async with http(url) as session:
        flows = asyncio.gather(*(flow(session, i) for i in range(32)))
        rebuilt, _ = await asyncio.gather(rebuilds(), flows)

    await wait_drained(redis, shards_of(settings.namespace, settings.board_shards), 60)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_id::text FROM game_sessions WHERE session_id NOT LIKE 'seed-%%'"
        )
        stored = Counter(row[0] for row in await cur.fetchall())
    assert rebuilt == 3
    assert stored == Counter(accepted)
    async with pool.connection() as conn:
        assert DEFINED_FIVE <= await boards_counted(conn)  # the flow counted on five boards
    assert max(stored.values()) == 1
    result = processes.run("verify", "--deep")
    assert result.returncode == 0, result.stdout + result.stderr


class Interleaved(Rebuild):
    """A rebuild that runs a hook once the flag is set (before the snapshot) and another
    after the snapshot and the stream were read (before the swap)."""

    def __init__(
        self, *args: object, after_flag: Callable[[], object], before_swap: Callable[[], object]
    ) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.after_flag = after_flag
        self.before_swap = before_swap

    async def _begin(self, generation: str, wait_s: float = 0.0) -> None:
        await super()._begin(generation, wait_s)
        await self.after_flag()  # type: ignore[misc]

    async def _load(self, generation: str) -> tuple[int, int, int, int]:
        counts = await super()._load(generation)
        await self.before_swap()  # type: ignore[misc]
        return counts


async def test_each_case_of_the_rebuild_protocol_counts_once(
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
    loaded: None,
) -> None:
    # Claims only after a minute: the stalled consumer keeps what it read for this test.
    settings = make_settings(claim_idle_ms=60_000)
    keys = Keys(settings.namespace)
    ranking = Ranking(redis, settings)
    worker = Worker(settings, redis, pool)

    async def submit(user_id: int, score: int) -> None:
        await ranking.submit(SubmitRequest(user_id=user_id, score=score, game_mode="solo"))

    await submit(1, 10)  # before the flag, persisted: in the snapshot only
    await worker.drain()
    await submit(2, 20)  # before the flag, read by a stalled worker, not persisted: added
    stalled = await redis.xreadgroup(WORKER_GROUP, "stalled", {keys.events: ">"}, count=10)
    assert len(stalled[0][1]) == 1

    async def after_flag() -> None:
        await submit(3, 30)  # tagged, persisted before the snapshot: subtracted once
        await worker.drain()
        await submit(4, 40)  # tagged, not persisted: in the delta only

    async def before_swap() -> None:
        await submit(5, 50)  # after the snapshot: delta only, persisted later
        await worker.drain()

    report = await Interleaved(
        settings, redis, pool, after_flag=after_flag, before_swap=before_swap
    ).run()
    await Worker(settings, redis, pool, consumer="stalled").drain()  # it wakes up at last
    await worker.drain()

    totals = {
        int(m): int(s) for m, s in await redis.zrange(keys.board("global"), 0, -1, withscores=True)
    }
    assert totals == {1: 10, 2: 20, 3: 30, 4: 40, 5: 50}
    assert (report.stream_added, report.stream_subtracted) == (1, 1)
    assert (await Verifier(settings, redis, pool).run()).ok
    assert await redis.xlen(keys.events) == 0


async def test_the_rebuild_protocol_keeps_a_best_and_the_last_whatever_the_interleaving(
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
    loaded: None,
) -> None:
    # One player through every case of the protocol, on a board of each op. Re-applying an
    # entry must not change a best, and a last must end with the latest session's score: also
    # when an older session was left unpersisted by a stalled worker while a newer one is in S.
    settings = make_settings(claim_idle_ms=60_000)
    keys = Keys(settings.namespace)
    catalog = Catalog(redis, settings)
    for board in (
        BoardDefinition(id="high", operator="best", order="desc"),
        BoardDefinition(id="low", operator="best", order="asc"),
        BoardDefinition(id="latest", operator="last"),
    ):
        await catalog.put(board)
    ranking = Ranking(redis, settings, catalog=catalog)
    worker = Worker(settings, redis, pool)

    async def submit(score: int) -> None:
        await ranking.submit(SubmitRequest(user_id=1, score=score, game_mode="solo"))

    await submit(10)  # before the flag, persisted: in S
    await worker.drain()
    await submit(70)  # before the flag, taken by a stalled worker: not in S, applied
    stalled = await redis.xreadgroup(WORKER_GROUP, "stalled", {keys.events: ">"}, count=10)
    assert len(stalled[0][1]) == 1
    await submit(5)  # before the flag, persisted: in S, and newer than the 70 for `latest`
    await worker.drain()

    async def after_flag() -> None:
        await submit(30)  # tagged and in S: also in the delta
        await worker.drain()
        await submit(90)  # tagged, not persisted: in the delta only

    async def before_swap() -> None:
        await submit(40)  # after the snapshot: the delta only, persisted later
        await worker.drain()

    await Interleaved(settings, redis, pool, after_flag=after_flag, before_swap=before_swap).run()

    async def scores() -> dict[str, int]:
        found = {}
        for slot in ("global", "high/all", "low/all", "latest/all"):
            score = await redis.zscore(keys.board(slot), "1")
            found[slot] = int(score) if score is not None else None
        return found

    expected = {"global": 245, "high/all": 90, "low/all": 5, "latest/all": 40}
    assert await scores() == expected
    await Worker(settings, redis, pool, consumer="stalled").drain()  # it wakes up at last
    await worker.drain()
    assert await scores() == expected  # persisting the late entry changed no board
    assert (await Verifier(settings, redis, pool).run()).ok
    assert await Verifier(settings, redis, pool).deep() == []
    await Rebuild(settings, redis, pool).run()  # and from SQL alone, the same
    assert await scores() == expected


async def test_a_rebuild_whose_flag_expired_starts_again(
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
    worker: Worker,
    loaded: None,
) -> None:
    settings = make_settings()
    keys = Keys(settings.namespace)
    lost = {"times": 0}

    async def lose_flag_once() -> None:
        if lost["times"] == 0:
            lost["times"] += 1
            await redis.delete(keys.rebuild_flag)  # as if the TTL ran out mid-rebuild

    ranking = Ranking(redis, settings)
    await ranking.submit(SubmitRequest(user_id=1, score=5))
    await worker.drain()

    async def nothing() -> None:
        return None

    report = await Interleaved(
        settings, redis, pool, after_flag=nothing, before_swap=lose_flag_once
    ).run()

    assert report.attempts == 2
    assert await redis.zscore(keys.board("global"), "1") == 5


async def test_rebuild_command_waits_for_a_running_rebuild_or_says_it_is_busy(
    settings: Settings, processes: Processes, redis: Redis, loaded: None
) -> None:
    keys = Keys(settings.namespace)
    await redis.set(keys.rebuild_flag, "another-process", px=60_000)

    refused = processes.run("rebuild", "--wait-s", "0")
    waiting = processes.start("rebuild", "--wait-s", "60")

    async def is_waiting() -> bool:
        return "waiting up to 60 s" in processes.log_of(waiting)

    await wait_for(is_waiting, 30, "ranker rebuild to wait for the running rebuild")
    await redis.delete(keys.rebuild_flag)  # the other rebuild ends
    await asyncio.to_thread(waiting.wait, 60)
    output = processes.log_of(waiting)

    assert refused.returncode == 1
    assert refused.stderr.strip() == "ranker rebuild: another rebuild of this namespace is running"
    assert waiting.returncode == 0, output
    assert "rebuilt " in output


async def test_entries_a_dead_rebuild_kept_are_trimmed_but_never_unpersisted_ones(
    settings: Settings, redis: Redis, pool: AsyncConnectionPool, worker: Worker, loaded: None
) -> None:
    keys = Keys(settings.namespace)
    ranking = Ranking(redis, settings)
    await redis.set(keys.rebuild_flag, "died-after-its-swap", px=60_000)
    for n in range(30):
        await ranking.submit(SubmitRequest(user_id=1, score=1, session_id=f"k{n}"))
    await worker.drain()  # acknowledged, but kept: the flag is set
    await redis.delete(keys.rebuild_flag)  # the rebuild died before deleting them
    for n in range(5):
        await ranking.submit(SubmitRequest(user_id=2, score=1, session_id=f"u{n}"))
    kept = await redis.xlen(keys.events)

    await trim_leftovers(settings, redis, keys, Scripts.register(redis))

    assert kept == 35
    assert await redis.xlen(keys.events) == await unpersisted(redis, keys) == 5
