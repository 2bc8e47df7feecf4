"""The board operations of the OpenAPI document: definitions and the reads of their periods."""

from __future__ import annotations

import copy
from typing import Any

from ranker.api.openapi_parts import (
    guarded,
    invalid,
    json_body,
    problem,
    reads_guarded,
    ref,
    sized,
    unavailable,
)
from ranker.definitions import BOARD_ID_PATTERN, Board, time_zones, title_pattern
from ranker.models import BoardPage, BoardPlayer, LookupRequest, LookupResponse, Problem
from ranker.periods import PERIOD_PATTERN
from ranker.settings import Settings

#: The schema of a PUT body: a definition whose id may be left to the path, and ``backfill``.
BOARD_CHANGE = "BoardChange"


def board_change_schema(definition: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``BoardChange`` from the schema of ``BoardDefinition``: the id is the path's, and the
    values the validation takes are spelled out (modes, zones, printable titles)."""
    change = copy.deepcopy(definition)
    change["title"] = BOARD_CHANGE
    properties = change["properties"]
    del properties["id"]  # the path's; a body that repeats it must repeat it exactly
    change["required"] = [name for name in change.get("required", []) if name != "id"]
    properties["timezone"]["enum"] = time_zones()
    properties["title"]["pattern"] = title_pattern()
    modes = [item for item in properties["game_mode"]["anyOf"] if item.get("type") == "string"]
    for mode in modes:
        mode["enum"] = list(settings.game_modes)
    properties["backfill"] = {
        "type": "boolean",
        "default": False,
        "description": "On creation: compute the board from the sessions already stored; "
        "until it is done its reads answer 503 (ignored on a change).",
    }
    return change


def _params(settings: Settings, *names: str) -> list[dict[str, Any]]:
    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": schema,
        }

    known: dict[str, dict[str, Any]] = {
        "board_id": {
            "name": "board_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": BOARD_ID_PATTERN},
        },
        "user_id": {
            "name": "user_id",
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        },
        "limit": query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": settings.top_limit_max},
            "How many entries (top: 10 by default; around: 11).",
        ),
        "period": query(
            "period",
            {"type": "string", "pattern": PERIOD_PATTERN, "default": "current"},
            "current, previous, or a period id (2026-12-01, 2026-W49, 2026-12; all).",
        ),
        "cursor": query(
            "cursor", {"type": "string", "maxLength": 200}, "The next_cursor of the page before."
        ),
        "purge": query(
            "purge",
            {"type": "string", "enum": ["true", "false"], "default": "false"},
            "Also remove the board's periods from PostgreSQL (its id may then be used again).",
        ),
    }
    return [known[name] for name in names]


def _read(
    summary: str, settings: Settings, params: list[str], ok: dict[str, Any]
) -> dict[str, Any]:
    return {
        "summary": summary,
        **reads_guarded(settings),
        "parameters": _params(settings, *params),
        "responses": {
            "200": ok,
            "400": problem("A malformed cursor, or one of another board or period"),
            "404": problem("No such board, period not begun, or the player is not on it"),
            "422": invalid(),
            "503": unavailable(),
            **guarded(),
            **sized(),
        },
    }


def _lookup(settings: Settings) -> dict[str, Any]:
    lookup = _read(
        "Some players (a friends list) in board order",
        settings,
        ["board_id"],
        json_body(ref(LookupResponse), "Those present, and the ids absent"),
    )
    lookup["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": ref(LookupRequest)}},
    }
    lookup["responses"] |= {
        "413": problem("The body is too large"),
        "415": problem("The body is not application/json"),
    }
    return lookup


def _event(name: str, media_type: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """One kind of server-sent event: its name, its increasing id and its JSON data."""
    return {
        "type": "object",
        "description": description,
        "properties": {
            "event": {"const": name},
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "data": {"type": "string", "contentMediaType": media_type, "contentSchema": schema},
        },
        "required": ["event", "id", "data"],
    }


def _stream(settings: Settings) -> dict[str, Any]:
    events = {
        # OpenAPI 3.1: the schema of an event stream is that of each of its events.
        "schema": {
            "oneOf": [
                _event(
                    "top",
                    "application/json",
                    ref(BoardPage),
                    "The page, exactly as GET /api/boards/{board_id}/top answers it",
                ),
                _event(
                    "unavailable",
                    "application/problem+json",
                    ref(Problem),
                    "The page cannot be read now (once per outage; top events follow when it "
                    "can), or no longer (the stream then ends)",
                ),
            ]
        }
    }
    stream = _read(
        "Live updates of a page of a board's period (server-sent events)",
        settings,
        ["board_id", "limit", "period"],
        {"description": "An event stream", "content": {"text/event-stream": events}},
    )
    stream["description"] = (
        "`retry: 1000`, then the page as it is (`event: top`), then an event each time it "
        f"changes, at most one every {settings.stream_interval_ms} ms; `: ping` comments keep "
        f"the connection alive. The server ends the stream within {settings.stream_max_s:g} s "
        "(EventSource reconnects by itself). With `period=current` the stream follows the "
        "board into its next period."
    )
    stream["responses"] |= {
        "400": problem("Several Authorization headers"),
        "404": problem("No such board, or the period has not begun"),
        "503": problem(
            "Redis unreachable, the board being filled or the boards rebuilt, or this process "
            "holds all the streams it may (Retry-After says when to retry)"
        ),
    }
    return stream


def board_paths(settings: Settings) -> dict[str, Any]:
    """The paths of ``/api/boards``."""
    admin: dict[str, Any] = {"security": [{"apiKey": []}]}
    listed = {
        "type": "object",
        "properties": {"boards": {"type": "array", "items": ref(Board)}},
        "required": ["boards"],
    }
    periods = {
        "type": "object",
        "properties": {
            "periods": {"type": "array", "items": {"type": "object"}},
            "next_cursor": {"type": ["string", "null"]},
        },
        "required": ["periods", "next_cursor"],
    }
    return {
        "/api/boards": {
            "get": _read(
                "Every board: its definition, current period and members",
                settings,
                [],
                json_body(
                    listed, "Built-in boards first (global, one per mode), then defined ones"
                ),
            )
        },
        "/api/boards/{board_id}": {
            "get": _read(
                "One board (a deleted one too): definition, state, current period, members",
                settings,
                ["board_id"],
                json_body(ref(Board), "The board"),
            ),
            "put": {
                "summary": "Create a board, or change its title or retained periods (admin key)",
                **admin,
                "parameters": _params(settings, "board_id"),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{BOARD_CHANGE}"}
                        }
                    },
                },
                "responses": {
                    "200": json_body(ref(Board), "Changed (or unchanged)"),
                    "201": json_body(ref(Board), "Created"),
                    "400": problem("Not JSON, or ambiguous JSON"),
                    "409": problem("A built-in board, a fixed field changed, or a deleted id"),
                    "413": problem("The body is too large"),
                    "415": problem("The body is not application/json"),
                    "422": invalid(),
                    "503": unavailable(),
                    **guarded(),
                    **sized(),
                },
            },
            "delete": {
                "summary": "Stop counting on a board (admin key); its periods stay readable",
                **admin,
                "parameters": _params(settings, "board_id", "purge"),
                "responses": {
                    "200": json_body({"type": "object"}, "Deleted (or purged)"),
                    "404": problem("There is no such board"),
                    "409": problem("A built-in board"),
                    "422": invalid(),
                    "503": unavailable(),
                    **guarded(),
                    **sized(),
                },
            },
        },
        "/api/boards/{board_id}/top": {
            "get": _read(
                "A page of a board's period, best first",
                settings,
                ["board_id", "limit", "period", "cursor"],
                json_body(ref(BoardPage), "Ties share a rank; next_cursor is null at the end"),
            )
        },
        "/api/boards/{board_id}/stream": {"get": _stream(settings)},
        "/api/boards/{board_id}/players/{user_id}": {
            "get": _read(
                "A player's score, rank and percentile in a board's period",
                settings,
                ["board_id", "user_id", "period"],
                json_body(ref(BoardPlayer), "The player's place"),
            )
        },
        "/api/boards/{board_id}/around/{user_id}": {
            "get": _read(
                "A full window of entries around a player",
                settings,
                ["board_id", "user_id", "limit", "period"],
                json_body(ref(BoardPage), "Centred on the player where the board allows"),
            )
        },
        "/api/boards/{board_id}/lookup": {"post": _lookup(settings)},
        "/api/boards/{board_id}/periods": {
            "get": _read(
                "The past periods of a board that hold players, newest first (100 a page)",
                settings,
                ["board_id", "cursor"],
                json_body(periods, "Each with its id, bounds and members"),
            )
        },
    }
