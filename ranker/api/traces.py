"""The API's part of traces (``ranker.tracing``): a server span per request, named by its route.

A span's name is the method and the route's template (``GET /api/leaderboard/rank/{user_id}``),
never the path a client sent, so that names stay as few as the routes whatever clients send.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware import Middleware
from starlette.routing import Match

from ranker import tracing

#: Methods named as they are; any other is ``HTTP`` (a name a client cannot multiply).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


def traced() -> list[Middleware]:
    """OpenTelemetry's ASGI middleware when this process records traces, else none (and
    nothing of OpenTelemetry is imported)."""
    if not tracing.enabled():
        return []
    return [Middleware(tracing.asgi_middleware, span_details=request_span)]


def request_span(scope: Any) -> tuple[str, dict[str, str]]:
    """A request's span name and ``http.route``: the method and the template of the route the
    path matches (also for the wrong method: that route answers 405), or the method alone when
    no route matches (a 404). Read before routing, from the app's routes: the span begins
    before the router runs."""
    method = scope.get("method", "")
    method = method if method in METHODS else "HTTP"
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return f"{method} {route.path}", {"http.route": route.path}
    return method, {}
