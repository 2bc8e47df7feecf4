"""Reads of board periods and their Lua scripts on fakeredis, against a reference model."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import get_args

import fakeredis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ranker.definitions import Order
from ranker.errors import InvalidInput, NotFound, NotReady
from ranker.keys import Keys
from ranker.models import BoardEntry, page_json
from ranker.pages import Pages, decode_cursor, encode_cursor
from ranker.settings import Settings

SETTINGS = Settings(
    redis_url="redis://unused", database_url="postgresql://unused", namespace="unit"
)
KEYS = Keys("unit")
BOARD, PERIOD = "weekly-best", "2026-W49"
KEY = KEYS.board(f"{BOARD}/{PERIOD}")
ORDERS: tuple[Order, ...] = get_args(Order)

# Few distinct scores (negative and large ones too) and user ids past 9, whose text sorts
# apart from their value ("10" < "9"): boards full of ties ordered by member text.
scores = st.sampled_from([-3, 0, 1, 2, 5, 8, 2**40])
boards = st.dictionaries(st.integers(1, 120), scores, max_size=25)
# Examples share the test's fixtures; each loads its own board first.
examples = hypothesis_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
async def redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis()
    await client.set(KEYS.marker, "loaded")
    yield client
    await client.aclose()


@pytest.fixture
def pages(redis: fakeredis.FakeAsyncRedis) -> Pages:
    return Pages(redis, SETTINGS)


async def load(redis: fakeredis.FakeAsyncRedis, board: dict[int, int]) -> None:
    await redis.delete(KEY)
    if board:
        await redis.zadd(KEY, {str(user): score for user, score in board.items()})


def reference(board: dict[int, int], order: Order) -> list[BoardEntry]:
    """The board by definition: sorted by score, ties by member text (both reversed on desc,
    as ZREVRANGE reverses ZRANGE), each ranked 1 + the number of strictly better scores."""

    def rank(score: int) -> int:
        better = [s for s in board.values() if (s > score if order == "desc" else s < score)]
        return 1 + len(better)

    ordered = sorted(board.items(), key=lambda us: (us[1], str(us[0])), reverse=order == "desc")
    return [BoardEntry(user_id=user, score=score, rank=rank(score)) for user, score in ordered]


def forged(payload: str) -> str:
    """A cursor of any text with a valid check (the check is unkeyed)."""
    raw = payload.encode()
    check = hashlib.blake2b(raw, digest_size=4, person=b"ranker-cursor").digest()
    return base64.urlsafe_b64encode(raw + check).rstrip(b"=").decode()


def assert_names_the_cursor(error: InvalidInput) -> None:
    assert error.status == 400
    assert [e.field for e in error.errors] == ["cursor"]


@examples
@given(board=boards, order=st.sampled_from(ORDERS), limit=st.integers(1, 8))
async def test_walking_every_page_yields_every_member_once_in_board_order_with_ranks(
    redis: fakeredis.FakeAsyncRedis, pages: Pages, board: dict[int, int], order: Order, limit: int
) -> None:
    await load(redis, board)
    walked: list[BoardEntry] = []
    cursor = None
    while True:
        page = await pages.top(KEY, BOARD, PERIOD, order, limit, cursor)
        assert (page.board, page.period, page.members) == (BOARD, PERIOD, len(board))
        assert len(page.entries) == min(limit, len(board) - len(walked))
        walked += page.entries
        cursor = page.next_cursor
        if cursor is None:
            break

    assert walked == reference(board, order)


@examples
@given(board=boards, order=st.sampled_from(ORDERS), limit=st.integers(1, 8), data=st.data())
async def test_a_page_from_any_offset_is_that_slice_of_the_reference(
    redis: fakeredis.FakeAsyncRedis,
    pages: Pages,
    board: dict[int, int],
    order: Order,
    limit: int,
    data: st.DataObject,
) -> None:
    await load(redis, board)
    offset = data.draw(st.integers(0, len(board) + 2), label="offset")

    page = await pages.top(KEY, BOARD, PERIOD, order, limit, encode_cursor(BOARD, PERIOD, offset))

    assert page.entries == reference(board, order)[offset : offset + limit]
    assert (page.next_cursor is None) == (offset + limit >= len(board))
    if page.next_cursor is not None:
        assert decode_cursor(page.next_cursor, BOARD, PERIOD) == offset + limit


@examples
@given(board=boards.filter(bool), order=st.sampled_from(ORDERS), data=st.data())
async def test_a_players_rank_and_percentile_match_the_reference(
    redis: fakeredis.FakeAsyncRedis,
    pages: Pages,
    board: dict[int, int],
    order: Order,
    data: st.DataObject,
) -> None:
    await load(redis, board)
    user = data.draw(st.sampled_from(sorted(board)), label="user")
    [expected] = [e for e in reference(board, order) if e.user_id == user]

    player = await pages.player(KEY, BOARD, PERIOD, order, user)

    assert (player.user_id, player.score, player.rank) == (user, expected.score, expected.rank)
    assert (player.members, player.period) == (len(board), PERIOD)
    assert player.percentile == round(100 * (len(board) - expected.rank) / len(board), 2)


@examples
@given(
    board=boards.filter(bool),
    order=st.sampled_from(ORDERS),
    limit=st.integers(1, 9),
    data=st.data(),
)
async def test_around_is_a_full_window_containing_the_player(
    redis: fakeredis.FakeAsyncRedis,
    pages: Pages,
    board: dict[int, int],
    order: Order,
    limit: int,
    data: st.DataObject,
) -> None:
    await load(redis, board)
    expected = reference(board, order)
    user = data.draw(st.sampled_from(sorted(board)), label="user")
    position = [e.user_id for e in expected].index(user)
    start = min(max(position - (limit - 1) // 2, 0), max(0, len(board) - limit))

    page = await pages.around(KEY, BOARD, PERIOD, order, user, limit)

    assert page.entries == expected[start : start + limit]
    assert len(page.entries) == min(limit, len(board))  # full at the top and the bottom too
    assert user in [e.user_id for e in page.entries]
    assert (page.members, page.next_cursor) == (len(board), None)


@examples
@given(
    board=boards,
    order=st.sampled_from(ORDERS),
    asked=st.lists(st.integers(1, 130), min_size=1, max_size=30),
)
async def test_lookup_lists_the_present_in_board_order_and_the_missing_in_request_order(
    redis: fakeredis.FakeAsyncRedis,
    pages: Pages,
    board: dict[int, int],
    order: Order,
    asked: list[int],
) -> None:
    await load(redis, board)

    found = await pages.lookup(KEY, BOARD, PERIOD, order, asked)

    assert found.entries == [e for e in reference(board, order) if e.user_id in asked]
    assert found.missing == [user for user in dict.fromkeys(asked) if user not in board]
    assert (found.board, found.period, found.members) == (BOARD, PERIOD, len(board))


@pytest.mark.parametrize(
    ("order", "expected"),
    # Ties in member order on asc, reversed on desc (ZREVRANGE reverses ZRANGE): 3 before 1.
    [("desc", [(1, 3, 20), (1, 1, 20), (3, 2, 10), (4, 4, 5)]), ("asc", [(1, 4, 5), (2, 2, 10)])],
)
async def test_the_first_page_ranks_ties_alike_on_either_order(
    redis: fakeredis.FakeAsyncRedis,
    pages: Pages,
    order: Order,
    expected: list[tuple[int, int, int]],
) -> None:
    await load(redis, {1: 20, 2: 10, 3: 20, 4: 5})
    limit = len(expected)

    page = await pages.top(KEY, BOARD, PERIOD, order, limit, None)

    assert [(e.rank, e.user_id, e.score) for e in page.entries] == expected
    assert page.members == 4
    assert (page.next_cursor is None) == (limit == 4)


async def test_a_page_that_starts_inside_a_tie_ranks_its_first_entry_with_the_tie(
    redis: fakeredis.FakeAsyncRedis, pages: Pages
) -> None:
    await load(redis, {1: 9, 2: 7, 3: 7, 4: 7, 5: 1})

    page = await pages.top(KEY, BOARD, PERIOD, "desc", 2, encode_cursor(BOARD, PERIOD, 2))

    assert [(e.rank, e.user_id) for e in page.entries] == [(2, 3), (2, 2)]


async def test_an_even_window_puts_the_player_just_above_the_middle(
    redis: fakeredis.FakeAsyncRedis, pages: Pages
) -> None:
    await load(redis, {user: 100 - user for user in range(1, 11)})  # user n ranks n

    page = await pages.around(KEY, BOARD, PERIOD, "desc", 6, 4)

    assert [e.user_id for e in page.entries] == [5, 6, 7, 8]


async def test_percentile_is_the_share_ranked_below(
    redis: fakeredis.FakeAsyncRedis, pages: Pages
) -> None:
    await load(redis, {1: 10, 2: 20, 3: 20, 4: 5, 5: 1, 6: 0})

    first = await pages.player(KEY, BOARD, PERIOD, "desc", 2)
    third = await pages.player(KEY, BOARD, PERIOD, "desc", 1)
    last = await pages.player(KEY, BOARD, PERIOD, "asc", 2)

    assert (first.rank, first.percentile) == (1, 83.33)
    assert (third.rank, third.percentile) == (3, 50.0)
    assert (last.rank, last.percentile) == (5, 16.67)


async def test_lookup_counts_a_player_asked_twice_once(
    redis: fakeredis.FakeAsyncRedis, pages: Pages
) -> None:
    await load(redis, {1: 3, 2: 5})

    found = await pages.lookup(KEY, BOARD, PERIOD, "desc", [1, 7, 1, 2, 7])

    assert [(e.user_id, e.rank) for e in found.entries] == [(2, 1), (1, 2)]
    assert found.missing == [7]


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        "abc=",
        "a",
        "x" * 500,
        encode_cursor(BOARD, PERIOD, 5)[:-2],  # truncated
        "B" + encode_cursor(BOARD, PERIOD, 5)[1:],  # altered (it starts with "d")
        encode_cursor(BOARD, PERIOD, 5) + "\n",
        encode_cursor(BOARD, PERIOD, 5).replace("-", "+").replace("_", "/") + "+/",
        forged(f"{BOARD}|{PERIOD}|-1"),
        forged(f"{BOARD}|{PERIOD}|+1"),
        forged(f"{BOARD}|{PERIOD}|1_000"),
        forged(f"{BOARD}|{PERIOD}|" + "9" * 30),
        forged(f"{BOARD}|{PERIOD}"),
        forged(f"{BOARD}|{PERIOD}|1|2"),
    ],
)
async def test_a_malformed_cursor_is_a_400_naming_the_cursor(
    redis: fakeredis.FakeAsyncRedis, pages: Pages, cursor: str
) -> None:
    await load(redis, {1: 1, 2: 2})

    with pytest.raises(InvalidInput) as caught:
        await pages.top(KEY, BOARD, PERIOD, "desc", 10, cursor)

    assert_names_the_cursor(caught.value)


@pytest.mark.parametrize(("board", "period"), [("daily-best", PERIOD), (BOARD, "2026-W48")])
async def test_a_cursor_of_another_board_or_period_is_a_400_naming_the_cursor(
    redis: fakeredis.FakeAsyncRedis, pages: Pages, board: str, period: str
) -> None:
    await load(redis, {user: user for user in range(1, 6)})
    elsewhere = await pages.top(KEY, board, period, "desc", 2, None)
    assert elsewhere.next_cursor is not None

    with pytest.raises(InvalidInput) as caught:
        await pages.top(KEY, BOARD, PERIOD, "desc", 2, elsewhere.next_cursor)

    assert_names_the_cursor(caught.value)
    assert "another board or period" in caught.value.detail


@examples
@given(board=boards, order=st.sampled_from(ORDERS), limit=st.integers(1, 8), data=st.data())
async def test_a_page_body_is_the_json_of_the_page_whether_copied_or_read(
    redis: fakeredis.FakeAsyncRedis,
    board: dict[int, int],
    order: Order,
    limit: int,
    data: st.DataObject,
) -> None:
    pages = Pages(redis, SETTINGS)  # a cache of its own per example
    await load(redis, board)
    offset = data.draw(st.integers(0, len(board) + 2), label="offset")
    cursor = encode_cursor(BOARD, PERIOD, offset) if offset else None

    async def both() -> tuple[bytes, bytes]:
        body = await pages.top_body(KEY, BOARD, PERIOD, order, limit, cursor)
        return body, page_json(await pages.top(KEY, BOARD, PERIOD, order, limit, cursor))

    read, expected = await both()
    copied, _ = await both()
    assert read == copied == expected
    # A writer's change bumps the version (as every script writing a board does) ...
    await redis.zadd(KEY, {"999": 3})
    await redis.incr(KEYS.pages_version)
    changed, expected = await both()
    assert changed == expected != read
    # ... and a board gone by its TTL bumps nothing: its copy is not sent.
    await redis.delete(KEY)
    gone, expected = await both()
    assert gone == expected and b'"members":0' in gone


async def test_a_page_body_is_refused_while_the_marker_is_missing_even_with_a_copy(
    redis: fakeredis.FakeAsyncRedis, pages: Pages
) -> None:
    await load(redis, {1: 1, 2: 5})
    await pages.top_body(KEY, BOARD, PERIOD, "desc", 10, None)
    await redis.delete(KEYS.marker)

    with pytest.raises(NotReady):
        await pages.top_body(KEY, BOARD, PERIOD, "desc", 10, None)


async def test_every_read_refuses_while_the_marker_is_missing(
    redis: fakeredis.FakeAsyncRedis, pages: Pages
) -> None:
    await load(redis, {1: 1})
    await redis.delete(KEYS.marker)

    with pytest.raises(NotReady):
        await pages.top(KEY, BOARD, PERIOD, "desc", 10, None)
    with pytest.raises(NotReady):
        await pages.player(KEY, BOARD, PERIOD, "desc", 1)
    with pytest.raises(NotReady):
        await pages.around(KEY, BOARD, PERIOD, "asc", 1, 5)
    with pytest.raises(NotReady):
        await pages.lookup(KEY, BOARD, PERIOD, "asc", [1])


async def test_an_absent_player_is_not_found_without_naming_a_redis_key(
    redis: fakeredis.FakeAsyncRedis, pages: Pages
) -> None:
    await load(redis, {1: 1})
    expected = f"player 42 has no score on board {BOARD} in period {PERIOD}"

    with pytest.raises(NotFound) as by_player:
        await pages.player(KEY, BOARD, PERIOD, "desc", 42)
    with pytest.raises(NotFound) as by_around:
        await pages.around(KEY, BOARD, PERIOD, "asc", 42, 5)

    for caught in (by_player, by_around):
        assert caught.value.detail == expected
        assert "ranker:" not in caught.value.detail


async def test_an_empty_or_missing_board_reads_as_empty(
    redis: fakeredis.FakeAsyncRedis, pages: Pages
) -> None:
    await load(redis, {})

    page = await pages.top(KEY, BOARD, PERIOD, "asc", 10, None)
    found = await pages.lookup(KEY, BOARD, PERIOD, "asc", [3, 4])

    assert (page.members, page.entries, page.next_cursor) == (0, [], None)
    assert (found.entries, found.missing) == ([], [3, 4])


@pytest.mark.parametrize("limit", [0, -1])
async def test_a_limit_below_one_is_a_bug_of_the_caller(pages: Pages, limit: int) -> None:
    with pytest.raises(ValueError):
        await pages.top(KEY, BOARD, PERIOD, "desc", limit, None)
    with pytest.raises(ValueError):
        await pages.around(KEY, BOARD, PERIOD, "desc", 1, limit)
