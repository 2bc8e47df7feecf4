"""Reading requests: the body, query and path values, each refused with a 422 (or 400, 413,
415) problem that names the field."""

from __future__ import annotations

import json
import math
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from ranker.api.state import AppState
from ranker.errors import ClientGone, InvalidInput
from ranker.models import USER_ID_MAX, FieldError, Limits, SubmitRequest

M = TypeVar("M", bound=BaseModel)


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
        raise too_large("the body", "body", limit, 413)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large("the body", "body", limit, 413)
    except ClientDisconnect:
        raise ClientGone("the client closed the connection before sending the whole body") from None
    return bytes(body)


def too_large(what: str, field: str, limit: int, status: int) -> InvalidInput:
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


def invalid(exc: ValidationError) -> InvalidInput:
    """The 422 of a body that failed its model, naming every invalid field."""
    errors = field_errors(exc)
    names = ", ".join(sorted({e.field for e in errors}))
    return InvalidInput(f"invalid field(s): {names}", errors)


class _Ambiguous(ValueError):
    """JSON that parsers read differently: a key given twice, a number that is not finite."""

    def __init__(self, detail: str, field: str, message: str) -> None:
        super().__init__(detail)
        self.error = InvalidInput(detail, [FieldError(field=field, message=message)], status=400)


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Ambiguous(f"the body gives {key!r} twice", key, "given more than once")
        seen.add(key)
    return dict(pairs)


def _refuse_constant(text: str) -> float:
    """NaN, Infinity, -Infinity: not JSON numbers, though Python's and pydantic's parsers take
    them."""
    raise _Ambiguous(f"{text} is not a JSON number", "body", "numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 would be read as infinity
        return _refuse_constant(text)
    return value


def refuse_ambiguous_json(body: bytes) -> None:
    """400 for JSON that parsers read differently: a key given twice (pydantic keeps the last,
    others the first), and NaN, Infinity or a number too large for a double. Anything else this
    parse fails on is left for the model's own parsing to report."""
    try:
        json.loads(
            body,
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    except _Ambiguous as exc:
        raise exc.error from None
    except (ValueError, RecursionError):  # not JSON, or nested too deep: pydantic says so
        pass


def parse_submit(body: bytes, limits: Limits) -> SubmitRequest:
    """Validate a submit body: 400 for a body that is not JSON (or is ambiguous JSON), 422 for
    invalid fields."""
    return parse_body(body, SubmitRequest, limits)


def parse_body(body: bytes, model: type[M], context: object = None) -> M:
    """A JSON body as ``model``: 400 naming ``body`` for one that is not JSON (or is ambiguous
    JSON: ``refuse_ambiguous_json``; a lone surrogate escape, which no UTF-8 text holds, is not
    JSON here), 422 naming each invalid field."""
    refuse_ambiguous_json(body)
    try:
        return model.model_validate_json(body, context=context)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise InvalidInput(
                "the body is not valid JSON",
                [FieldError(field="body", message="invalid JSON")],
                status=400,
            ) from None
        raise invalid(exc) from None


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


def reject_unknown_query(request: Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise InvalidInput(
            f"unknown query parameter(s): {', '.join(unknown)}",
            [FieldError(field=name, message="unknown parameter") for name in unknown],
        )
