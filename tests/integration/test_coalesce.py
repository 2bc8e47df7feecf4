"""Reads that reach Redis in one event-loop turn share one pipeline (``ranker.coalesce``): each
caller gets its own answer or its own error, exactly what the same read sent alone gives, and a
read is never older than the submissions answered before it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from ranker.boards import GLOBAL
from ranker.coalesce import Coalescer
from ranker.errors import NotFound, RedisUnavailable
from ranker.models import SubmitRequest
from ranker.ranking import Ranking
from ranker.settings import Settings

PLAYERS = 40


async def fill(ranking: Ranking) -> None:
    # Scores with ties (every fourth player shares one), over both modes.
    for user in range(1, PLAYERS + 1):
        mode = "solo" if user % 2 else "team"
        await ranking.submit(SubmitRequest(user_id=user, score=(user // 4) * 10, game_mode=mode))


def reads_of_every_kind(ranking: Ranking) -> list[Any]:
    """One of each read, for present and absent players (not yet awaited)."""
    return [
        *(ranking.rank(user) for user in range(1, PLAYERS + 1)),
        ranking.rank(PLAYERS + 5),  # absent: a 404 of its own
        ranking.rank(3, "solo"),
        ranking.rank(3, "team"),  # on the other mode's board only: absent here
        ranking.top(10),
        ranking.top(100, "team"),
        ranking.around(17, 3),
        ranking.around(PLAYERS + 9, 3),
    ]


def settled(answer: Any) -> Any:
    """An answer, or the class and text of the error raised instead."""
    return (type(answer), str(answer)) if isinstance(answer, Exception) else answer


async def together(ranking: Ranking) -> list[Any]:
    """Every read at once: they reach the coalescer in one turn."""
    answers = await asyncio.gather(*reads_of_every_kind(ranking), return_exceptions=True)
    return [settled(a) for a in answers]


async def one_by_one(ranking: Ranking) -> list[Any]:
    answers = []
    for call in reads_of_every_kind(ranking):
        try:
            answers.append(await call)
        except Exception as exc:
            answers.append(settled(exc))
    return answers


async def test_a_batch_gives_each_caller_what_the_read_alone_gives(
    redis: Redis, settings: Settings, loaded: None
) -> None:
    alone = Ranking(redis, settings, reads=Coalescer(redis, enabled=False))
    reads = Coalescer(redis)
    batched = Ranking(redis, settings, reads=reads)
    await fill(alone)

    expected = await one_by_one(alone)
    got = await together(batched)

    assert got == expected
    assert (NotFound, f"player {PLAYERS + 5} has no score in the leaderboard") in got
    # Every read of the gather reached Redis in the same turn: one batch carried them all.
    assert (reads.batches, reads.reads) == (1, len(got))


async def test_an_error_reaches_only_the_caller_whose_read_failed(
    redis: Redis, settings: Settings, loaded: None
) -> None:
    ranking = Ranking(redis, settings)
    await fill(ranking)
    # A key of the wrong type: ZSCORE on it fails inside that one script.
    wrong = f"ranker:{{{settings.namespace}}}:not-a-board"
    await redis.set(wrong, "x")
    reads = ranking.reads
    keys_ok = [ranking.keys.marker, ranking.keys.board(GLOBAL), ranking.keys.names]
    keys_bad = [ranking.keys.marker, wrong, ranking.keys.names]
    script = ranking.scripts.rank
    answers = await asyncio.gather(
        reads.run(script, keys_ok, [5]),
        reads.run(script, keys_bad, [5]),
        reads.run(script, keys_ok, [6]),
        return_exceptions=True,
    )
    assert isinstance(answers[1], redis_errors.ResponseError)
    assert "WRONGTYPE" in str(answers[1])
    assert answers[0] == await script(keys_ok, [5])
    assert answers[2] == await script(keys_ok, [6])
    assert reads.batches == 1


async def test_a_batch_after_redis_lost_its_scripts_loads_them_and_answers(
    redis: Redis, settings: Settings, loaded: None
) -> None:
    ranking = Ranking(redis, settings)
    await fill(ranking)
    expected = await one_by_one(Ranking(redis, settings, reads=Coalescer(redis, enabled=False)))
    await redis.script_flush()
    assert await together(ranking) == expected
    # The reads met NOSCRIPT and were sent again: still one batch of the callers' reads.
    assert ranking.reads.batches == 1


async def test_a_lost_connection_fails_every_read_of_the_batch_as_unavailable(
    settings: Settings, unused_tcp_port: int
) -> None:
    nowhere = Redis.from_url(f"redis://127.0.0.1:{unused_tcp_port}/0", socket_connect_timeout=1)
    ranking = Ranking(nowhere, settings)
    try:
        answers = await asyncio.gather(
            *(ranking.rank(user) for user in range(5)), ranking.top(3), return_exceptions=True
        )
    finally:
        await nowhere.aclose()
    assert all(isinstance(a, RedisUnavailable) for a in answers), answers
    assert ranking.reads.batches == 1


async def test_a_caller_that_goes_away_leaves_the_others_their_answers(
    redis: Redis, settings: Settings, loaded: None
) -> None:
    ranking = Ranking(redis, settings)
    await fill(ranking)
    leaving = asyncio.ensure_future(ranking.rank(4))
    staying = [asyncio.ensure_future(ranking.rank(u)) for u in (5, 6, 7)]
    await asyncio.sleep(0)  # one turn: each task runs up to its read
    assert len(ranking.reads._batch) == 4  # all four joined the batch; it has not left yet
    leaving.cancel()
    answers = await asyncio.gather(*staying)
    assert [a.user_id for a in answers] == [5, 6, 7]
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert ranking.reads.reads == 4


async def test_a_read_sees_every_submission_answered_before_it(
    redis: Redis, settings: Settings, loaded: None
) -> None:
    """Batches never serve an older board: a read sent after a submission's answer, batched
    with many others, sees it, round after round."""
    ranking = Ranking(redis, settings)
    await fill(ranking)
    for round_ in range(1, 30):
        score = 10_000 + round_
        accepted = await ranking.submit(SubmitRequest(user_id=1, score=score, game_mode="solo"))
        answers = await asyncio.gather(
            ranking.rank(1), ranking.top(1), *(ranking.rank(u) for u in range(2, 12))
        )
        standing, top = answers[0], answers[1]
        assert standing.total_score == accepted.total_score
        assert standing.rank == 1
        assert top[0].user_id == 1 and top[0].total_score == accepted.total_score
