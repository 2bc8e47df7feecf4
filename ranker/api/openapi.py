"""The OpenAPI 3.1 document of the HTTP interface, built from the pydantic models it serves."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ranker import __version__
from ranker.api.openapi_boards import BOARD_CHANGE, board_change_schema, board_paths
from ranker.api.openapi_parts import (
    REF,
    guarded,
    invalid,
    json_body,
    problem,
    reads_guarded,
    ref,
    sized,
    unavailable,
)
from ranker.api.openapi_players import MODELS as PLAYER_MODELS
from ranker.api.openapi_players import player_paths
from ranker.boards import NAME_PATTERN
from ranker.definitions import Board, BoardDefinition
from ranker.models import (
    BoardPage,
    BoardPlayer,
    Entry,
    LookupRequest,
    LookupResponse,
    Problem,
    Standing,
    SubmitRequest,
    SubmitResponse,
    username_pattern,
)
from ranker.player_models import one_line_pattern
from ranker.settings import Settings

_MODELS: tuple[type[BaseModel], ...] = (
    SubmitRequest,
    SubmitResponse,
    Standing,
    Entry,
    Board,
    BoardDefinition,
    BoardPage,
    BoardPlayer,
    LookupRequest,
    LookupResponse,
    Problem,
    *PLAYER_MODELS,
)


def _params(settings: Settings, *names: str) -> list[dict[str, Any]]:
    known: dict[str, dict[str, Any]] = {
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
    _, defs = models_json_schema([(m, "serialization") for m in _MODELS], ref_template=REF)
    schemas: dict[str, Any] = defs["$defs"]
    request = schemas["SubmitRequest"]["properties"]
    # The configured limits are part of the contract a client sees.
    request["score"].update(minimum=settings.score_min, maximum=settings.score_max)
    request["game_mode"]["anyOf"][0].update(enum=list(settings.game_modes), pattern=NAME_PATTERN)
    schemas[BOARD_CHANGE] = board_change_schema(schemas["BoardDefinition"], settings)
    request["username"]["anyOf"][0]["pattern"] = username_pattern()
    schemas["NameRequest"]["properties"]["username"]["pattern"] = username_pattern()
    schemas["BanRequest"]["properties"]["reason"]["pattern"] = one_line_pattern()
    schemas["ModerationRequest"]["properties"]["reason"]["anyOf"][0]["pattern"] = one_line_pattern()
    return schemas


@cache
def openapi_document(settings: Settings) -> dict[str, Any]:
    """The document served at ``/openapi.json`` (built once per settings)."""
    entries = {"type": "array", "items": ref(Entry)}
    # Every route may also answer these: keys, rate limits and the size of a request.
    common = {**guarded(), **sized()}
    reads = reads_guarded(settings)
    paths = {
        "/api/leaderboard/submit": {
            "post": {
                "summary": "Submit one game session's score",
                "security": [{"apiKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(SubmitRequest)}},
                },
                "responses": {
                    "200": json_body(ref(SubmitResponse), "Counted, or a retry already counted"),
                    "400": problem("Not JSON, ambiguous JSON, or several Authorization headers"),
                    "409": problem("The session id was accepted with other data"),
                    "413": problem("The body is too large"),
                    "415": problem("The body is not application/json"),
                    "422": invalid(),
                    "503": unavailable(),
                    **common,
                },
            }
        },
        "/api/leaderboard/top": {
            "get": {
                "summary": "The best players of a board",
                **reads,
                "parameters": _params(settings, "limit", "mode"),
                "responses": {
                    "200": json_body(entries, "Best first; ties share a rank"),
                    "422": invalid(),
                    "503": unavailable(),
                    **common,
                },
            }
        },
        "/api/leaderboard/rank/{user_id}": {
            "get": {
                "summary": "A player's total and rank",
                **reads,
                "parameters": _params(settings, "user_id", "mode"),
                "responses": {
                    "200": json_body(ref(Standing), "The player's standing"),
                    "404": problem("The player has no score on the board"),
                    "422": invalid(),
                    "503": unavailable(),
                    **common,
                },
            }
        },
        "/api/leaderboard/around/{user_id}": {
            "get": {
                "summary": "The players just above and below a player",
                **reads,
                "parameters": _params(settings, "user_id", "n", "mode"),
                "responses": {
                    "200": json_body(entries, "Best first, the player included"),
                    "404": problem("The player has no score on the board"),
                    "422": invalid(),
                    "503": unavailable(),
                    **common,
                },
            }
        },
        **board_paths(settings),
        **player_paths(settings),
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
