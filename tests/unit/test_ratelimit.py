"""The shared rate limits (ranker/api/ratelimit.py) and their counter, lua/lib/budget.lua, on
fakeredis: the sliding window against a reference model, several budgets all or none, and
submissions charged inside submit.lua."""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from fractions import Fraction

import fakeredis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ranker.api.ratelimit import RateLimits
from ranker.errors import PlayerBanned, TooManyRequests
from ranker.keys import Keys
from ranker.models import SubmitRequest
from ranker.ranking import Ranking
from ranker.scripts import Scripts
from ranker.settings import Settings

KEYS = Keys("unit")
#: An API key's id (what a write is counted by).
CALLER = "0123456789ab"
#: The tests' own clock (ARGV[2] of rate_limit.lua), in 2100: the keys' expiry, which
#: fakeredis reads from the real clock, never strikes during a test.
BASE_MS = 4_102_444_800_000
examples = hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def settings(**overrides: str) -> Settings:
    values = {"redis_url": "redis://unused", "database_url": "postgresql://unused"}
    return Settings(namespace="unit", **(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
async def redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis()
    await client.flushall()
    await client.set(KEYS.marker, "loaded")
    yield client
    await client.aclose()


class Reference:
    """The sliding window counter by its definition, from every window's count of admitted
    requests (not from the two counts the script keeps)."""

    def __init__(self, budgets: list[tuple[int, int]]) -> None:
        self.budgets = budgets  # (amount, window ms)
        self.admitted = [Counter[int]() for _ in budgets]  # window index -> admitted

    def charge(self, now_ms: int) -> list[int]:
        for i, (amount, window) in enumerate(self.budgets):
            index, elapsed = divmod(now_ms, window)
            previous, current = self.admitted[i][index - 1], self.admitted[i][index]
            if previous * Fraction(window - elapsed, window) + current + 1 > amount:
                return [i + 1, max(1, math.ceil((window - elapsed) / 1000))]
        for i, (_, window) in enumerate(self.budgets):
            self.admitted[i][now_ms // window] += 1
        return []


async def charge(
    redis: fakeredis.FakeAsyncRedis, budgets: list[tuple[int, int]], now_ms: int, tag: str = "t"
) -> list[int]:
    """One request charged by rate_limit.lua at ``now_ms`` to ``budgets`` (keys by position)."""
    keys = [f"{tag}:{i}" for i in range(len(budgets))]
    spec = " ".join(f"{amount} {window}" for amount, window in budgets)
    reply = await Scripts.register(redis).rate_limit(keys, [spec, now_ms])
    return [int(value) for value in reply]


budget_lists = st.lists(
    st.tuples(st.integers(1, 5), st.sampled_from([1000, 2000, 3000])), min_size=1, max_size=3
)
# Steps of up to two windows and a half: a window rolls over, or several are skipped at once.
# Quarters and thirds of a window too, where the previous window's weight crosses a whole
# request: the edges of the inequality.
steps = st.lists(
    st.one_of(st.integers(0, 7000), st.sampled_from([0, 1, 250, 333, 500, 667, 750, 1000])),
    min_size=1,
    max_size=60,
)


@examples
@given(budgets=budget_lists, advances=steps)
async def test_the_counter_matches_the_sliding_window_by_its_definition(
    redis: fakeredis.FakeAsyncRedis, budgets: list[tuple[int, int]], advances: list[int]
) -> None:
    reference = Reference(budgets)
    tag = uuid.uuid4().hex  # each example its own keys
    now = BASE_MS
    for advance in advances:
        now += advance
        assert await charge(redis, budgets, now, tag) == reference.charge(now), now - BASE_MS


async def test_several_budgets_are_charged_all_or_none(redis: fakeredis.FakeAsyncRedis) -> None:
    budgets = [(10, 60_000), (2, 1000)]  # 10 a minute, 2 a second
    admitted = [await charge(redis, budgets, BASE_MS + ms) for ms in (0, 10, 20, 30)]

    # The second budget refuses the third and fourth, and the first does not count them.
    assert admitted == [[], [], [2, 1], [2, 1]]
    assert await redis.hgetall("t:0") == {
        b"w": str(BASE_MS // 60_000).encode(),
        b"c": b"2",
        b"p": b"0",
    }
    assert (await redis.hgetall("t:1"))[b"c"] == b"2"
    # The first budget refusing: the second is not charged either.
    tight = [(1, 60_000), (5, 1000)]
    assert [await charge(redis, tight, BASE_MS + ms, "u") for ms in (0, 10)] == [[], [1, 60]]
    assert (await redis.hgetall("u:1"))[b"c"] == b"1"


async def test_refused_requests_are_not_counted_and_the_previous_window_fades(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    budget = [(4, 10_000)]
    assert [await charge(redis, budget, BASE_MS + ms) for ms in range(4)] == [[]] * 4
    for ms in range(100, 9000, 100):  # refused all window long: none of these counts
        assert await charge(redis, budget, BASE_MS + ms) == [1, math.ceil((10_000 - ms) / 1000)]

    # Next window: 4 * (10 - elapsed) / 10 + current + 1 <= 4 once a quarter of it has run.
    assert await charge(redis, budget, BASE_MS + 10_000 + 2499) == [1, 8]
    assert await charge(redis, budget, BASE_MS + 10_000 + 2500) == []
    assert await redis.hgetall("t:0") == {
        b"w": str(BASE_MS // 10_000 + 1).encode(),
        b"c": b"1",
        b"p": b"4",
    }
    # Two windows on, the old counts no longer weigh.
    assert [await charge(redis, budget, BASE_MS + 30_000 + ms) for ms in range(5)] == [
        [],
        [],
        [],
        [],
        [1, 10],
    ]


async def test_a_budget_key_expires_when_the_window_after_its_last_count_ends(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await charge(redis, [(3, 60_000)], BASE_MS + 5000)

    assert await redis.pexpiretime("t:0") == (BASE_MS // 60_000 + 2) * 60_000


async def test_a_spent_budget_is_a_429_naming_the_key_or_the_address(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    limits = RateLimits(redis, settings(write_rate_limit="2/hour", read_rate_limit="1/minute"))
    await limits.spend("write", CALLER)
    await limits.spend("write", CALLER)

    with pytest.raises(TooManyRequests) as write:
        await limits.spend("write", CALLER)
    await limits.spend("write", "ba9876543210")  # another key: its own budget
    await limits.spend("read", "address:192.0.2.7")
    with pytest.raises(TooManyRequests) as read:
        await limits.spend("read", "address:192.0.2.7")

    retry_after = write.value.retry_after_s
    assert 1 <= retry_after <= 3600
    assert write.value.detail == (
        f"over the write rate limit of 2 per 1 hour(s); retry after {retry_after} s"
    )
    assert write.value.headers == {
        "Retry-After": str(retry_after),
        "RateLimit-Limit": "2",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": str(retry_after),
    }
    assert [e.field for e in write.value.errors] == ["authorization"]
    assert [e.field for e in read.value.errors] == ["client"]
    assert read.value.detail.startswith("over the read rate limit of 1 per 1 minute(s)")
    assert await redis.exists(KEYS.rate_limit("write", CALLER, 2, 3600)) == 1


async def test_without_budgets_nothing_is_charged(redis: fakeredis.FakeAsyncRedis) -> None:
    limits = RateLimits(redis, settings(write_rate_limit="", read_rate_limit=""))

    assert limits.charge("write", CALLER) is None
    assert not limits.limits("read")
    for _ in range(5):
        await limits.spend("write", CALLER)
    assert await redis.keys(f"{KEYS.rate_limits}*") == []


def session(session_id: str, user_id: int = 1, score: int = 5) -> SubmitRequest:
    return SubmitRequest(user_id=user_id, score=score, session_id=session_id)


async def stored(redis: fakeredis.FakeAsyncRedis) -> dict[bytes, bytes]:
    """Every key but the budgets', with its content."""
    return {
        key: await redis.dump(key)
        for key in await redis.keys("*")
        if not key.startswith(KEYS.rate_limits.encode())
    }


async def test_a_submission_over_budget_stores_nothing_and_retries_are_charged_too(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    ranking = Ranking(redis, settings())
    charge = RateLimits(redis, settings(write_rate_limit="1/hour")).charge("write", CALLER)
    first = await ranking.submit(session("kept"), charge)
    before = await stored(redis)

    with pytest.raises(TooManyRequests) as new:
        await ranking.submit(session("new", user_id=2), charge)
    with pytest.raises(TooManyRequests) as retry:  # as when the API charged it beforehand
        await ranking.submit(session("kept"), charge)

    assert not first.duplicate
    assert new.value.detail.startswith("over the write rate limit of 1 per 1 hour(s); retry")
    assert [e.field for e in retry.value.errors] == ["authorization"]
    assert await stored(redis) == before
    assert await redis.exists(KEYS.seen("new")) == 0
    assert await redis.xlen(KEYS.events) == 1
    assert charge is not None
    [key] = charge.keys
    assert (await redis.hgetall(key))[b"c"] == b"1"


async def test_a_banned_players_submission_is_charged_and_a_stale_one_charged_once(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    ranking = Ranking(redis, settings())
    charge = RateLimits(redis, settings(write_rate_limit="5/hour")).charge("write", CALLER)
    assert charge is not None
    await redis.hset(KEYS.moderation, "9", "b")
    with pytest.raises(PlayerBanned):
        await ranking.submit(session("banned", user_id=9), charge)
    await ranking.submit(session("one"), charge)  # the definitions read
    # Another process changes the boards: this process's copy is stale, and submit.lua says so
    # after it charged the budget; the submission is placed again, and not charged again.
    await redis.set(KEYS.definitions_version, "changed")

    placed_again = await ranking.submit(session("two"), charge)

    assert not placed_again.duplicate
    assert (await redis.hgetall(charge.keys[0]))[b"c"] == b"3"
    assert await redis.xlen(KEYS.events) == 2
