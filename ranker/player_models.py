"""The models of players and moderation in the HTTP interface: names, profiles, the answers
of bans, unbans and voids, the audit log (the rest are ``ranker.models``)."""

from __future__ import annotations

import unicodedata
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ranker.models import REFUSED_CATEGORIES, Username, excluding_class, normal_username

#: The longest reason an admin may give for a moderation action.
REASON_MAX = 500


class NameRequest(BaseModel):
    """A player's display name, set alone."""

    model_config = ConfigDict(extra="forbid", strict=True)

    username: Username

    @field_validator("username", mode="before")
    @classmethod
    def _normal_username(cls, value: object) -> object:
        return normal_username(value)


class NameResponse(BaseModel):
    """A player's display name as stored."""

    user_id: int
    username: str


def one_line(value: object) -> object:
    """Text on one line: none of the characters a name may not hold either (a "before"
    validator: anything but a string is left for the strict check)."""
    if isinstance(value, str):
        for char in value:
            if unicodedata.category(char) in REFUSED_CATEGORIES:
                raise ValueError(f"may not hold U+{ord(char):04X}: text on one line only")
    return value


@cache
def one_line_pattern() -> str:
    """A regular expression of the text ``one_line`` takes (for the OpenAPI document)."""
    return f"^{excluding_class(REFUSED_CATEGORIES)}*$"


class ModerationRequest(BaseModel):
    """Why an admin unbans or voids (kept in the audit log and on voided sessions)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str | None = Field(default=None, min_length=1, max_length=REASON_MAX)

    @field_validator("reason", mode="before")
    @classmethod
    def _one_line(cls, value: object) -> object:
        return one_line(value)


class BanRequest(ModerationRequest):
    """Why an admin bans a player: required."""

    reason: str = Field(min_length=1, max_length=REASON_MAX)


class PlayerBoard(BaseModel):
    """A player's place in the current period of one board."""

    period: str
    score: int
    rank: int
    members: int
    percentile: float = Field(description="100 * (members - rank) / members, two decimals.")


class VoidedSessionOut(BaseModel):
    """A session that counts nowhere, and why."""

    session_id: str
    event_id: str
    score: int
    game_mode: str
    created_at: str
    voided_at: str
    voided_by: str = Field(description="The id of the admin key that voided it (never a key).")
    reason: str | None
    by_ban: bool = Field(description="Voided by a ban: an unban counts it again.")


class BanOut(BaseModel):
    """A ban in force."""

    banned_at: str
    banned_by: str
    reason: str


class PlayerProfile(BaseModel):
    """A player: name, whether banned, and their place on every board's current period (a
    board they are not on is left out). The admin fields are present with an admin key only."""

    user_id: int
    username: str | None
    banned: bool
    boards: dict[str, PlayerBoard]
    pending: bool | None = Field(
        default=None, description="Admin: an unban or a void is being applied to the boards."
    )
    ban: BanOut | None = None
    sessions: int | None = Field(default=None, description="Admin: sessions stored.")
    voided: int | None = Field(default=None, description="Admin: of them, voided.")
    voided_sessions: list[VoidedSessionOut] | None = Field(
        default=None, description="Admin: the latest voided sessions, newest first."
    )


class ModerationResult(BaseModel):
    """The outcome of a ban, an unban or a void."""

    action: str
    user_id: int
    completed: bool = Field(
        description="False when the worker had not persisted the action in time: it completes "
        "by itself (the player's submissions answer 503 until then)."
    )
    session: VoidedSessionOut | None = Field(default=None, description="A void: the session.")
    player: PlayerProfile


class AuditEntryOut(BaseModel):
    """One admin action."""

    at: str
    key_id: str = Field(description="The id of the admin key (a digest prefix, never a key).")
    action: str = Field(description="board_put, board_delete, board_purge, ban, unban or void.")
    target: str = Field(description="board:<id>, player:<user id> or session:<session id>.")
    reason: str | None
    detail: dict[str, object] | None


class AuditPage(BaseModel):
    """Admin actions, newest first."""

    entries: list[AuditEntryOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for older ones; null at the end.")
