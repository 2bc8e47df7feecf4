"""A primary of the Redis Cluster killed under load: a replica takes over, ranker recovers by
itself, and what it cost is measured (RELIABILITY.md, "Redis Cluster failover").

Both settings of ``RANKER_REDIS_MIN_REPLICAS_ACK``: with 0 an acknowledged submission is on the
primary only, and one that neither a replica nor the worker had when the primary died is lost;
with 1 a submission is acknowledged only once a replica has it, so none is. Game servers retry a
503 with the same session id, as they are told to, and every retry must count once.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from ranker.dev.servers import LocalCluster
from ranker.keys import Keys
from ranker.settings import Settings
from tests.fixtures.ranker import Processes, auth_headers, seeded_random, wait_for

SUBMITTERS = 6
READERS = 2
#: Load before the kill, and how long writes must flow again before the load stops.
BEFORE_S = 2.0
AFTER_S = 2.0
#: The most a failover may take here before the test gives up (the cluster's node timeout is
#: 1 s; redis-py learns the new layout on its next error).
RECOVERY_TIMEOUT_S = 45.0


@dataclass
class Load:
    """What the clients saw."""

    acknowledged: dict[str, tuple[int, int]] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    refusals: list[float] = field(default_factory=list)  # monotonic times of write 503s
    successes: list[float] = field(default_factory=list)  # monotonic times of write 200s
    bad: list[str] = field(default_factory=list)
    reads: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, status)
    done: asyncio.Event = field(default_factory=asyncio.Event)


async def submitter(http: httpx.AsyncClient, load: Load, rng: random.Random) -> None:
    """Submit new sessions, retrying each 503 (or a dropped connection) with the same session
    id until it is acknowledged, as a game server does."""
    while not load.done.is_set():
        session = {"user_id": rng.randint(1, 300), "score": rng.randint(1, 10_000)}
        session["session_id"] = uuid.uuid4().hex  # type: ignore[assignment]
        while not load.done.is_set():  # a refused session is given up once the load ends
            try:
                response = await http.post("/api/leaderboard/submit", json=session)
            except httpx.TransportError:
                load.refusals.append(time.monotonic())
                await asyncio.sleep(0.05)  # a backoff: the server went away mid-request
                continue
            load.statuses[response.status_code] += 1
            if response.status_code == 200:
                load.successes.append(time.monotonic())
                load.acknowledged[str(session["session_id"])] = (
                    int(session["user_id"]),
                    int(session["score"]),
                )
                break
            if response.status_code == 503 and response.headers.get("Retry-After"):
                load.refusals.append(time.monotonic())
                await asyncio.sleep(0.05)  # shorter than Retry-After: more samples of the gap
                continue
            load.bad.append(f"submit {response.status_code}: {response.text[:200]}")
            break


async def reader(http: httpx.AsyncClient, load: Load, rng: random.Random) -> None:
    while not load.done.is_set():
        for path in (
            "/api/leaderboard/top?limit=10",
            f"/api/leaderboard/rank/{rng.randint(1, 300)}",
        ):
            try:
                response = await http.get(path)
            except httpx.TransportError:
                continue
            load.statuses[response.status_code] += 1
            load.reads.append((time.monotonic(), response.status_code))
            if response.status_code not in (200, 404, 503):
                load.bad.append(f"GET {path} {response.status_code}: {response.text[:200]}")


async def stored(pool: AsyncConnectionPool, sessions: list[str]) -> Counter[str]:
    """How many rows PostgreSQL holds of each of ``sessions``."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT session_id FROM game_sessions WHERE session_id = ANY(%s)", (sessions,)
        )
        return Counter(row[0] for row in await cur.fetchall())


@pytest.mark.parametrize(
    ("acks", "replica_reads"), [(0, False), (1, True)], ids=["acks-0", "acks-1-replica-reads"]
)
async def test_a_primary_killed_under_load_fails_over_and_ranker_recovers_by_itself(
    acks: int,
    replica_reads: bool,
    own_redis_cluster: LocalCluster,
    make_settings: Callable[..., Settings],
    processes: Processes,
    pool: AsyncConnectionPool,
) -> None:
    cluster = own_redis_cluster
    settings = make_settings(
        redis_url=cluster.url,
        redis_min_replicas_ack=acks,
        read_from_replicas=replica_reads,
        redis_timeout_s=1.0,
    )
    keys = Keys(settings.namespace)
    url, _ = await processes.serve(settings=settings)
    rng = seeded_random()
    load = Load()
    async with httpx.AsyncClient(base_url=url, headers=auth_headers(), timeout=10) as http:

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await wait_for(ready, 30, "the service to load its boards")
        clients = [submitter(http, load, rng) for _ in range(SUBMITTERS)]
        clients += [reader(http, load, rng) for _ in range(READERS)]
        running = [asyncio.create_task(client) for client in clients]
        try:
            await asyncio.sleep(BEFORE_S)  # load before the kill (a duration, not a wait)
            victim = cluster.primary_of(keys.marker)
            killed_at = time.monotonic()
            cluster.kill(victim)

            async def promoted() -> bool:
                return cluster.primary_of(keys.marker) != victim

            await wait_for(promoted, RECOVERY_TIMEOUT_S, "a replica to take the slot over")
            if acks:
                # The promoted primary has no replica left: writes of its slots wait (503)
                # until one joins, which is what the setting promises.
                await asyncio.to_thread(cluster.add_replica, cluster.primary_of(keys.marker))

            async def writes_flow_again() -> bool:
                recent = [t for t in load.successes if t > killed_at]
                return bool(recent) and recent[-1] - recent[0] >= AFTER_S

            await wait_for(writes_flow_again, RECOVERY_TIMEOUT_S, "submissions to succeed again")
            recovered_at = min(t for t in load.successes if t > max(load.refusals, default=0))
        finally:
            load.done.set()
            await asyncio.gather(*running)

    assert not load.bad, load.bad[:5]
    assert set(load.statuses) <= {200, 404, 503}, load.statuses
    after_kill = [t for t in load.refusals if t >= killed_at]
    first_success = min(t for t in load.successes if t > killed_at)
    refused_s = (max(after_kill) - killed_at) if after_kill else 0.0
    during = [status for at, status in load.reads if killed_at <= at <= recovered_at]
    served = sum(status in (200, 404) for status in during)

    # Recovery: the watchdog saw a new server hold the namespace and rebuilt it from
    # PostgreSQL once the worker had persisted what the new primary holds; verify agrees.
    async def verified() -> bool:
        done = await asyncio.to_thread(processes.run, "verify", settings=settings)
        return done.returncode == 0

    await wait_for(verified, 90, "ranker verify to exit 0 after the failover's rebuild")
    rows = await stored(pool, list(load.acknowledged))
    lost = sorted(set(load.acknowledged) - set(rows))
    twice = sorted(session for session, count in rows.items() if count > 1)
    print(
        f"failover with RANKER_REDIS_MIN_REPLICAS_ACK={acks}: writes refused for "
        f"{refused_s:.2f} s (first success {first_success - killed_at:.2f} s after the kill), "
        f"{len(load.acknowledged)} submissions acknowledged, {len(lost)} lost, "
        f"{len(twice)} stored twice; reads{' from replicas' if replica_reads else ''} while "
        f"writes were refused: {served} of {len(during)} answered; statuses {dict(load.statuses)}"
    )
    assert not twice, twice[:5]
    if acks:
        assert not lost, lost[:5]
    if replica_reads:  # the replicas of the other primaries, and the promoted one, serve reads
        assert served > 0, during
