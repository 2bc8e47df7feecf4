"""The hot routes (submit and the reads), dispatched straight to their handlers.

A request to one of Starlette's routes passes its exception middleware, its router and the
route's own wrapper (which makes the ``Request`` and wraps the handler's exceptions and its
``send`` once more) before the handler runs: on a rank lookup that is a tenth of the API
process's CPU, as much as the handler's own work. This middleware, innermost of the app's,
matches a request against the same ``Route`` objects the router holds (their paths and
methods are written once, in the route lists) and calls the matching handler itself. The
handler is the one the router would call, with its ``observed`` and ``guarded`` decorators: what
the request is checked for, timed by and answered with is the same; only the layers between
the edge and the handler are fewer.

What the skipped layers did is done here the same way: the route's path parameters go into the
scope, a ``RankerError`` becomes its problem+json answer through the one mapping of
``ranker.api.problems``, and any other exception goes up to Starlette's outermost error
middleware, which logs it and answers 500 as it does for every route. A request that matches
a hot route's path but not its method, or no hot route at all, goes to the router unchanged
(405 and 404 stay the router's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.routing import Match, Route

from ranker.api.problems import exception_handlers
from ranker.errors import RankerError

_ranker_error = exception_handlers()[RankerError]


class DirectRoutes:
    """ASGI middleware: requests of ``routes`` (a subset of the app's, most frequent first)
    go straight to their handlers; every other request goes on to ``app``."""

    def __init__(self, app: Any, routes: Sequence[Route]) -> None:
        self.app = app
        self.routes = tuple(routes)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for route in self.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    request = Request(scope, receive, send)
                    try:
                        response = await route.endpoint(request)
                    except RankerError as exc:
                        response = await _ranker_error(request, exc)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
