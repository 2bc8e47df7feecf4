"""What only a Redis Cluster has: reads from replicas (correct, their lag measured, sent to the
replicas), and several deployments whose namespaces spread over the primaries (docs/design.md,
"Redis Cluster"). The tests run on the session's local cluster."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis, RedisCluster

from persistence.database import pool_for
from persistence.rebuild import Rebuild
from ranker.keys import Keys
from ranker.settings import Settings
from tests.fixtures.ranker import api_process, seeded_random, wait_for

#: These tests need the cluster: ``redis_server_url`` is the session's local cluster.
on_the_cluster = pytest.mark.parametrize("redis_server_url", ["cluster"], indirect=True)

PLAYERS = 200
LAG_PROBES = 40


async def evalsha_ro_calls(redis: RedisCluster, role: str) -> int:
    """``EVALSHA_RO`` calls served by the cluster's nodes of ``role`` (``master`` or ``slave``,
    as each node's ``ROLE`` says)."""
    calls = 0
    for node in redis.get_nodes():
        async with Redis(host=node.host, port=node.port) as one:
            if (await one.execute_command("ROLE"))[0].decode() != role:
                continue
            stats = await one.info("commandstats")
            calls += int(stats.get("cmdstat_evalsha_ro", {}).get("calls", 0))
    return calls


async def same_answers(writer: httpx.AsyncClient, reader: httpx.AsyncClient, user: int) -> bool:
    """Whether the replica-reading process answers rank, top, around and lookup as the
    primary-reading one does."""
    for method, path, body in [
        ("GET", f"/api/leaderboard/rank/{user}", None),
        ("GET", "/api/leaderboard/top?limit=50", None),
        ("GET", f"/api/leaderboard/around/{user}?n=5", None),
        ("POST", "/api/boards/global/lookup", {"user_ids": [user, user + 1, 9999]}),
    ]:
        answers = [(await http.request(method, path, json=body)) for http in (writer, reader)]
        if answers[0].status_code != 200 or answers[0].json() != answers[1].json():
            return False
    return True


@on_the_cluster
async def test_replica_reads_answer_as_the_primary_once_replicated_and_their_lag_is_measured(
    make_settings: Callable[..., Settings], redis: RedisCluster, loaded: None
) -> None:
    primary_reads = make_settings()
    replica_reads = make_settings(read_from_replicas=True)
    rng = seeded_random()
    async with api_process(primary_reads) as writer, api_process(replica_reads) as reader:
        for user in range(1, PLAYERS + 1):
            body = {"user_id": user, "score": rng.randint(0, 50) * 10}
            assert (await writer.post("/api/leaderboard/submit", json=body)).status_code == 200
        before = await evalsha_ro_calls(redis, "master")
        replicas_before = await evalsha_ro_calls(redis, "slave")

        # The lag: a new player's submission, then the replica-reading process asked until
        # it shows the player with that score.
        lags = []
        for probe in range(LAG_PROBES):
            user = 10_000 + probe
            body = {"user_id": user, "score": rng.randint(0, 50) * 10}
            submitted = await writer.post("/api/leaderboard/submit", json=body)
            assert submitted.status_code == 200
            started = time.perf_counter()

            async def visible(user: int = user, score: int = body["score"]) -> bool:
                seen = await reader.get(f"/api/leaderboard/rank/{user}")
                return seen.status_code == 200 and seen.json()["total_score"] == score

            await wait_for(visible, 5, f"player {user} on a replica")
            lags.append(time.perf_counter() - started)
        for user in rng.sample(range(1, PLAYERS + 1), 20):

            async def agree(user: int = user) -> bool:
                return await same_answers(writer, reader, user)

            await wait_for(agree, 5, f"the replicas to answer as the primary for {user}")

    replica_calls = await evalsha_ro_calls(redis, "slave") - replicas_before
    assert replica_calls >= LAG_PROBES + 20 * 4  # every read went to a replica...
    assert await evalsha_ro_calls(redis, "master") == before  # ...none to a primary
    print(
        f"replica read lag over {len(lags)} probes: median {statistics.median(lags) * 1000:.2f} "
        f"ms, max {max(lags) * 1000:.2f} ms (the time until a replica-reading process showed a "
        "submission the primary had answered)"
    )


@on_the_cluster
async def test_three_deployments_on_one_cluster_spread_over_its_three_primaries(
    make_settings: Callable[..., Settings],
    make_database: Callable[..., str],
    redis: RedisCluster,
) -> None:
    await redis.initialize()
    # Three namespaces of one game studio's naming whose slots lie on three different primaries.
    chosen: dict[str, Any] = {}
    for index in range(200):
        name = f"{make_settings().namespace}-{index}"
        node = redis.get_node_from_key(Keys(name).marker)
        if node is not None and node.name not in {n.name for n in chosen.values()}:
            chosen[name] = node
        if len(chosen) == 3:
            break
    assert len(chosen) == 3, "three namespaces on three primaries"
    deployments = [make_settings(namespace=name, database_url=make_database()) for name in chosen]
    try:
        for number, settings in enumerate(deployments):
            async with pool_for(settings) as pool:
                await Rebuild(settings, redis, pool).run()
            async with api_process(settings) as http:
                for user in range(1, 4):
                    body = {"user_id": 100 * number + user, "score": user}
                    assert (
                        await http.post("/api/leaderboard/submit", json=body)
                    ).status_code == 200
                top = (await http.get("/api/leaderboard/top?limit=10")).json()
                assert sorted(entry["user_id"] for entry in top) == [
                    100 * number + u for u in (1, 2, 3)
                ]
        for settings in deployments:
            pattern = f"ranker:{{{settings.namespace}}}:*"
            holders = []
            for node in redis.get_primaries():
                async with Redis(host=node.host, port=node.port) as one:
                    if [key async for key in one.scan_iter(match=pattern, count=1000)]:
                        holders.append(node.name)
            # Every key of a deployment is on the primary of its slot, and only there.
            assert holders == [chosen[settings.namespace].name], (settings.namespace, holders)
    finally:
        for settings in deployments:
            async for key in redis.scan_iter(match=f"ranker:{{{settings.namespace}}}:*"):
                await redis.delete(key)
