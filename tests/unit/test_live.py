"""The hub of live streams (ranker/api/live.py) on a read made up by each test: one feed per
watched page, the same bytes for every stream, an event only when the page changes, the latest
one for a slow stream, one ``unavailable`` per outage, and feeds that stop with their streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ranker.api.live import RETRY, Hub, Stream, Watched
from ranker.errors import NotFound, RankerError, RedisUnavailable
from ranker.models import BoardEntry, BoardPage

TICK_S = 0.01
WATCHED = Watched("global", "current", 10)


def page(*scores: int, period: str = "all") -> BoardPage:
    entries = [BoardEntry(rank=i + 1, user_id=i + 1, score=score) for i, score in enumerate(scores)]
    return BoardPage(
        board="global", period=period, members=len(scores), entries=entries, next_cursor=None
    )


class Board:
    """What the feed's reads find: a page, or an error to raise; each read is counted."""

    def __init__(self, shown: BoardPage) -> None:
        self.shown = shown
        self.failing: RankerError | None = None
        self.reads = 0
        self.read_again = asyncio.Event()

    async def read(self, watched: Watched, shown: BoardPage | None) -> BoardPage | None:
        self.reads += 1
        self.read_again.set()
        if self.failing is not None:
            raise self.failing
        return self.shown

    async def reads_more(self, n: int) -> None:
        """Return once the feed has read ``n`` more times."""
        target = self.reads + n
        while self.reads < target:
            self.read_again.clear()
            await asyncio.wait_for(self.read_again.wait(), 5)


@pytest.fixture
async def board() -> Board:
    return Board(page(30, 20, 10))


@pytest.fixture
async def hub(board: Board) -> AsyncIterator[Hub]:
    live = Hub(board.read, TICK_S, max_streams=3, retry_after_s=1)
    yield live
    await live.close()


def parsed(raw: bytes) -> tuple[str, int, Any]:
    kind, event_id, data = raw.decode().removesuffix("\n\n").split("\n")
    return (
        kind.removeprefix("event: "),
        int(event_id.removeprefix("id: ")),
        json.loads(data.removeprefix("data: ")),
    )


async def next_event(events: AsyncIterator[bytes]) -> tuple[str, int, Any]:
    return parsed(await asyncio.wait_for(anext(events), 5))


async def opened(hub: Hub, lifetime_s: float = 60) -> tuple[Stream, AsyncIterator[bytes]]:
    stream = await hub.subscribe(WATCHED)
    events = stream.events(lifetime_s)
    assert await anext(events) == RETRY
    return stream, events


async def test_the_first_event_is_the_page_and_the_next_comes_with_a_change(
    hub: Hub, board: Board
) -> None:
    _, events = await opened(hub)
    kind, first_id, data = await next_event(events)
    assert (kind, data) == ("top", page(30, 20, 10).model_dump())

    await board.reads_more(3)  # unchanged: nothing to send
    board.shown = page(40, 30, 20)
    kind, second_id, data = await next_event(events)
    assert (kind, data["entries"][0]["score"]) == ("top", 40)
    assert second_id > first_id


async def test_every_stream_of_a_page_shares_one_feed_and_the_same_bytes(
    hub: Hub, board: Board
) -> None:
    streams = [await opened(hub) for _ in range(3)]
    assert hub.streams == 3
    firsts = [await anext(events) for _, events in streams]
    board.shown = page(50)
    changes = [await asyncio.wait_for(anext(events), 5) for _, events in streams]

    assert all(raw is firsts[0] for raw in firsts)  # one encoding, handed to all
    assert all(raw is changes[0] for raw in changes)
    reads = board.reads
    await board.reads_more(2)
    assert board.reads == reads + 2  # one feed reads, not three


async def test_a_slow_stream_gets_only_the_latest_page(hub: Hub, board: Board) -> None:
    _, events = await opened(hub)
    await next_event(events)
    for top in (41, 42, 43):
        board.shown = page(top)
        await board.reads_more(2)

    _, _, data = await next_event(events)
    assert data["entries"][0]["score"] == 43


async def test_a_rolled_over_period_is_a_change(hub: Hub, board: Board) -> None:
    _, events = await opened(hub)
    await next_event(events)
    board.shown = page(30, 20, 10, period="2026-W02")

    _, _, data = await next_event(events)
    assert data["period"] == "2026-W02"


async def test_an_outage_sends_one_unavailable_then_the_page_again(hub: Hub, board: Board) -> None:
    _, events = await opened(hub)
    await next_event(events)
    board.failing = RedisUnavailable("Redis is unavailable; retry shortly", "refused")

    kind, _, problem = await next_event(events)
    assert (kind, problem["status"], problem["detail"]) == (
        "unavailable",
        503,
        "Redis is unavailable; retry shortly",
    )
    with pytest.raises(RedisUnavailable):  # a newcomer is refused while it lasts
        await hub.subscribe(WATCHED)
    await board.reads_more(3)
    board.failing = None

    kind, _, data = await next_event(events)  # the same page, sent again
    assert (kind, data) == ("top", page(30, 20, 10).model_dump())


async def test_a_board_gone_ends_the_stream_after_saying_so(hub: Hub, board: Board) -> None:
    _, events = await opened(hub)
    await next_event(events)
    board.failing = NotFound("there is no board 'global'")

    kind, _, problem = await next_event(events)
    assert (kind, problem["status"]) == ("unavailable", 404)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(events), 5)
    assert hub.streams == 0


async def test_the_last_stream_to_leave_stops_the_feed(hub: Hub, board: Board) -> None:
    _, first_events = await opened(hub)
    _, second_events = await opened(hub)
    await first_events.aclose()  # a response ended: its stream leaves
    assert hub.watched() == [WATCHED]  # the other still watches

    await second_events.aclose()
    assert hub.streams == 0
    for _ in range(100):  # the feed sees it at its next tick
        if not hub.watched():
            break
        await asyncio.sleep(TICK_S)
    assert hub.watched() == []
    _, events = await opened(hub)  # a new stream starts a new feed
    assert hub.watched() == [WATCHED]
    await next_event(events)


async def test_a_stream_ends_with_its_lifetime(hub: Hub) -> None:
    _, events = await opened(hub, lifetime_s=0.05)
    await next_event(events)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(events), 5)


async def test_past_the_most_streams_a_newcomer_is_refused(hub: Hub) -> None:
    for _ in range(3):
        await opened(hub)
    with pytest.raises(RankerError) as refused:
        await hub.subscribe(WATCHED)
    assert refused.value.status == 503
    assert refused.value.headers == {"Retry-After": "1"}


def test_a_lifetime_is_at_most_the_setting_and_spread_below_it() -> None:
    live = Hub(Board(page()).read, TICK_S, max_streams=1, retry_after_s=1)
    lifetimes = [live.lifetime_s(300) for _ in range(200)]
    assert all(270 <= life <= 300 for life in lifetimes)
    assert max(lifetimes) - min(lifetimes) > 10
