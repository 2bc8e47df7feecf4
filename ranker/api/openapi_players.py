"""The player operations of the OpenAPI document: names, profiles, moderation, the audit log."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ranker.api.openapi_parts import guarded, invalid, json_body, problem, ref, sized, unavailable
from ranker.models import SESSION_ID_PATTERN
from ranker.player_models import (
    AuditPage,
    BanRequest,
    ModerationRequest,
    ModerationResult,
    NameRequest,
    NameResponse,
    PlayerProfile,
)
from ranker.settings import Settings

#: The models these operations name (their schemas join the document's components).
MODELS: tuple[type[BaseModel], ...] = (
    NameRequest,
    NameResponse,
    PlayerProfile,
    ModerationRequest,
    ModerationResult,
    AuditPage,
    BanRequest,
)
_USER_ID = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}
_SESSION_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": SESSION_ID_PATTERN},
}


def _body(model: type[BaseModel], required: bool) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": ref(model)}}}


def _moderation(
    summary: str, params: list[dict[str, Any]], body: type[BaseModel] = ModerationRequest
) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"apiKey": []}],
        "parameters": params,
        "requestBody": _body(body, body is BanRequest),
        "responses": {
            "200": json_body(ref(ModerationResult), "Done: the player as they are now"),
            "202": json_body(
                ref(ModerationResult),
                "Taken in Redis; the worker had not persisted it in time (completed: false): "
                "it completes by itself",
            ),
            "400": problem("Not JSON, or ambiguous JSON"),
            "404": problem("No such session, or (unban) the player is not banned"),
            "413": problem("The body is too large"),
            "415": problem("The body is not application/json"),
            "422": invalid(),
            "503": unavailable(),
            **guarded(),
            **sized(),
        },
    }


def _void() -> dict[str, Any]:
    operation = _moderation(
        "Void one session (admin key): every board and period it counted on is "
        "recomputed for its player; twice: the same answer",
        [_SESSION_ID],
    )
    operation["responses"]["409"] = problem(
        "The session is of a month past RANKER_SESSIONS_RETENTION_MONTHS: it can no longer be "
        "voided alone (a ban still removes its player's scores)"
    )
    return operation


def player_paths(settings: Settings) -> dict[str, Any]:
    """The paths of ``/api/players``, ``/api/sessions`` and ``/api/audit``."""
    reads: dict[str, Any] = {} if settings.public_reads else {"security": [{"apiKey": []}]}
    common = {"503": unavailable(), **guarded(), **sized()}
    return {
        "/api/players/{user_id}": {
            "get": {
                "summary": "A player: name, banned or not, place on every board (more with an "
                "admin key: sessions, voided sessions, the ban)",
                **reads,
                "parameters": [_USER_ID],
                "responses": {
                    "200": json_body(ref(PlayerProfile), "The player"),
                    "404": problem("No such player: no name, no ban, on no board"),
                    "422": invalid(),
                    **common,
                },
            },
            "put": {
                "summary": "Set a player's display name (write key)",
                "security": [{"apiKey": []}],
                "parameters": [_USER_ID],
                "requestBody": _body(NameRequest, True),
                "responses": {
                    "200": json_body(ref(NameResponse), "The name as stored (normalised)"),
                    "400": problem("Not JSON, or ambiguous JSON"),
                    "413": problem("The body is too large"),
                    "415": problem("The body is not application/json"),
                    "422": invalid(),
                    **common,
                },
            },
        },
        "/api/players/{user_id}/ban": {
            "post": _moderation(
                "Ban a player (admin key): off every board and period, their sessions voided, "
                "their submissions refused (403)",
                [_USER_ID],
                BanRequest,
            )
        },
        "/api/players/{user_id}/unban": {
            "post": _moderation(
                "Lift a ban (admin key): the sessions it voided count again, every board "
                "recomputed from the log",
                [_USER_ID],
            )
        },
        "/api/sessions/{session_id}": {
            "delete": _void(),
        },
        "/api/audit": {
            "get": {
                "summary": "Every admin action, newest first (admin key)",
                "security": [{"apiKey": []}],
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": "The next_cursor of the page before.",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                    },
                ],
                "responses": {
                    "200": json_body(ref(AuditPage), "Admin actions, newest first"),
                    "400": problem("A malformed cursor"),
                    "422": invalid(),
                    **common,
                },
            }
        },
    }
