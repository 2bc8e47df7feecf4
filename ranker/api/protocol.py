"""The HTTP/1.1 connection: uvicorn's httptools protocol, with bounds on what one client may hold.

uvicorn's fastest parser (httptools, i.e. llhttp) gives a connection no deadline while its request
arrives, queues pipelined requests without a cap and buffers a header block whole before anything
measures it, so one client without a key could hold memory and file descriptors at will. This
protocol keeps the parser and adds, per connection (RELIABILITY.md, "Hostile clients"):

- a deadline for the request's head, counted from the connection (or from the previous answer),
  and one for its body once the head is in: 408, then closed;
- a bound on the head, counted as the bytes arrive (431, closed), before the parser has them all;
- a cap on requests pipelined ahead of their answers (closed: it is not a client, it is a flood);
- a deadline for a client that stops reading its answer (the connection is dropped);
- a cap on open connections: when full, the connection that has waited longest for a request
  makes room; if every connection has one in flight, the newcomer gets a 503.

An upgrade (WebSocket) is answered as a plain request and the connection closed: ranker serves
none, so the upgrade goes no further than the limits every request meets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import http
import logging
import resource
from typing import Any

import httptools
import uvicorn
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ranker.api.problems import problem
from ranker.metrics import connections_refused
from ranker.models import FieldError
from ranker.settings import Settings

log = logging.getLogger("ranker.api")

#: File descriptors kept back from the connection cap: Redis and PostgreSQL pools, logs, files.
RESERVED_FDS = 256


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may take, and how many there may be (the ``RANKER_*`` edge settings)."""

    header_timeout_s: float
    body_timeout_s: float
    max_head_bytes: int
    max_pipelined: int
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        """The limits of ``settings``, the connection cap resolved against this process's
        open-file limit (which the API processes of ``--workers N`` inherit)."""
        return cls(
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            # The middleware answers 414 / 431 precisely below this; the protocol's bound,
            # counted on the wire, leaves room for the request line and each header's separators.
            max_head_bytes=settings.max_url_bytes + settings.max_header_bytes + 4_096,
            max_pipelined=settings.max_pipelined,
            max_connections=connection_budget(settings.max_connections),
        )


def connection_budget(configured: int | None) -> int:
    """The connection cap: ``configured``, or what the open-file limit leaves.

    The soft limit is raised to the hard one first (as most servers do): a 1,024-file default
    is a distribution's choice for shells, not a budget for a server.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    available = max(16, soft - RESERVED_FDS)
    return min(configured, available) if configured else available


class EdgeConfig(uvicorn.Config):
    """uvicorn's configuration with the connection limits the protocol reads (it is pickled to
    the processes of ``--workers N``, so the limits travel with it)."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **options: Any) -> None:
        super().__init__(app, http=GuardedProtocol, ws="none", **options)
        self.connection_limits = limits


class GuardedProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with the per-connection bounds of the module docstring."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        # A plain uvicorn.Config (`uvicorn --http ranker.api.protocol:GuardedProtocol`, as the
        # benchmark runs its floor app) gets the defaults.
        self.limits: ConnectionLimits = getattr(config, "connection_limits", None) or _defaults()
        self._deadline: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._in_head = True
        self._overrun: str | None = None
        self._turned_away = False
        #: When this connection began waiting for a request (None while one is in flight).
        self.waiting_since: float | None = None

    # Connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            self._turn_away()
            return
        self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unstall()
        self.waiting_since = None
        super().connection_lost(exc)

    def _make_room(self) -> bool:
        idle = [
            other
            for other in self.connections
            if other is not self
            and isinstance(other, GuardedProtocol)
            and other.waiting_since is not None
            and not other.transport.is_closing()
        ]
        if not idle:
            return False
        oldest = min(idle, key=lambda other: other.waiting_since or 0.0)
        connections_refused.labels("evicted").inc()
        oldest.transport.close()
        return True

    def _turn_away(self) -> None:
        """503 to a connection there is no room for. The socket's sending side is shut and its
        request, if one comes, read and dropped for a moment: a close with unread data would be
        a reset, and the client would never see the answer."""
        connections_refused.labels("full").inc()
        self._turned_away = True
        self.transport.write(_raw(_answer(503, "too many open connections; retry", "connection")))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(1.0, self.transport.close)

    # Parsing
    def data_received(self, data: bytes) -> None:
        if self._turned_away:
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # answered as a plain request; on_headers_complete closes after the answer
        except httptools.HttpParserError:
            if self._overrun:
                self._refuse(self._overrun, None)
            else:
                self._refuse("invalid", _answer(400, "the request is not HTTP/1.1", "request"))
            return
        if self._in_head and self._head_bytes > self.limits.max_head_bytes:
            detail = f"the request line and headers are over {self.limits.max_head_bytes} bytes"
            self._refuse("head_too_large", _answer(431, detail, "headers"))

    def on_headers_complete(self) -> None:
        in_flight = self.cycle is not None and not self.cycle.response_complete
        if in_flight and len(self.pipeline) >= self.limits.max_pipelined:
            self._overrun = "pipelined"
            raise OverflowError("too many pipelined requests")  # httptools stops parsing
        self._in_head = False
        self._head_bytes = 0
        self.waiting_since = None
        super().on_headers_complete()
        if self.parser.should_upgrade():
            self.cycle.keep_alive = False
        if not in_flight:
            self._arm(self.limits.body_timeout_s, self._body_timed_out)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._in_head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.pipeline:
            # uvicorn resumes reading after every answer; while requests are still queued that
            # would let a client that never reads queue without end.
            self.flow.pause_reading()
        elif self.cycle is None or self.cycle.response_complete:
            self._await_request()

    # Writing
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None:
            self._stall = self.loop.call_later(self.limits.body_timeout_s, self._stalled)

    def resume_writing(self) -> None:
        self._unstall()
        super().resume_writing()

    # Deadlines
    def _await_request(self) -> None:
        self.waiting_since = self.loop.time()
        self._arm(self.limits.header_timeout_s, self._head_timed_out)

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _unstall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _head_timed_out(self) -> None:
        if self._head_bytes == 0:
            self._refuse("idle", None)  # nothing asked: close as keep-alive would
            return
        detail = f"the request's headers did not arrive within {self.limits.header_timeout_s:g} s"
        self._refuse("header_timeout", _answer(408, detail, "headers"))

    def _body_timed_out(self) -> None:
        detail = f"the request's body did not arrive within {self.limits.body_timeout_s:g} s"
        self._refuse("body_timeout", _answer(408, detail, "body"))

    def _stalled(self) -> None:
        self._stall = None
        connections_refused.labels("stalled").inc()
        self.transport.abort()  # what is buffered will never be read: drop it

    def _refuse(self, reason: str, answer: Response | None) -> None:
        """Close the connection (after ``answer``, unless an answer has begun), dropping
        whatever it has in flight or queued."""
        self._disarm()
        if self.transport.is_closing():
            return
        if reason != "idle":
            connections_refused.labels(reason).inc()
            log.debug("connection from %s closed: %s", self.client, reason)
        cycle = self.cycle
        started = False
        if cycle is not None and not cycle.response_complete:
            started = cycle.response_started
            cycle.disconnected = True  # the app's receive() says disconnect, its send() is dropped
            cycle.message_event.set()
        self.pipeline.clear()
        if answer is not None and not started:
            self.transport.write(_raw(answer))
        self.transport.close()


@functools.cache
def _defaults() -> ConnectionLimits:
    return ConnectionLimits.of(Settings())


def _answer(status: int, detail: str, field: str) -> Response:
    headers = {"retry-after": "1"} if status == 503 else None
    title = http.HTTPStatus(status).phrase
    return problem(status, title, detail, [FieldError(field=field, message=detail)], headers)


def _raw(response: Response) -> bytes:
    phrase = http.HTTPStatus(response.status_code).phrase
    head = [f"HTTP/1.1 {response.status_code} {phrase}\r\n".encode()]
    head += [name + b": " + value + b"\r\n" for name, value in response.raw_headers]
    return b"".join([*head, b"connection: close\r\n\r\n", response.body])
