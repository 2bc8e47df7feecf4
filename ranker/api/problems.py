"""Responses: JSON with orjson, and the one place where errors become
``application/problem+json`` (RFC 9457)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ranker import logs
from ranker.errors import ClientGone, RankerError, Unavailable
from ranker.models import FieldError, Problem, entries_json

log = logging.getLogger("ranker.api")
PROBLEM_TYPE = "application/problem+json"


class JSON(Response):
    """A JSON response serialised with orjson (pydantic models are dumped first)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_dump_model)


class EntriesJSON(JSON):
    """A JSON list of flat models (``Entry``), written by ``models.entries_json``."""

    def render(self, content: Any) -> bytes:
        return entries_json(content)


class EncodedJSON(Response):
    """A JSON body already written (a top page, perhaps the process's copy of it:
    ``ranker.page_cache``), sent as it is."""

    media_type = "application/json"


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
    body = Problem(
        title=title,
        status=status,
        detail=detail,
        errors=list(errors),
        request_id=logs.request_id.get() or None,
    )
    return Response(orjson.dumps(body.model_dump()), status, headers, media_type=PROBLEM_TYPE)


async def _ranker_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RankerError)
    if isinstance(exc, Unavailable | ClientGone):
        # Expected while Redis is away, a rebuild runs or the backlog is full, and when a
        # client hangs up: one line per request would flood the logs in an outage. The metrics
        # count them; the worker and the watchdog log the outage itself.
        log.debug("%s %s: %s", request.method, request.url.path, exc)  # with the cause
    elif exc.status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
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
