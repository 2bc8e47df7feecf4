"""Reads of a sharded board (ranker.fanout through ranker.pages) on fakeredis, against a
reference model of board order over shards: score, then shard, then member order."""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ranker.definitions import Order
from ranker.errors import InvalidInput, NotFound, NotReady
from ranker.fanout import Part
from ranker.models import BoardEntry
from ranker.pages import Pages, encode_cursor
from ranker.placements import Placement
from ranker.settings import Settings
from ranker.shards import Shards, shard_of, shard_tag
from tests.unit.test_pages import BOARD, ORDERS, PERIOD, examples, scores

SHARDS = 3
SETTINGS = Settings(
    redis_url="redis://unused",
    database_url="postgresql://unused",
    namespace="unit",
    board_shards=SHARDS,
)
SLOT = f"{BOARD}/{PERIOD}"
PARTS = [Part(keys, keys.board(SLOT)) for keys in Shards("unit", SHARDS).parts]
# The boards of test_pages (few scores, ids whose text sorts apart from their value), a little
# larger: three shards of them.
boards = st.dictionaries(st.integers(1, 120), scores, max_size=30)


@pytest.fixture
async def redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis()
    for part in PARTS:
        await client.set(part.keys.marker, "loaded")
    yield client
    await client.aclose()


@pytest.fixture
def pages(redis: fakeredis.FakeAsyncRedis) -> Pages:
    return Pages(redis, SETTINGS)


async def load(redis: fakeredis.FakeAsyncRedis, board: dict[int, int]) -> None:
    for part in PARTS:
        await redis.delete(part.key)
        await redis.set(part.keys.marker, "loaded")  # an example may have removed one
    for user, score in board.items():
        await redis.zadd(PARTS[shard_of(user, SHARDS)].key, {str(user): score})


def reference(board: dict[int, int], order: Order) -> list[BoardEntry]:
    """The board by definition: by score, ties by shard and then by member text (reversed on
    desc boards, as ZREVRANGE reverses ZRANGE), ranks 1 + the strictly better."""

    def rank(score: int) -> int:
        return 1 + sum(1 for s in board.values() if (s > score if order == "desc" else s < score))

    def by_member(user: int) -> list[int]:
        text = [ord(c) for c in str(user)]
        return [-c for c in text] + [1] if order == "desc" else text

    def key(item: tuple[int, int]) -> tuple[int, int, list[int]]:
        user, score = item
        return (-score if order == "desc" else score, shard_of(user, SHARDS), by_member(user))

    ordered = sorted(board.items(), key=key)
    return [BoardEntry(user_id=u, score=s, rank=rank(s)) for u, s in ordered]


def test_each_shard_has_a_tag_of_its_own_in_its_share_of_the_slots() -> None:
    from redis.crc import key_slot

    tags = [shard_tag("unit", i, SHARDS) for i in range(SHARDS)]
    assert len(set(tags)) == SHARDS
    slots = [key_slot(f"{{{tag}}}".encode()) for tag in tags]
    assert [slot * SHARDS // 16384 for slot in slots] == list(range(SHARDS))
    assert Shards("unit").parts[0].marker == "ranker:{unit}:marker"  # one shard: nothing moves


@examples
@given(board=boards, order=st.sampled_from(ORDERS), limit=st.integers(1, 8))
async def test_walking_every_page_yields_the_board_in_order_with_exact_ranks(
    redis: fakeredis.FakeAsyncRedis, pages: Pages, board: dict[int, int], order: Order, limit: int
) -> None:
    await load(redis, board)
    walked: list[BoardEntry] = []
    cursor = None
    for _ in range(len(board) + 2):
        page = await pages.top(PARTS, BOARD, PERIOD, order, limit, cursor)
        assert page.members == len(board)
        assert len(page.entries) <= limit
        walked += page.entries
        cursor = page.next_cursor
        if cursor is None:
            break
    assert walked == reference(board, order)


@examples
@given(board=boards, order=st.sampled_from(ORDERS), data=st.data())
async def test_a_player_and_the_window_around_them_match_the_reference(
    redis: fakeredis.FakeAsyncRedis,
    pages: Pages,
    board: dict[int, int],
    order: Order,
    data: st.DataObject,
) -> None:
    await load(redis, board)
    expected = reference(board, order)
    user = data.draw(st.integers(1, 125))
    limit = data.draw(st.integers(1, 9))
    if user not in board:
        with pytest.raises(NotFound):
            await pages.player(PARTS, BOARD, PERIOD, order, user)
        with pytest.raises(NotFound):
            await pages.around(PARTS, BOARD, PERIOD, order, user, limit)
        return
    position = next(i for i, e in enumerate(expected) if e.user_id == user)
    player = await pages.player(PARTS, BOARD, PERIOD, order, user)
    assert (player.score, player.rank, player.members) == (
        board[user],
        expected[position].rank,
        len(board),
    )
    start = max(0, min(position - (limit - 1) // 2, len(board) - limit))
    window = await pages.around(PARTS, BOARD, PERIOD, order, user, limit)
    assert window.entries == expected[start : start + limit]


@examples
@given(
    board=boards, order=st.sampled_from(ORDERS), asked=st.lists(st.integers(1, 125), max_size=12)
)
async def test_a_friends_lookup_is_in_board_order_with_exact_ranks(
    redis: fakeredis.FakeAsyncRedis,
    pages: Pages,
    board: dict[int, int],
    order: Order,
    asked: list[int],
) -> None:
    await load(redis, board)
    found = await pages.lookup(PARTS, BOARD, PERIOD, order, asked)
    wanted = set(asked)
    assert found.entries == [e for e in reference(board, order) if e.user_id in wanted]
    assert found.missing == [u for u in dict.fromkeys(asked) if u not in board]
    assert found.members == len(board)


async def test_a_cursor_of_another_shard_count_is_refused(
    redis: fakeredis.FakeAsyncRedis, pages: Pages
) -> None:
    await load(redis, {1: 5, 2: 6, 3: 7})
    for cursor in (encode_cursor(BOARD, PERIOD, 1), encode_cursor(BOARD, PERIOD, [1, 0])):
        with pytest.raises(InvalidInput) as refused:
            await pages.top(PARTS, BOARD, PERIOD, "desc", 2, cursor)
        assert [e.field for e in refused.value.errors] == ["cursor"]


async def test_a_shard_not_loaded_makes_every_read_wait(
    redis: fakeredis.FakeAsyncRedis, pages: Pages
) -> None:
    await load(redis, {1: 5, 2: 6, 3: 7})
    await redis.delete(PARTS[2].keys.marker)
    with pytest.raises(NotReady):
        await pages.top(PARTS, BOARD, PERIOD, "desc", 2, None)
    with pytest.raises(NotReady):
        await pages.player(PARTS, BOARD, PERIOD, "desc", 1)


@examples
@given(board=boards, order=st.sampled_from(ORDERS), data=st.data())
async def test_a_submission_s_rank_adds_the_other_shards_ahead_of_it(
    redis: fakeredis.FakeAsyncRedis,
    pages: Pages,
    board: dict[int, int],
    order: Order,
    data: st.DataObject,
) -> None:
    await load(redis, board)
    if not board:
        return
    user = data.draw(st.sampled_from(sorted(board)))
    shards = Shards("unit", SHARDS)
    own = shards.of(user)
    score = board[user]
    mine = [s for u, s in board.items() if shards.of(u) == own]
    in_shard = 1 + sum(1 for s in mine if (s > score if order == "desc" else s < score))
    placement = Placement(BOARD, PERIOD, "h" if order == "desc" else "l", order, 0)

    standings, loaded = await pages.fanout.submitted(
        shards, own, [placement], [str(score).encode(), in_shard]
    )

    expected = next(e.rank for e in reference(board, order) if e.user_id == user)
    assert loaded
    assert standings == [str(score).encode(), expected]
    await redis.delete(PARTS[(shard_of(user, SHARDS) + 1) % SHARDS].keys.marker)
    assert (await pages.fanout.submitted(shards, own, [placement], [b"1", 1]))[1] is False
