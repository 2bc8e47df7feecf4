"""The ranking core and its Lua scripts on fakeredis (no server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ranker.entries import ranked
from ranker.errors import BacklogFull, NotFound, NotReady, RedisMemoryFull, SessionConflict
from ranker.idempotency import IdempotencyRecord
from ranker.keys import Keys
from ranker.memory import MemoryReading, RedisMemory
from ranker.models import SubmitRequest, entries_json
from ranker.ranking import Ranking
from ranker.settings import Settings

SETTINGS = Settings(
    redis_url="redis://unused", database_url="postgresql://unused", namespace="unit", max_backlog=5
)
KEYS = Keys("unit")


@pytest.fixture
async def redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis()
    await client.set(KEYS.marker, "loaded")
    yield client
    await client.aclose()


@pytest.fixture
def ranking(redis: fakeredis.FakeAsyncRedis) -> Ranking:
    return Ranking(redis, SETTINGS)


def reference_ranks(totals: list[int]) -> list[int]:
    """RANK() by its definition: 1 + how many totals are strictly greater."""
    return [1 + sum(other > total for other in totals) for total in totals]


@given(st.lists(st.integers(0, 5), min_size=1, max_size=40), st.data())
def test_ranked_matches_the_definition_on_any_slice(totals: list[int], data: st.DataObject) -> None:
    ordered = sorted(totals, reverse=True)
    start = data.draw(st.integers(0, len(ordered) - 1))
    flat = [
        part for i, t in enumerate(ordered[start:]) for part in (str(i).encode(), str(t).encode())
    ]
    first_rank = reference_ranks(ordered)[start]

    entries = ranked(flat, first_rank, start)

    assert [e.rank for e in entries] == reference_ranks(ordered)[start:]


async def test_submit_adds_to_the_global_and_mode_boards_and_appends_one_event(
    ranking: Ranking, redis: fakeredis.FakeAsyncRedis
) -> None:
    outcome = await ranking.submit(SubmitRequest(user_id=4, score=12, game_mode="team"))

    assert (outcome.total_score, outcome.rank, outcome.duplicate) == (12, 1, False)
    assert await redis.zscore(KEYS.board("global"), "4") == 12
    assert await redis.zscore(KEYS.board("mode:team"), "4") == 12
    assert await redis.zscore(KEYS.board("mode:solo"), "4") is None
    [(_, fields)] = await redis.xrange(KEYS.events)
    assert fields[b"e"].decode() == outcome.event_id
    assert (fields[b"u"], fields[b"p"], fields[b"m"]) == (b"4", b"12", b"team")
    assert b"g" not in fields


async def test_a_retried_session_counts_once_and_returns_the_first_event_id(
    ranking: Ranking, redis: fakeredis.FakeAsyncRedis
) -> None:
    first = await ranking.submit(SubmitRequest(user_id=1, score=3, session_id="abc"))
    again = await ranking.submit(SubmitRequest(user_id=1, score=3, session_id="abc"))

    assert again.duplicate and again.event_id == first.event_id
    assert again.total_score == 3
    assert await redis.xlen(KEYS.events) == 1


async def test_a_full_backlog_refuses_new_sessions_but_still_answers_retries(
    ranking: Ranking,
) -> None:
    for n in range(5):
        await ranking.submit(SubmitRequest(user_id=1, score=1, session_id=f"s{n}"))

    with pytest.raises(BacklogFull):
        await ranking.submit(SubmitRequest(user_id=1, score=1, session_id="new"))
    retry = await ranking.submit(SubmitRequest(user_id=1, score=1, session_id="s0"))
    assert retry.duplicate


async def test_while_a_rebuild_runs_scores_also_go_to_deltas_and_events_are_tagged(
    ranking: Ranking, redis: fakeredis.FakeAsyncRedis
) -> None:
    await redis.set(KEYS.rebuild_flag, "gen-1")

    await ranking.submit(SubmitRequest(user_id=2, score=7, game_mode="solo"))

    assert await redis.zscore(KEYS.delta("global"), "2") == 7
    assert await redis.zscore(KEYS.delta("mode:solo"), "2") == 7
    [(_, fields)] = await redis.xrange(KEYS.events)
    assert fields[b"g"] == b"gen-1"


async def test_reads_refuse_while_the_marker_is_missing_but_submissions_are_kept(
    ranking: Ranking, redis: fakeredis.FakeAsyncRedis
) -> None:
    # A rebuild has begun (it restored the definitions' version) but not yet swapped.
    await redis.delete(KEYS.marker)
    await redis.set(KEYS.definitions_version, "restored")

    outcome = await ranking.submit(SubmitRequest(user_id=1, score=1))

    assert (outcome.total_score, outcome.rank) == (None, None)
    assert outcome.boards["global"].score is None
    assert await redis.xlen(KEYS.events) == 1
    with pytest.raises(NotReady):
        await ranking.rank(1)
    with pytest.raises(NotReady):
        await ranking.top(10)


async def test_a_top_body_is_the_json_of_top_and_every_accepted_session_changes_it(
    ranking: Ranking, redis: fakeredis.FakeAsyncRedis
) -> None:
    await ranking.submit(SubmitRequest(user_id=1, score=5, username="Ann"))
    first = await ranking.top_body(10)
    assert first == await ranking.top_body(10) == entries_json(await ranking.top(10))
    version = await redis.get(KEYS.pages_version)

    await ranking.submit(SubmitRequest(user_id=2, score=5, session_id="s2"))
    bumped = await redis.get(KEYS.pages_version)
    await ranking.submit(SubmitRequest(user_id=2, score=5, session_id="s2"))  # a retry

    after = await ranking.top_body(10)
    assert after == entries_json(await ranking.top(10)) != first
    assert int(bumped) > int(version)  # versions only rise
    assert await redis.get(KEYS.pages_version) == bumped  # the retry: no bump
    await redis.delete(KEYS.marker)
    with pytest.raises(NotReady):
        await ranking.top_body(10)


async def test_submissions_are_refused_while_redis_has_lost_the_boards(
    ranking: Ranking, redis: fakeredis.FakeAsyncRedis
) -> None:
    # Wiped, and no rebuild has begun: counting now would miss the boards it restores.
    await redis.delete(KEYS.marker, KEYS.definitions_version)

    with pytest.raises(NotReady, match="waits for their rebuild"):
        await ranking.submit(SubmitRequest(user_id=1, score=1))

    assert await redis.xlen(KEYS.events) == 0


async def test_rank_of_an_absent_player_is_not_found(ranking: Ranking) -> None:
    with pytest.raises(NotFound):
        await ranking.rank(99)
    with pytest.raises(NotFound):
        await ranking.around(99, 3)


async def test_ack_deletes_entries_unless_a_rebuild_keeps_them(
    ranking: Ranking, redis: fakeredis.FakeAsyncRedis
) -> None:
    await redis.xgroup_create(KEYS.events, "persist", id="0", mkstream=True)
    for n in range(2):
        await ranking.submit(SubmitRequest(user_id=1, score=1, session_id=f"a{n}"))
    [[_, entries]] = await redis.xreadgroup("persist", "c", {KEYS.events: ">"})
    ids = [entry_id for entry_id, _ in entries]

    await redis.set(KEYS.rebuild_flag, "gen")
    await ranking.scripts.ack([KEYS.events, KEYS.rebuild_flag], ["persist", ids[0]])
    kept = await redis.xlen(KEYS.events)
    await redis.delete(KEYS.rebuild_flag)
    await ranking.scripts.ack([KEYS.events, KEYS.rebuild_flag], ["persist", ids[1]])

    assert kept == 2
    assert [entry_id for entry_id, _ in await redis.xrange(KEYS.events)] == [ids[0]]


@pytest.mark.parametrize(
    "other",
    [
        {"user_id": 2, "score": 10, "game_mode": "solo"},
        {"user_id": 1, "score": 11, "game_mode": "solo"},
        {"user_id": 1, "score": 10, "game_mode": "team"},
    ],
)
async def test_a_session_id_reused_with_other_data_is_a_conflict_and_counts_nothing(
    ranking: Ranking, redis: fakeredis.FakeAsyncRedis, other: dict[str, object]
) -> None:
    first = await ranking.submit(
        SubmitRequest(user_id=1, score=10, game_mode="solo", session_id="s")
    )
    before = {key: await redis.dump(key) for key in await redis.keys("*")}

    with pytest.raises(SessionConflict) as refused:
        await ranking.submit(SubmitRequest.model_validate({**other, "session_id": "s"}))
    retry = await ranking.submit(
        SubmitRequest(user_id=1, score=10, game_mode="solo", session_id="s")
    )

    assert refused.value.status == 409
    assert [e.field for e in refused.value.errors] == ["session_id"]
    assert {key: await redis.dump(key) for key in await redis.keys("*")} == before
    assert (retry.duplicate, retry.event_id, retry.total_score) == (True, first.event_id, 10)


async def test_an_idempotency_key_without_the_sessions_data_still_answers_a_retry(
    ranking: Ranking, redis: fakeredis.FakeAsyncRedis
) -> None:
    # Written before the key kept what its session said: it cannot tell a retry from a reuse.
    await redis.set(KEYS.seen_legacy("old"), "6d1f7b3e-0000-4000-8000-000000000001")

    answer = await ranking.submit(SubmitRequest(user_id=3, score=5, session_id="old"))

    assert (answer.duplicate, answer.event_id) == (True, "6d1f7b3e-0000-4000-8000-000000000001")


async def test_the_idempotency_key_is_named_by_a_digest_and_holds_28_characters(
    ranking: Ranking, redis: fakeredis.FakeAsyncRedis
) -> None:
    session_id = "match-" + "x" * 120
    outcome = await ranking.submit(SubmitRequest(user_id=1, score=3, session_id=session_id))

    value = await redis.get(KEYS.seen(session_id))
    assert value is not None and len(value) == 28
    assert IdempotencyRecord.parse(value).event_id == outcome.event_id
    assert not [key async for key in redis.scan_iter(f"*{session_id}*")]
    assert len(KEYS.seen(session_id)) == len(KEYS.seen("s"))


@pytest.mark.parametrize(
    "what", [(3, 5, "solo", True), (4, 5, "solo", False), (3, 6, "solo", False)]
)
async def test_a_key_of_the_previous_version_still_tells_a_retry_from_a_reuse(
    ranking: Ranking, redis: fakeredis.FakeAsyncRedis, what: tuple[int, int, str, bool]
) -> None:
    user_id, score, mode, retry = what
    first = "6d1f7b3e-0000-4000-8000-000000000002"
    await redis.set(KEYS.seen_legacy("upgraded"), f"{first} 3 5 solo")
    request = SubmitRequest(user_id=user_id, score=score, game_mode=mode, session_id="upgraded")

    if retry:
        answer = await ranking.submit(request)
        assert (answer.duplicate, answer.event_id) == (True, first)
    else:
        with pytest.raises(SessionConflict):
            await ranking.submit(request)
    assert await redis.exists(KEYS.events) == 0


class FullMemory(RedisMemory):
    """A watcher whose last reading is the one a test sets."""

    def __init__(self, used: int, maximum: int) -> None:
        self.watermark = 0.9
        self.reading = MemoryReading(used, maximum, 0.9)


async def test_above_the_memory_watermark_new_sessions_are_refused_and_retries_answered(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    accepted = await Ranking(redis, SETTINGS).submit(
        SubmitRequest(user_id=1, score=2, session_id="kept")
    )
    before = {key: await redis.dump(key) for key in await redis.keys("*")}
    ranking = Ranking(redis, SETTINGS, FullMemory(930, 1000))

    with pytest.raises(RedisMemoryFull) as refused:
        await ranking.submit(SubmitRequest(user_id=2, score=5, session_id="new"))
    retry = await ranking.submit(SubmitRequest(user_id=1, score=2, session_id="kept"))

    assert refused.value.status == 503
    assert refused.value.headers["Retry-After"] == str(SETTINGS.retry_after_s)
    assert refused.value.detail.startswith("Redis memory is 93% full (watermark 90%)")
    assert {key: await redis.dump(key) for key in await redis.keys("*")} == before
    assert (retry.duplicate, retry.event_id) == (True, accepted.event_id)


@pytest.mark.parametrize(
    ("used", "maximum", "full", "detail"),
    [
        (899, 1000, False, "Redis memory is 89% full (watermark 90%)"),
        (900, 1000, True, "Redis memory is 90% full (watermark 90%)"),
        (10**9, 0, False, "Redis has no maxmemory configured: nothing to compare with the "),
    ],
)
def test_a_memory_reading_is_full_at_the_watermark_and_never_without_maxmemory(
    used: int, maximum: int, full: bool, detail: str
) -> None:
    reading = MemoryReading(used, maximum, 0.9)

    assert reading.full is full
    assert reading.detail().startswith(detail)
    assert reading.report()["full"] is full
