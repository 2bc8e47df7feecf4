"""I3: rank = 1 + the number of players with a strictly greater total (ties share a rank),
checked against PostgreSQL's ``RANK() OVER (ORDER BY score DESC)`` on random boards with
many ties; ``top`` is ordered the same way."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence import repository
from persistence.rebuild import Rebuild
from ranker.models import SubmitRequest
from ranker.ranking import Ranking
from ranker.settings import Settings
from ranker.shards import shards_of
from tests.fixtures.ranker import drain_all

#: The core tests run on the single server and on the local Redis Cluster, and these on the
#: cluster with sharded boards too.
pytestmark = [pytest.mark.cluster, pytest.mark.sharded]

# Few players and few distinct scores: most boards are full of ties.
submissions = st.lists(
    st.tuples(
        st.integers(1, 30), st.sampled_from([0, 1, 2, 3, 5, 8]), st.sampled_from(["solo", "team"])
    ),
    min_size=1,
    max_size=120,
)


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sessions=submissions)
async def test_rank_and_top_agree_with_sql_rank_on_boards_with_ties(
    sessions: list[tuple[int, int, str]],
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
) -> None:
    # A namespace and empty tables for each example: examples share the test's fixtures.
    settings = make_settings(namespace=f"h{uuid.uuid4().hex[:10]}")
    async with pool.connection() as conn:
        await conn.execute("TRUNCATE game_sessions, board_scores, players")
    await Rebuild(settings, redis, pool).run()
    ranking = Ranking(redis, settings)
    for user_id, score, mode in sessions:
        await ranking.submit(SubmitRequest(user_id=user_id, score=score, game_mode=mode))
    await drain_all(settings, redis, pool)

    for board, mode in [("global", None), ("mode-solo", "solo"), ("mode-team", "team")]:
        async with pool.connection() as conn:
            expected = await repository.select_sql_ranks(conn, board)
        for user_id, (total, rank) in expected.items():
            standing = await ranking.rank(user_id, mode)
            assert (standing.total_score, standing.rank) == (total, rank), (board, user_id)
        top = await ranking.top(100, mode)
        assert [(e.rank, e.total_score) for e in top] == sorted(
            ((rank, total) for total, rank in expected.values()), key=lambda rt: rt[0]
        )
        assert all(expected[e.user_id] == (e.total_score, e.rank) for e in top)
    for keys in shards_of(settings.namespace, settings.board_shards).parts:
        tag = keys.tag or keys.namespace
        if found := [key async for key in redis.scan_iter(f"ranker:{{{tag}}}:*")]:
            await redis.delete(*found)
