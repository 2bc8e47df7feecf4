"""The OpenAPI 3.1 document of the HTTP interface, built from the pydantic models it serves."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ranker import __version__
from ranker.boards import NAME_PATTERN
from ranker.definitions import BOARD_ID_PATTERN, Board, builtin_boards
from ranker.models import Entry, Problem, Standing, SubmitRequest, SubmitResponse
from ranker.settings import Settings

_MODELS: tuple[type[BaseModel], ...] = (
    SubmitRequest,
    SubmitResponse,
    Standing,
    Entry,
    Board,
    Problem,
)
_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref(Problem)}},
    }


def _params(settings: Settings, *names: str) -> list[dict[str, Any]]:
    known: dict[str, dict[str, Any]] = {
        "board_id": {
            "name": "board_id",
            "in": "path",
            "required": True,
            # The boards that exist: the built-in ones, until games can define their own.
            "schema": {
                "type": "string",
                "pattern": BOARD_ID_PATTERN,
                "enum": [board.id for board in builtin_boards(settings.game_modes)],
            },
        },
        "user_id": {
            "name": "user_id",
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        },
        "mode": {
            "name": "mode",
            "in": "query",
            "required": False,
            "description": "A game mode's board; the global board when absent.",
            "schema": {"type": "string", "enum": list(settings.game_modes)},
        },
        "limit": {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": settings.top_limit_max,
                "default": 10,
            },
        },
        "n": {
            "name": "n",
            "in": "query",
            "required": False,
            "description": "Players on each side of the player.",
            "schema": {
                "type": "integer",
                "minimum": 0,
                "maximum": settings.top_limit_max // 2,
                "default": 5,
            },
        },
    }
    return [known[name] for name in names]


def _schemas(settings: Settings) -> dict[str, Any]:
    _, defs = models_json_schema([(m, "serialization") for m in _MODELS], ref_template=_REF)
    schemas: dict[str, Any] = defs["$defs"]
    request = schemas["SubmitRequest"]["properties"]
    # The configured limits are part of the contract a client sees.
    request["score"].update(minimum=settings.score_min, maximum=settings.score_max)
    request["game_mode"]["anyOf"][0].update(enum=list(settings.game_modes), pattern=NAME_PATTERN)
    return schemas


@cache
def openapi_document(settings: Settings) -> dict[str, Any]:
    """The document served at ``/openapi.json`` (built once per settings)."""
    unavailable = _problem(
        "Redis unreachable, boards being rebuilt, backlog full, Redis memory above the "
        "watermark, or every connection busy (Retry-After says when to retry)"
    )
    invalid = _problem("Invalid input; `errors` names each field")
    entries = {"type": "array", "items": _ref(Entry)}
    # Every route may also answer these: keys, rate limits and the size of a request.
    guarded: dict[str, Any] = {
        "401": _problem("No API key, or not a known one (WWW-Authenticate: Bearer)"),
        "403": _problem("The API key may not make this request (a read-only key writing)"),
        "429": _problem(
            "The caller's rate limit is spent, or its address's: failed authentications, "
            "public reads, all reads (Retry-After says when to retry)"
        ),
    }
    sized: dict[str, Any] = {
        "408": _problem("The headers or the body did not arrive in time (the connection closes)"),
        "414": _problem("The path and query are too long"),
        "431": _problem("The headers are too large"),
    }
    reads_guarded: dict[str, Any] = {} if settings.public_reads else {"security": [{"apiKey": []}]}
    paths = {
        "/api/leaderboard/submit": {
            "post": {
                "summary": "Submit one game session's score",
                "security": [{"apiKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(SubmitRequest)}},
                },
                "responses": {
                    "200": _json(_ref(SubmitResponse), "Counted, or a retry already counted"),
                    "400": _problem("Not JSON, ambiguous JSON, or several Authorization headers"),
                    "409": _problem("The session id was accepted with other data"),
                    "413": _problem("The body is too large"),
                    "415": _problem("The body is not application/json"),
                    "422": invalid,
                    "503": unavailable,
                    **guarded,
                    **sized,
                },
            }
        },
        "/api/leaderboard/top": {
            "get": {
                "summary": "The best players of a board",
                **reads_guarded,
                "parameters": _params(settings, "limit", "mode"),
                "responses": {
                    "200": _json(entries, "Best first; ties share a rank"),
                    "422": invalid,
                    "503": unavailable,
                    **guarded,
                    **sized,
                },
            }
        },
        "/api/leaderboard/rank/{user_id}": {
            "get": {
                "summary": "A player's total and rank",
                **reads_guarded,
                "parameters": _params(settings, "user_id", "mode"),
                "responses": {
                    "200": _json(_ref(Standing), "The player's standing"),
                    "404": _problem("The player has no score on the board"),
                    "422": invalid,
                    "503": unavailable,
                    **guarded,
                    **sized,
                },
            }
        },
        "/api/leaderboard/around/{user_id}": {
            "get": {
                "summary": "The players just above and below a player",
                **reads_guarded,
                "parameters": _params(settings, "user_id", "n", "mode"),
                "responses": {
                    "200": _json(entries, "Best first, the player included"),
                    "404": _problem("The player has no score on the board"),
                    "422": invalid,
                    "503": unavailable,
                    **guarded,
                    **sized,
                },
            }
        },
        "/api/boards": {
            "get": {
                "summary": "Every board: its definition, current period and members",
                **reads_guarded,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"boards": {"type": "array", "items": _ref(Board)}},
                            "required": ["boards"],
                        },
                        "The built-in boards (global first, then one per game mode)",
                    ),
                    "422": invalid,
                    "503": unavailable,
                    **guarded,
                    **sized,
                },
            }
        },
        "/api/boards/{board_id}": {
            "get": {
                "summary": "One board: its definition, current period and members",
                **reads_guarded,
                "parameters": _params(settings, "board_id"),
                "responses": {
                    "200": _json(_ref(Board), "The board"),
                    "404": _problem("There is no such board"),
                    "422": invalid,
                    "503": unavailable,
                    **guarded,
                    **sized,
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "responses": {"200": {"description": "The process answers"}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: Redis up, boards loaded, backlog and memory under limits",
                "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
            }
        },
        "/": {
            "get": {
                "summary": "The live leaderboard page",
                "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "Text exposition format"}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ranker",
            "version": __version__,
            "description": "Live game leaderboards: submit scores, read ranks.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(settings),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: RANKER_API_KEYS or the key file",
                }
            },
        },
    }
