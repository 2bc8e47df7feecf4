"""ranker.api.direct: the hot routes' handlers called below the router, answering as the
router's path would."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ranker.api.direct import DirectRoutes
from ranker.api.problems import exception_handlers
from ranker.errors import InvalidInput
from ranker.models import FieldError


async def item(request: Request) -> Response:
    found = request.path_params["item_id"]
    if found == "bad":
        raise InvalidInput("bad item", [FieldError(field="item_id", message="not bad")])
    if found == "boom":
        raise RuntimeError("a bug")
    return JSONResponse({"item": found, "q": request.query_params.get("q")})


async def other(request: Request) -> Response:
    return JSONResponse({"other": True})


def app(direct: bool) -> tuple[Starlette, list[str]]:
    """The app, with the item route hot when ``direct``, and the paths its router saw."""
    hot = Route("/items/{item_id}", item, methods=["GET"])
    routed: list[str] = []
    middleware = [Middleware(DirectRoutes, routes=[hot])] if direct else []
    made = Starlette(
        routes=[hot, Route("/other", other)],
        exception_handlers=exception_handlers(),
        middleware=middleware,
    )
    router = made.router

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope["path"])
        await router(scope, receive, send)

    made.router = counting  # type: ignore[assignment]  # what the middleware stack ends in
    made.middleware_stack = None  # built again on the first request, around the spy
    return made, routed


REQUESTS = [
    ("GET", "/items/7?q=x"),
    ("GET", "/items/bad"),
    ("POST", "/items/7"),
    ("GET", "/other"),
    ("GET", "/missing"),
    ("HEAD", "/items/7"),
]


def client(made: Starlette, raise_errors: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=made, raise_app_exceptions=raise_errors)
    return httpx.AsyncClient(transport=transport, base_url="http://ranker")


@pytest.mark.parametrize(("method", "path"), REQUESTS)
async def test_an_answer_is_the_routers_whether_or_not_the_route_is_hot(
    method: str, path: str
) -> None:
    answers = []
    for direct in (False, True):
        made, _ = app(direct)
        async with client(made) as http:
            got = await http.request(method, path)
        body = got.json() if got.content else None
        if isinstance(body, dict):
            body.pop("request_id", None)
        answers.append((got.status_code, got.headers.get("content-type"), body))
    assert answers[0] == answers[1]


async def test_a_hot_request_skips_the_router_and_any_other_reaches_it() -> None:
    made, routed = app(direct=True)
    async with client(made) as http:
        assert (await http.get("/items/7")).status_code == 200
        assert (await http.get("/items/bad")).status_code == 422
        assert (await http.post("/items/7")).status_code == 405
        assert (await http.get("/other")).status_code == 200
    assert routed == ["/items/7", "/other"]  # the 405 and the other route; no hot GET


async def test_a_bug_in_a_hot_handler_is_the_outermost_middlewares_500() -> None:
    made, _ = app(direct=True)
    async with client(made, raise_errors=False) as http:
        got = await http.get("/items/boom")
    assert got.status_code == 500
    assert got.json()["title"] == "Internal error"
