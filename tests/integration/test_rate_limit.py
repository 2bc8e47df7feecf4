"""The shared write budget on real Redis: charged inside submit.lua (one round trip per
submission), one budget for every API process, nothing of a refused submission stored, and
retries still answered by a Redis at its maxmemory."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.rebuild import Rebuild
from ranker import scripts
from ranker.api.app import create_app
from ranker.api.auth import KeyRing, Scope
from ranker.keys import Keys
from ranker.settings import Settings
from tests.fixtures.ranker import WRITE_KEY, Processes, api_process, auth_headers, snapshot

SUBMIT = "/api/leaderboard/submit"
HOUR_MS = 3_600_000


def key_id(key: str = WRITE_KEY) -> str:
    """The id a key's budget is counted by."""
    return KeyRing([(Scope.WRITE, key)]).authorize(f"Bearer {key}", Scope.WRITE).key_id


def calls(stats: dict[str, Any], command: str) -> int:
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def commands_of(script: str) -> set[str]:
    """The commands a script calls, in the names of INFO commandstats."""
    return {name.lower() for name in re.findall(r"redis\.p?call\('(\w+)'", scripts.source(script))}


async def test_a_submission_with_a_write_budget_costs_one_redis_command(
    make_settings: Callable[..., Settings], redis: Redis, loaded: None
) -> None:
    settings = make_settings(write_rate_limit="1000/second; 100000/hour")
    async with api_process(settings) as client:
        # The first one loads the script and reads the definitions.
        warm = await client.post(SUBMIT, json={"user_id": 1, "score": 2, "session_id": "warm"})
        await redis.config_resetstat()
        answer = await client.post(SUBMIT, json={"user_id": 2, "score": 3, "session_id": "one"})
        stats: dict[str, Any] = await redis.info("commandstats")

    assert warm.status_code == answer.status_code == 200, answer.text
    assert calls(stats, "evalsha") + calls(stats, "eval") == 1, stats
    # Every other command counted ran inside that script (the budget's among them), but for
    # the memory watcher's INFO and a connection's setup, which are no request's.
    issued = {name.removeprefix("cmdstat_") for name in stats}
    outside = issued - commands_of("submit") - {"evalsha", "eval", "info", "config|resetstat"}
    assert {name for name in outside if not name.startswith("client|")} == set(), stats
    assert {"time", "hmget", "hset"} <= issued
    for amount, window_s in ((1000, 1), (100_000, 3600)):
        budget = Keys(settings.namespace).rate_limit("write", key_id(), amount, window_s)
        assert await redis.hget(budget, "c") == b"2"


@pytest.mark.cluster
async def test_other_writes_draw_on_the_same_budget_through_their_own_check(
    make_settings: Callable[..., Settings], redis: Redis, loaded: None
) -> None:
    settings = make_settings(write_rate_limit="3/hour")
    async with api_process(settings) as client:
        submitted = await client.post(SUBMIT, json={"user_id": 1, "score": 2})
        named = [await client.put("/api/players/1", json={"username": f"n{n}"}) for n in (1, 2)]
        refused = await client.put("/api/players/1", json={"username": "n3"})
        refused_submit = await client.post(SUBMIT, json={"user_id": 1, "score": 2})

    assert [r.status_code for r in (submitted, *named)] == [200, 200, 200]
    for answer in (refused, refused_submit):
        assert answer.status_code == 429, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["authorization"]
        assert answer.json()["detail"].startswith("over the write rate limit of 3 per 1 hour(s)")
    budget = Keys(settings.namespace).rate_limit("write", key_id(), 3, 3600)
    assert await redis.hget(budget, "c") == b"3"
    assert await redis.hget(Keys(settings.namespace).names, "1") == b"n2"


async def away_from_an_hour_boundary(redis: Redis) -> None:
    """Return at least 20 s before the hour of Redis's clock ends: the test's burst then falls in
    one window of a 1-hour budget. (A wait on the clock, not on anything the test started.)"""
    seconds, micros = await redis.time()
    left_ms = HOUR_MS - (seconds * 1000 + micros // 1000) % HOUR_MS
    if left_ms < 20_000:
        await asyncio.sleep(left_ms / 1000 + 0.5)


@pytest.mark.cluster
async def test_two_api_processes_share_one_budget_and_store_nothing_of_what_it_refuses(
    make_settings: Callable[..., Settings], processes: Processes, redis: Redis, loaded: None
) -> None:
    settings = make_settings(write_rate_limit="25/hour")
    urls = [(await processes.serve("--no-worker", settings=settings))[0] for _ in range(2)]
    await away_from_an_hour_boundary(redis)
    bodies = [{"user_id": n + 1, "score": 10 + n, "session_id": f"rl-{n}"} for n in range(60)]

    async with httpx.AsyncClient(headers=auth_headers(), timeout=30) as http:
        answers = await asyncio.gather(
            *(http.post(f"{urls[n % 2]}{SUBMIT}", json=body) for n, body in enumerate(bodies))
        )
        # The budget is spent: a retry of an accepted session is refused too, as before.
        accepted = [b for b, a in zip(bodies, answers, strict=True) if a.status_code == 200]
        retry = await http.post(f"{urls[1]}{SUBMIT}", json=accepted[0])

    refused = [(b, a) for b, a in zip(bodies, answers, strict=True) if a.status_code != 200]
    assert len(accepted) == 25
    for answer in [a for _, a in refused] + [retry]:
        assert answer.status_code == 429, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in answer.json()["errors"]] == ["authorization"]
        assert 1 <= int(answer.headers["retry-after"]) <= 3600
        assert answer.headers["ratelimit-limit"] == "25"
        assert answer.headers["ratelimit-remaining"] == "0"
    keys = Keys(settings.namespace)
    for body, _ in refused:
        assert await redis.exists(keys.seen(str(body["session_id"]))) == 0
    entries = await redis.xrange(keys.events)
    assert sorted(fields[b"s"].decode() for _, fields in entries) == sorted(
        str(b["session_id"]) for b in accepted
    )
    board = await redis.zrange(keys.board("global"), 0, -1, withscores=True)
    assert sorted(board) == sorted((str(b["user_id"]).encode(), b["score"]) for b in accepted)
    assert await redis.hget(keys.rate_limit("write", key_id(), 25, 3600), "c") == b"25"


@pytest.mark.cluster
async def test_at_its_maxmemory_redis_still_answers_retries_with_a_budget_on(
    make_settings: Callable[..., Settings], own_redis_url: str, pool: AsyncConnectionPool
) -> None:
    settings = make_settings(redis_url=own_redis_url, write_rate_limit="100/hour")
    own = Redis.from_url(own_redis_url)
    await own.config_set("maxmemory-policy", "noeviction")
    await Rebuild(settings, own, pool).run()
    kept = {"user_id": 1, "score": 10, "session_id": "kept"}
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://ranker", headers=auth_headers()
            ) as client:
                first = await client.post(SUBMIT, json=kept)
                # As if the watcher had not read it yet: Redis itself refuses the writes.
                app.state.ranker.memory.pressure = lambda: None
                await own.config_set("maxmemory", 1)
                before = await snapshot(own, pool, settings)
                refused = await client.post(SUBMIT, json={"user_id": 2, "score": 5})
                retry = await client.post(SUBMIT, json=kept)
                after = await snapshot(own, pool, settings)
                await own.config_set("maxmemory", 0)
    finally:
        await own.aclose()

    assert first.status_code == 200
    assert refused.status_code == 503, refused.text
    # Its budget's write refused too: the script went on to answer the retry.
    assert (retry.status_code, retry.json()["duplicate"]) == (200, True), retry.text
    assert after == before
