"""The live stream of a board's top page, ``GET /api/boards/{board_id}/stream``: server-sent
events (sse-starlette) from the process's feeds (``ranker.api.live``).

The request is checked as ``GET /api/boards/{board_id}/top`` checks it, and refused with the
same problems, before any stream starts. The stream then sends ``retry: 1000``, the page as
last read (``event: top``), an event each time the page changes, ``: ping`` comments every
``PING_S`` (proxies close a silent connection) and ends after ``RANKER_STREAM_MAX_S``.

On shutdown sse-starlette ends every stream at the exit signal (it wraps uvicorn's handler),
so that uvicorn's graceful shutdown, which waits for open requests, is not held up by them.
"""

from __future__ import annotations

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ranker.api.auth import Scope as KeyScope
from ranker.api.board_reads import board_period, path_board_id, watched_top
from ranker.api.guards import guarded, observed
from ranker.api.inputs import query_int, reject_unknown_query
from ranker.api.live import Hub, Stream, Watched
from ranker.api.protocol import connection_budget
from ranker.api.state import AppState, state_of
from ranker.models import BoardPage

#: Seconds between two keep-alive comments of a stream.
PING_S = 15


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment="ping", sep="\n")


class LiveResponse(EventSourceResponse):
    """The events of one stream, which leaves its feed however the response ends (the client
    gone, the lifetime over, the server stopping, a HEAD that never reads it)."""

    def __init__(self, stream: Stream, lifetime_s: float) -> None:
        super().__init__(
            stream.events(lifetime_s), ping=PING_S, sep="\n", ping_message_factory=_ping
        )
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.stream.close()


@observed("board_stream")
@guarded(KeyScope.READ)
async def board_stream(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, {"limit", "period"})
    limit = query_int(request, "limit", 10, 1, state.settings.top_limit_max)
    board_id = path_board_id(request)
    wanted = request.query_params.get("period") or "current"
    # The problems of the top route (404, 422, a board being filled: 503), before any stream.
    await board_period(state, board_id, wanted)
    hub = state.live
    assert hub is not None, "the lifespan makes the hub"
    stream = await hub.subscribe(Watched(board_id, wanted, limit))
    return LiveResponse(stream, hub.lifetime_s(state.settings.stream_max_s))


def live_hub(state: AppState) -> Hub:
    """The hub of an app's streams, reading through the top route's own code.

    Its streams are at most ``RANKER_STREAM_MAX_CLIENTS`` and never more than half the
    connection cap (``ranker.api.protocol``): a stream holds its connection with a request in
    flight, which the edge never evicts for a newcomer, so without this bound long-lived
    streams could take every connection and leave ordinary requests a 503.
    """

    async def read(watched: Watched, shown: BoardPage | None) -> BoardPage | None:
        return await watched_top(state, watched.board, watched.period, watched.limit, shown)

    settings = state.settings
    most = min(settings.stream_max_clients, connection_budget(settings.max_connections) // 2)
    return Hub(read, settings.stream_interval_ms / 1000, most, settings.retry_after_s)


def stream_routes() -> list[BaseRoute]:
    """The route of live streams."""
    return [Route("/api/boards/{board_id}/stream", board_stream, methods=["GET"])]
