"""Pieces every operation of the OpenAPI document is made of: references to the models, bodies,
problems and the answers every route may give."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ranker.models import Problem
from ranker.settings import Settings

REF = "#/components/schemas/{model}"


def ref(model: type[BaseModel]) -> dict[str, str]:
    """A reference to a model's schema."""
    return {"$ref": REF.format(model=model.__name__)}


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An answer (or request body) of JSON with ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def problem(description: str) -> dict[str, Any]:
    """An answer that is a problem (RFC 9457)."""
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": ref(Problem)}},
    }


def unavailable() -> dict[str, Any]:
    return problem(
        "Redis unreachable, boards being rebuilt, backlog full, Redis memory above the "
        "watermark, or every connection busy (Retry-After says when to retry)"
    )


def invalid() -> dict[str, Any]:
    return problem("Invalid input; `errors` names each field")


def guarded() -> dict[str, Any]:
    """What every route may also answer: keys and rate limits."""
    return {
        "401": problem("No API key, or not a known one (WWW-Authenticate: Bearer)"),
        "403": problem("The API key may not make this request (a read-only key writing)"),
        "429": problem(
            "The caller's rate limit is spent, or its address's: failed authentications, "
            "public reads, all reads (Retry-After says when to retry)"
        ),
    }


def sized() -> dict[str, Any]:
    """What every route may also answer: the size and pace of a request."""
    return {
        "408": problem("The headers or the body did not arrive in time (the connection closes)"),
        "414": problem("The path and query are too long"),
        "431": problem("The headers are too large"),
    }


def reads_guarded(settings: Settings) -> dict[str, Any]:
    """The security of a read: none when reads are public."""
    return {} if settings.public_reads else {"security": [{"apiKey": []}]}
