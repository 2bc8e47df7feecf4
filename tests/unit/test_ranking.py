"""The ranking core and its Lua scripts on fakeredis (no server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ranker.errors import BacklogFull, NotFound, NotReady, SessionConflict
from ranker.keys import Keys
from ranker.models import SubmitRequest
from ranker.ranking import Ranking, ranked
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
    await redis.delete(KEYS.marker)

    outcome = await ranking.submit(SubmitRequest(user_id=1, score=1))

    assert (outcome.total_score, outcome.rank) == (None, None)
    assert await redis.xlen(KEYS.events) == 1
    with pytest.raises(NotReady):
        await ranking.rank(1)
    with pytest.raises(NotReady):
        await ranking.top(10)


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
    await redis.set(KEYS.seen("old"), "6d1f7b3e-0000-4000-8000-000000000001")

    answer = await ranking.submit(SubmitRequest(user_id=3, score=5, session_id="old"))

    assert (answer.duplicate, answer.event_id) == (True, "6d1f7b3e-0000-4000-8000-000000000001")
