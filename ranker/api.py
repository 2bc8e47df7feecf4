"""HTTP routes and the one place where errors become ``application/problem+json`` (RFC 9457)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import resources
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from ranker import metrics
from ranker.app import AppState
from ranker.auth import Scope
from ranker.errors import InvalidInput, RankerError, RedisUnavailable, Unavailable
from ranker.models import USER_ID_MAX, FieldError, Problem, SubmitRequest
from ranker.openapi import openapi_document
from ranker.ratelimit import ADDRESS

log = logging.getLogger("ranker.api")
PROBLEM_TYPE = "application/problem+json"
Handler = Callable[[Request], Awaitable[Response]]


class JSON(Response):
    """A JSON response serialised with orjson (pydantic models are dumped first)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_dump_model)


def _dump_model(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def problem(
    status: int,
    title: str,
    detail: str,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A problem+json response."""
    body = Problem(title=title, status=status, detail=detail, errors=list(errors))
    return Response(orjson.dumps(body.model_dump()), status, headers, media_type=PROBLEM_TYPE)


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.ranker
    return state


def observed(route: str) -> Callable[[Handler], Handler]:
    """Time a handler's requests by route, method and status (errors included)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: Request) -> Response:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status_code
                return response
            except RankerError as exc:
                status = exc.status
                raise
            finally:
                timer = metrics.http_request_duration.labels(route, request.method, str(status))
                timer.observe(time.perf_counter() - started)

        return wrapper

    return decorate


def guarded(scope: Scope) -> Callable[[Handler], Handler]:
    """Let a request through to its handler only with an API key allowing ``scope`` (for a
    read: unless reads are public) and within its caller's rate limit."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: Request) -> Response:
            state = _state(request)
            client = request.client.host if request.client else "unknown"
            caller: str | None = None
            if scope is Scope.WRITE or not state.settings.public_reads:
                authorization = request.headers.get("authorization")
                try:
                    caller = state.keys.authorize(authorization, scope).key_id
                except RankerError as exc:
                    # For the audit trail; the detail names a key by its id, never the key.
                    log.info(
                        "refused %s %s from %s: %s",
                        request.method,
                        request.url.path,
                        client,
                        exc.detail,
                    )
                    raise
            if state.rate_limits.limits(scope.value):
                await state.rate_limits.spend(scope.value, caller or f"{ADDRESS}{client}")
            return await handler(request)

        return wrapper

    return decorate


class RequestLimits:
    """ASGI middleware: a request whose path and query, or whose headers, are longer than the
    settings allow is answered 414 or 431 before any route sees it."""

    def __init__(self, app: Any, max_url_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_url_bytes = max_url_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        refusal = self._refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        response = problem(refusal.status, refusal.title, refusal.detail, refusal.errors)
        await response(scope, receive, send)

    def _refusal(self, scope: Any) -> InvalidInput | None:
        url_bytes = len(scope.get("raw_path") or scope["path"].encode())
        url_bytes += len(scope.get("query_string", b""))
        if url_bytes > self.max_url_bytes:
            return _too_large("the path and query", "url", self.max_url_bytes, 414)
        header_bytes = sum(len(name) + len(value) for name, value in scope["headers"])
        if header_bytes > self.max_header_bytes:
            return _too_large("the headers", "headers", self.max_header_bytes, 431)
        return None


# -- input ---------------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The request body: 415 unless it is JSON, 413 when it exceeds ``limit`` bytes."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise InvalidInput(
            "the body must be application/json",
            [FieldError(field="content-type", message="expected application/json")],
            status=415,
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large("the body", "body", limit, 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large("the body", "body", limit, 413)
    return bytes(body)


def _too_large(what: str, field: str, limit: int, status: int) -> InvalidInput:
    """413 (body), 414 (path and query) or 431 (headers): ``what`` is over ``limit`` bytes."""
    return InvalidInput(
        f"{what} is over {limit} bytes",
        [FieldError(field=field, message=f"at most {limit} bytes")],
        status=status,
    )


def field_errors(exc: ValidationError) -> list[FieldError]:
    """One ``FieldError`` per pydantic error, the field named by its dotted location."""
    return [
        FieldError(field=".".join(str(part) for part in err["loc"]) or "body", message=err["msg"])
        for err in exc.errors(include_url=False)
    ]


def parse_submit(body: bytes, state: AppState) -> SubmitRequest:
    """Validate a submit body: 400 for a body that is not JSON, 422 for invalid fields."""
    try:
        return SubmitRequest.model_validate_json(body, context=state.limits)
    except ValidationError as exc:
        errors = field_errors(exc)
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise InvalidInput(
                "the body is not valid JSON",
                [FieldError(field="body", message="invalid JSON")],
                status=400,
            ) from None
        names = ", ".join(sorted({e.field for e in errors}))
        raise InvalidInput(f"invalid field(s): {names}", errors) from None


def bounded_int(raw: str, field: str, low: int, high: int) -> int:
    """``raw`` as an integer within ``low..high`` (ASCII digits only); 422 naming ``field``."""
    # The length check keeps int() from parsing thousands of digits sent to waste our time.
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and low <= int(raw) <= high:
        return int(raw)
    span = "1 to 2**63-1" if (low, high) == (1, USER_ID_MAX) else f"{low} to {high}"
    raise InvalidInput(
        f"{field} must be an integer from {span}",
        [FieldError(field=field, message=f"an integer from {span}")],
    )


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``low..high`` (422 naming it otherwise)."""
    raw = request.query_params.get(name)
    return default if raw is None else bounded_int(raw, name, low, high)


def query_mode(request: Request, state: AppState) -> str | None:
    """The ``mode`` query parameter: one of the configured game modes, or absent (global)."""
    mode = request.query_params.get("mode")
    if mode is None or mode in state.settings.game_modes:
        return mode
    known = ", ".join(state.settings.game_modes)
    raise InvalidInput(
        f"unknown mode; one of: {known}", [FieldError(field="mode", message=f"one of: {known}")]
    )


def path_user_id(request: Request) -> int:
    """The ``{user_id}`` path segment: an integer from 1 to 2**63-1."""
    return bounded_int(request.path_params["user_id"], "user_id", 1, USER_ID_MAX)


def _reject_unknown_query(request: Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise InvalidInput(
            f"unknown query parameter(s): {', '.join(unknown)}",
            [FieldError(field=name, message="unknown parameter") for name in unknown],
        )


# -- handlers ------------------------------------------------------------------------------------


@observed("submit")
@guarded(Scope.WRITE)
async def submit(request: Request) -> Response:
    state = _state(request)
    try:
        payload = parse_submit(await read_body(request, state.settings.max_body_bytes), state)
    except InvalidInput:
        metrics.submissions.labels("rejected").inc()
        raise
    try:
        outcome = await state.ranking.submit(payload)
    except RankerError as exc:
        metrics.submissions.labels("backlog_full" if exc.status == 503 else "error").inc()
        raise
    metrics.submissions.labels("duplicate" if outcome.duplicate else "accepted").inc()
    # 200 for a first acceptance and a retry alike: clients of the original service check for it.
    return JSON(outcome)


@observed("top")
@guarded(Scope.READ)
async def top(request: Request) -> Response:
    state = _state(request)
    _reject_unknown_query(request, {"limit", "mode"})
    limit = query_int(request, "limit", 10, 1, state.settings.top_limit_max)
    return JSON(await state.ranking.top(limit, query_mode(request, state)))


@observed("rank")
@guarded(Scope.READ)
async def rank(request: Request) -> Response:
    state = _state(request)
    _reject_unknown_query(request, {"mode"})
    user_id = path_user_id(request)
    return JSON(await state.ranking.rank(user_id, query_mode(request, state)))


@observed("around")
@guarded(Scope.READ)
async def around(request: Request) -> Response:
    state = _state(request)
    _reject_unknown_query(request, {"mode", "n"})
    user_id = path_user_id(request)
    side = query_int(request, "n", 5, 0, state.settings.top_limit_max // 2)
    return JSON(await state.ranking.around(user_id, side, query_mode(request, state)))


async def healthz(request: Request) -> Response:
    """Liveness: the process answers. Says nothing of Redis or PostgreSQL."""
    return JSON({"status": "ok"})


@observed("readyz")
async def readyz(request: Request) -> Response:
    """Readiness: Redis answers, the boards are loaded and the backlog is under its limit."""
    state = _state(request)
    limit = state.settings.max_backlog
    try:
        loaded = await state.ranking.ready()
        backlog = await state.ranking.backlog()
    except RedisUnavailable as exc:
        body = {"ready": False, "redis": "unreachable", "detail": exc.detail}
        return JSON(body, status_code=503, headers={"Retry-After": "1"})
    metrics.backlog.set(backlog)
    ready = loaded and backlog < limit
    body = {
        "ready": ready,
        "redis": "ok",
        "boards_loaded": loaded,
        "backlog": backlog,
        "backlog_limit": limit,
    }
    return JSON(
        body,
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": str(state.settings.retry_after_s)},
    )


async def prometheus(request: Request) -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


async def openapi(request: Request) -> Response:
    return JSON(openapi_document(_state(request).settings))


@functools.cache
def _page() -> str:
    return resources.files("ranker").joinpath("static", "index.html").read_text(encoding="utf-8")


async def index(request: Request) -> Response:
    return HTMLResponse(_page())


def routes() -> list[BaseRoute]:
    """Every route of the service (paths kept from the original service)."""
    return [
        Route("/api/leaderboard/submit", submit, methods=["POST"]),
        Route("/api/leaderboard/top", top, methods=["GET"]),
        Route("/api/leaderboard/rank/{user_id}", rank, methods=["GET"]),
        Route("/api/leaderboard/around/{user_id}", around, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/", index, methods=["GET"]),
    ]


# -- errors --------------------------------------------------------------------------------------


async def _ranker_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RankerError)
    if isinstance(exc, Unavailable):
        # Expected while Redis is away, a rebuild runs or the backlog is full: one line per
        # request would flood the logs in an outage. The metrics count them; the worker and the
        # watchdog log the outage itself.
        log.debug("%s %s: %s", request.method, request.url.path, exc.detail)
    elif exc.status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc.detail)
    return problem(exc.status, exc.title, exc.detail, exc.errors, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem(
        exc.status_code, _TITLES.get(exc.status_code, "Error"), str(exc.detail), headers=exc.headers
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem(500, "Internal error", "an unexpected error occurred; it has been logged")


_TITLES = {400: "Bad request", 404: "Not found", 405: "Method not allowed"}


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """The one mapping from exceptions to problem+json responses."""
    return {RankerError: _ranker_error, HTTPException: _http_error, Exception: _unexpected}
