"""The live stream of a board's top page (``GET /api/boards/{board_id}/stream``) on a real
``ranker serve``, read as it arrives: its first event is the page, a change is pushed within a
tick, the feed reads Redis once a tick however many streams watch, streams get at most an
event a tick, bad requests are refused before any stream, and streams end with their lifetime,
through a Redis outage (``unavailable``) and at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from ranker.settings import Settings
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.ranker import ADMIN_KEY, Processes, auth_headers, wait_for

TICK_S = 0.25
STREAM = "/api/boards/{board}/stream"
TOP = "/api/boards/{board}/top"
#: A board with a ranking from the start: players 1..PLAYERS with scores 100, 200, ...
PLAYERS = 20


@dataclass
class Received:
    """One event of a stream, and when it arrived (``time.monotonic()``)."""

    kind: str
    id: int
    data: Any
    at: float


@dataclass
class Listening:
    """An open stream, read by a task of its own: every event and comment as it arrives."""

    response: httpx.Response
    events: list[Received] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    ended_at: float | None = None
    error: BaseException | None = None

    async def read(self) -> None:
        buffer = b""
        try:
            async for chunk in self.response.aiter_raw():
                buffer += chunk
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    self._parse(block.decode(), time.monotonic())
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()

    def _parse(self, block: str, at: float) -> None:
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "retry":
                self.retry = int(value)
            else:
                fields[name] = value
        if data:
            self.events.append(
                Received(fields["event"], int(fields["id"]), json.loads("\n".join(data)), at)
            )

    def tops(self) -> list[Received]:
        return [event for event in self.events if event.kind == "top"]

    async def until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        async def holds() -> bool:
            if self.ended_at is not None and not condition():
                pytest.fail(f"the stream ended waiting for {what} ({self.error!r})")
            return condition()

        await wait_for(holds, timeout_s, what)


@contextlib.asynccontextmanager
async def listening(http: httpx.AsyncClient, board: str, **params: Any) -> AsyncIterator[Listening]:
    """An open stream of ``board`` (it must answer 200), read until the block ends."""
    async with http.stream("GET", STREAM.format(board=board), params=params) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Listening(response)
        task = asyncio.create_task(stream.read())
        try:
            yield stream
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    timeout = httpx.Timeout(10.0, read=30.0)
    async with httpx.AsyncClient(
        base_url=url, headers=auth_headers(), limits=limits, timeout=timeout
    ) as http:
        yield http


_sessions = itertools.count()


async def submit(http: httpx.AsyncClient, user_id: int, score: int) -> None:
    body = {"user_id": user_id, "score": score, "session_id": f"st-{next(_sessions)}"}
    response = await http.post("/api/leaderboard/submit", json=body)
    assert response.status_code == 200, response.text


async def ranked_board(http: httpx.AsyncClient) -> None:
    """Players 1..PLAYERS on the global board, player n with 100 * n."""
    await asyncio.gather(*(submit(http, n, 100 * n) for n in range(1, PLAYERS + 1)))


async def metric(http: httpx.AsyncClient, name: str) -> float:
    """A sample of the server's /metrics without labels (0 when absent)."""
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


async def reads(http: httpx.AsyncClient) -> float:
    """The feeds' reads of Redis so far."""
    return await metric(http, "ranker_stream_reads_total")


@contextlib.asynccontextmanager
async def flowing(http: httpx.AsyncClient, senders: int = 4) -> AsyncIterator[list[int]]:
    """Submissions that keep changing the top (ever higher scores) for the block; yields the
    count of those accepted so far, as a one-element list."""
    stop = asyncio.Event()
    accepted = [0]

    async def send(index: int) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            await submit(http, 1000 + index * 100_000 + n, 10_000 + 10 * n)
            accepted[0] += 1

    tasks = [asyncio.create_task(send(i)) for i in range(senders)]
    try:
        yield accepted
    finally:
        stop.set()
        await asyncio.gather(*tasks)


@pytest.fixture
async def served(processes: Processes, loaded: None) -> AsyncIterator[tuple[str, Any]]:
    """``ranker serve`` of the test's settings (no worker: nothing here needs PostgreSQL)."""
    yield await processes.serve("--no-worker")


@pytest.mark.cluster
@pytest.mark.sharded  # the feed reads merged pages
async def test_the_first_event_is_the_top_page_and_a_change_is_pushed_within_a_second(
    served: tuple[str, Any],
) -> None:
    url, _ = served
    async with client(url) as http:
        await ranked_board(http)
        top = (await http.get(TOP.format(board="global"), params={"limit": 5})).json()

        async with listening(http, "global", limit=5) as stream:
            await stream.until(lambda: len(stream.events) >= 1, 5, "the first event")
            assert stream.retry == 1000
            first = stream.events[0]
            assert first.kind == "top"
            assert first.data == top  # exactly what GET top answers
            assert [e["user_id"] for e in first.data["entries"]] == [20, 19, 18, 17, 16]

            submitted = time.monotonic()
            await submit(http, 7, 10_000)  # player 7 goes to the top
            await stream.until(lambda: len(stream.events) >= 2, 5, "the change")
            changed = stream.events[1]
            assert changed.kind == "top" and changed.id > first.id
            assert changed.data["entries"][0] == {
                "rank": 1,
                "user_id": 7,
                "score": 10_700,
                "username": None,
            }
            assert changed.at - submitted < 1.0
            assert (
                changed.data
                == (await http.get(TOP.format(board="global"), params={"limit": 5})).json()
            )


async def feed_reads_while_flowing(
    http: httpx.AsyncClient, streams: list[Listening], seconds: float
) -> tuple[float, float, int]:
    """(reads of the feeds, seconds elapsed, submissions) while the top keeps changing for
    ``seconds``; the streams receive events all along."""
    async with flowing(http) as accepted:
        before, started = await reads(http), time.monotonic()
        counts = [len(stream.events) for stream in streams]
        await wait_for(lambda: _after(started, seconds), seconds + 5, f"{seconds} s of submissions")
        after, elapsed = await reads(http), time.monotonic() - started
    assert all(len(s.events) > n + 2 for s, n in zip(streams, counts, strict=True))
    return after - before, elapsed, accepted[0]


async def _after(started: float, seconds: float) -> bool:
    return time.monotonic() - started >= seconds


@pytest.mark.cluster
@pytest.mark.parametrize("watchers", [1, 30])
async def test_the_feed_reads_redis_once_a_tick_however_many_streams_watch(
    served: tuple[str, Any], watchers: int
) -> None:
    url, _ = served
    async with client(url) as http, contextlib.AsyncExitStack() as stack:
        await ranked_board(http)
        streams = [
            await stack.enter_async_context(listening(http, "global")) for _ in range(watchers)
        ]
        for stream in streams:
            await stream.until(lambda s=stream: bool(s.events), 5, "the first event")

        read, elapsed, submitted = await feed_reads_while_flowing(http, streams, 2.0)

        print(f"{watchers} streams: {read:.0f} reads in {elapsed:.2f} s, {submitted} submissions")
        assert submitted > 2 * elapsed / TICK_S  # more submissions than ticks
        # One feed for all the streams: a read a tick (the one of each end of the window).
        assert read <= elapsed / TICK_S + 2
        assert read >= elapsed / TICK_S / 2  # and it does read: the events came from somewhere

        # Once the flow stops, every stream has every event since the last one joined.
        last = max(stream.events[-1].id for stream in streams)
        for stream in streams:
            await stream.until(lambda s=stream: s.events[-1].id == last, 5, "the last event")
        since = max(stream.events[0].id for stream in streams)
        shown = [[(e.id, e.data) for e in s.events if e.id >= since] for s in streams]
        assert all(seen == shown[0] for seen in shown)
        assert len(shown[0]) > 2


@pytest.mark.cluster
async def test_a_stream_gets_at_most_an_event_a_tick_whatever_the_rate(
    served: tuple[str, Any],
) -> None:
    url, _ = served
    async with client(url) as http, listening(http, "global") as stream:
        await stream.until(lambda: bool(stream.events), 5, "the first event")
        async with flowing(http, senders=8) as accepted:
            started = time.monotonic()
            await wait_for(lambda: _after(started, 2.0), 10, "2 s of submissions")
        ended = time.monotonic()
        window = [e for e in stream.events if started <= e.at <= ended]

        elapsed = ended - started
        print(f"{len(window)} events in {elapsed:.2f} s for {accepted[0]} submissions")
        assert accepted[0] > 4 * elapsed / TICK_S
        assert len(window) <= elapsed / TICK_S + 1
        assert len(window) >= 3


@pytest.mark.cluster
@pytest.mark.sharded  # the feed reads merged pages
async def test_a_change_below_the_page_sends_nothing(served: tuple[str, Any]) -> None:
    url, _ = served
    async with client(url) as http:
        await ranked_board(http)
        async with listening(http, "global", limit=5) as stream:
            await stream.until(lambda: bool(stream.events), 5, "the first event")
            before = await reads(http)

            await submit(http, 1, 1)  # the last player, still last: the page is the same

            async def read_again() -> bool:
                return await reads(http) >= before + 3

            await wait_for(read_again, 5, "the feed to read the page three more times")
            assert len(stream.events) == 1

            await submit(http, 1, 100_000)  # now the first
            await stream.until(lambda: len(stream.events) == 2, 5, "the change")
            assert stream.events[1].data["entries"][0]["user_id"] == 1


@pytest.mark.cluster
async def test_bad_requests_are_refused_as_top_refuses_them_before_any_stream(
    served: tuple[str, Any],
) -> None:
    url, _ = served
    admin = auth_headers(ADMIN_KEY)
    async with client(url) as http:
        created = await http.put(
            "/api/boards/filling", json={"operator": "sum", "backfill": True}, headers=admin
        )
        assert created.status_code == 201, created.text  # no watchdog here: it stays filling
        cases: list[tuple[str, dict[str, Any], int]] = [
            ("nosuchboard", {}, 404),
            ("Not-A-Board!", {}, 404),
            ("global", {"limit": 0}, 422),
            ("global", {"limit": 101}, 422),
            ("global", {"limit": "ten"}, 422),
            ("global", {"period": "bogus"}, 422),
            ("global", {"period": "previous"}, 404),  # global never resets
            ("global", {"cursor": "x"}, 422),  # top has cursors, a stream does not
            ("global", {"unknown": "1"}, 422),
            ("filling", {}, 503),
        ]
        for board, params, status in cases:
            response = await http.get(STREAM.format(board=board), params=params)
            assert response.status_code == status, (board, params, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            if "cursor" not in params:
                top = await http.get(TOP.format(board=board), params=params)
                assert (top.status_code, top.json()["errors"]) == (
                    status,
                    response.json()["errors"],
                )
            if status == 503:
                assert "retry-after" in response.headers


@pytest.mark.cluster
async def test_past_the_most_streams_of_a_process_a_stream_is_refused_503(
    processes: Processes, make_settings: Callable[..., Settings], loaded: None
) -> None:
    url, _ = await processes.serve("--no-worker", settings=make_settings(stream_max_clients=2))
    async with client(url) as http:
        async with listening(http, "global"), listening(http, "global"):
            refused = await http.get(STREAM.format(board="global"))
            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.headers["retry-after"] == "1"
            assert "2 live streams" in refused.json()["detail"]

        async def left() -> bool:
            return await metric(http, "ranker_stream_clients") == 0

        await wait_for(left, 5, "the server to see both streams closed")
        # The two have left: there is room again.
        async with listening(http, "global") as stream:
            await stream.until(lambda: bool(stream.events), 5, "the first event")


@pytest.mark.cluster
async def test_a_stream_ends_when_its_lifetime_is_over(
    processes: Processes, make_settings: Callable[..., Settings], loaded: None
) -> None:
    url, _ = await processes.serve("--no-worker", settings=make_settings(stream_max_s=1.0))
    async with client(url) as http, listening(http, "global") as stream:
        opened = time.monotonic()
        await stream.until(lambda: stream.ended_at is not None, 5, "the stream to end")
        assert stream.ended_at is not None and stream.error is None  # a clean end
        assert 0.85 <= stream.ended_at - opened <= 2.0
        assert [event.kind for event in stream.events] == ["top"]


async def test_a_redis_outage_sends_unavailable_once_then_the_top_again(
    processes: Processes,
    make_settings: Callable[..., Settings],
    settings: Settings,
    loaded: None,
) -> None:
    host, port = settings.redis_url.removeprefix("redis://").split("/")[0].split(":")
    with TcpProxy(host, int(port)) as proxy:
        served = make_settings(redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_timeout_s=0.5)
        url, _ = await processes.serve("--no-worker", settings=served)
        async with client(url) as http, listening(http, "global") as stream:
            await ranked_board(http)
            await stream.until(lambda: bool(stream.events), 5, "the first event")
            shown = (await http.get(TOP.format(board="global"))).json()
            await stream.until(lambda: stream.events[-1].data == shown, 5, "the ranked board")

            proxy.cut("refuse")
            await stream.until(
                lambda: stream.events[-1].kind == "unavailable", 10, "the unavailable event"
            )
            problem = stream.events[-1].data
            assert problem["status"] == 503 and problem["title"] == "Service unavailable"
            # The outage goes on for some failed reads: no other event meanwhile.
            before, tried = len(stream.events), await reads(http)

            async def failed_again() -> bool:
                return await reads(http) >= tried + 4

            await wait_for(failed_again, 10, "four more reads in the outage")
            assert len(stream.events) == before

            proxy.restore()
            await stream.until(lambda: stream.events[-1].kind == "top", 10, "the top again")
            assert stream.events[-1].data == shown  # the same page, sent again all the same
            assert [e.kind for e in stream.events].count("unavailable") == 1
            ids = [e.id for e in stream.events]
            assert ids == sorted(set(ids))


@pytest.mark.cluster
@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_ends_open_streams_and_the_server_promptly(
    processes: Processes, loaded: None, workers: int
) -> None:
    url, server = await processes.serve("--workers", str(workers))  # with its worker
    async with client(url) as http, contextlib.AsyncExitStack() as stack:
        streams = [await stack.enter_async_context(listening(http, "global")) for _ in range(5)]
        for stream in streams:
            await stream.until(lambda s=stream: bool(s.events), 5, "the first event")

        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(server.wait, 30)
        stopped = time.monotonic() - signalled

        for stream in streams:
            await stream.until(lambda s=stream: s.ended_at is not None, 5, "the stream to end")
    log = processes.log_of(server)
    print(f"stopped {stopped:.2f} s after SIGTERM")
    assert exit_code in (0, -signal.SIGTERM), log
    assert "Application shutdown complete." in log
    # uvicorn would wait its graceful timeout (10 s) for streams that do not end.
    assert stopped < 5, log
    assert all(stream.error is None for stream in streams)  # ended, not cut
