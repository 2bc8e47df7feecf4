"""Live top pages: the feeds behind ``GET /api/boards/{board_id}/stream`` (docs/design.md,
"Interfaces").

A feed is one page, ``(board, period as asked, limit)``, watched by the open streams of this
process: it runs while at least one stream shows it. Every tick (``RANKER_STREAM_INTERVAL_MS``)
it reads the page once, the same Lua call as ``GET /api/boards/{board_id}/top``, and when the
page differs from the one it last sent it encodes one event and hands the same bytes to every
stream. Reading the page is the cheapest way to know: finding out whether the board changed
(a version key, a notification to read) would itself be a round trip per tick, so polling the
page is never more reads, and it is at most one read per tick per watched page per process
(4 a second at 250 ms) whatever the number of streams and the rate of submissions. A change
reaches the streams at most a tick after it lands, and a stream gets at most one event a tick.

Each stream holds at most one event not yet written (latest wins): a slow client skips the
pages it could not take in time instead of queueing them, so a stream costs one pending event
at most; one that stops reading altogether is dropped by the connection's write deadline
(``ranker.api.protocol``).

While the read fails for a reason that passes (Redis away, a rebuild: a 503), the streams get
one ``unavailable`` event with the problem, then a ``top`` event once a read succeeds again.
Any other refusal (the board purged) is sent the same way and ends the feed and its streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from ranker import metrics
from ranker.api.problems import JSON, problem
from ranker.errors import RankerError, Unavailable
from ranker.models import BoardPage

log = logging.getLogger("ranker.api")

#: The first bytes of every stream: EventSource reconnects 1 s after the stream ends.
RETRY = b"retry: 1000\n\n"
#: Streams end between this share of ``RANKER_STREAM_MAX_S`` and all of it, so that clients
#: that connected together (after a deploy) do not all reconnect together for ever after.
LIFETIME_SPREAD = 0.9
#: While streams are refused for want of room, a line is logged at most this often.
FULL_WARNING_S = 60.0


@dataclass(frozen=True, slots=True)
class Watched:
    """The page a feed reads: the first page of ``GET /api/boards/{board}/top`` for
    ``period`` as the client asked for it (``current`` follows the board into its next
    period) and ``limit``."""

    board: str
    period: str
    limit: int


#: Reads the page ``watched`` names now, for a feed that last showed ``shown``; None when it
#: cannot have changed and was not read (``board_reads.watched_top``).
Read = Callable[[Watched, BoardPage | None], Awaitable[BoardPage | None]]


#: The counters of events written, by kind (looked up once, not once an event).
_SENT = {kind: metrics.stream_events.labels(kind) for kind in ("top", "unavailable")}


@dataclass(frozen=True, slots=True)
class Event:
    """One encoded event, shared by every stream of its feed."""

    kind: str  # "top" or "unavailable"
    raw: bytes


class Stream:
    """One open stream of a feed: the event it has not written yet (one at most)."""

    def __init__(self, hub: Hub, feed: Feed) -> None:
        self._hub = hub
        self._feed = feed
        self._pending: Event | None = None
        self._ready = asyncio.Event()
        self._ended = False
        self._closed = False
        feed.streams.add(self)
        hub.streams += 1
        metrics.stream_clients.inc()

    def offer(self, event: Event) -> None:
        """Make ``event`` the next one written, replacing one not written yet."""
        self._pending = event
        self._ready.set()

    def end(self) -> None:
        """The feed has stopped, or the stream's life is over: it ends once its pending event
        is written."""
        self._ended = True
        self._ready.set()

    def close(self) -> None:
        """Leave the feed (the last stream to leave stops it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._feed.streams.discard(self)
        self._hub.streams -= 1
        metrics.stream_clients.dec()

    async def events(self, lifetime_s: float) -> AsyncIterator[bytes]:
        """The bytes of the stream: the retry field, then its events until ``lifetime_s`` has
        passed or the feed has stopped."""
        # One timer for the stream's life, not one per event: events are the hot path.
        timer = asyncio.get_running_loop().call_later(lifetime_s, self.end)
        try:
            yield RETRY
            while (event := await self._next()) is not None:
                _SENT[event.kind].inc()
                yield event.raw
        finally:
            timer.cancel()
            self.close()

    async def _next(self) -> Event | None:
        if self._pending is None and not self._ended:
            await self._ready.wait()
        self._ready.clear()
        event, self._pending = self._pending, None
        return event


class Feed:
    """The reads of one watched page, for as long as a stream shows it."""

    def __init__(self, hub: Hub, watched: Watched) -> None:
        self.hub = hub
        self.watched = watched
        self.streams: set[Stream] = set()
        #: The last ``top`` event, which a stream that joins gets first.
        self.latest: Event | None = None
        #: Why the last read failed (None once one succeeds again).
        self.failure: RankerError | None = None
        self._shown: BoardPage | None = None
        self._shown_body = b""
        self._last_id = 0
        self._first_read = asyncio.Event()
        self._done = False
        # A context of its own: not that of the request that happened to start it (whose id
        # would name every line the feed logs).
        self.task = asyncio.create_task(
            self._run(), name=f"live feed {watched}", context=contextvars.Context()
        )

    async def current(self) -> Event:
        """The page as last read, once there is one; raises why the read fails while it does."""
        await self._first_read.wait()
        if self.failure is not None:
            raise self.failure
        if self.latest is None:  # stopped before its first read (the server stops)
            raise Unavailable("the server is stopping; retry", self.hub.retry_after_s)
        return self.latest

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        try:
            while self.streams:
                await self._tick()
                if self._done:
                    break
                # Ticks start a whole interval apart; a read slower than that is followed by
                # the next at once, never by a burst that catches up.
                due = max(due + self.hub.interval_s, loop.time())
                await asyncio.sleep(due - loop.time())
        except Exception:
            log.exception("the live feed of %s failed", self.watched)
            self.failure = self.failure or RankerError("the live feed failed; it has been logged")
        finally:
            self._first_read.set()
            self.hub.forget(self)
            for stream in list(self.streams):
                stream.end()

    async def _tick(self) -> None:
        # After a failed read the page is read whatever it was, so that a top event follows.
        shown = None if self.failure is not None else self._shown
        try:
            page = await self.hub.read(self.watched, shown)
        except RankerError as exc:
            metrics.stream_reads.inc()
            self._failed(exc)
        else:
            if page is not None:  # else a period that no longer changes, not read again
                metrics.stream_reads.inc()
                self._show(page)
        self._first_read.set()

    def _show(self, page: BoardPage) -> None:
        body = bytes(JSON(page).body)  # the bytes GET .../top answers
        if self.failure is None and body == self._shown_body:
            return
        self.failure = None
        self._shown, self._shown_body = page, body
        self.latest = self._publish("top", body)

    def _failed(self, exc: RankerError) -> None:
        if not isinstance(exc, Unavailable):
            self._done = True  # the board purged, say: waiting will not bring it back
        elif self.failure is not None:
            return  # one event per outage
        self.failure = exc
        body = bytes(problem(exc.status, exc.title, exc.detail, exc.errors, exc.headers).body)
        self._publish("unavailable", body)

    def _publish(self, kind: str, data: bytes) -> Event:
        # Increasing, and the clock in ms when the feed saw the change (one more than the
        # previous id when two come within a millisecond).
        self._last_id = max(self._last_id + 1, time.time_ns() // 1_000_000)
        event = Event(
            kind, b"event: %s\nid: %d\ndata: %s\n\n" % (kind.encode(), self._last_id, data)
        )
        for stream in self.streams:
            stream.offer(event)
        return event


class Hub:
    """Every feed of this process, and the streams that show them (``max_streams`` at most)."""

    def __init__(self, read: Read, interval_s: float, max_streams: int, retry_after_s: int) -> None:
        self.read = read
        self.interval_s = interval_s
        self.max_streams = max_streams
        self.retry_after_s = retry_after_s
        self.streams = 0
        self._feeds: dict[Watched, Feed] = {}
        self._closed = False
        self._warned_at = -FULL_WARNING_S
        # Its own generator: the streams' lifetimes move no global random state.
        self._random = random.Random()

    def lifetime_s(self, max_s: float) -> float:
        """How long a new stream lasts: between ``LIFETIME_SPREAD`` of ``max_s`` and all."""
        return max_s * self._random.uniform(LIFETIME_SPREAD, 1.0)

    async def subscribe(self, watched: Watched) -> Stream:
        """A new stream of ``watched``, holding the page as last read (read now when no stream
        showed it). 503 when this process holds ``max_streams`` streams or is stopping, and
        the problem of the read while it fails (no stream is then opened)."""
        if self._closed:
            raise Unavailable("the server is stopping; retry", self.retry_after_s)
        if self.streams >= self.max_streams:
            now = time.monotonic()
            if now >= self._warned_at + FULL_WARNING_S:  # not silently, nor once a refusal
                self._warned_at = now
                log.warning("live streams: %d open, the most; newcomers get 503", self.streams)
            raise Unavailable(
                f"this process holds {self.max_streams} live streams, its most; retry",
                self.retry_after_s,
            )
        feed = self._feeds.get(watched)
        if feed is None:
            feed = self._feeds[watched] = Feed(self, watched)
        stream = Stream(self, feed)
        try:
            stream.offer(await feed.current())
        except BaseException:
            stream.close()
            raise
        return stream

    def watched(self) -> list[Watched]:
        """The pages a feed reads now."""
        return list(self._feeds)

    def forget(self, feed: Feed) -> None:
        """``feed`` has stopped: the next stream of its page starts another."""
        if self._feeds.get(feed.watched) is feed:
            del self._feeds[feed.watched]

    async def close(self) -> None:
        """Stop every feed (their streams end); new streams are refused."""
        self._closed = True
        tasks = [feed.task for feed in self._feeds.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
