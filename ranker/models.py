"""The public models of the HTTP interface: request and response bodies, and their limits.

Validation is strict (no coercion of ``"5"`` to ``5``; unknown fields are rejected). Limits that
are settings (score bounds, game modes) are passed as the validation context, see ``Limits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ranker.boards import NAME_PATTERN
from ranker.periods import PERIOD_PATTERN
from ranker.settings import Settings

USER_ID_MAX = 2**63 - 1
#: Session ids become part of a Redis key: a strict alphabet and a bounded length.
SESSION_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"

UserId = Annotated[int, Field(ge=1, le=USER_ID_MAX, description="A player, 1 .. 2**63-1.")]


@dataclass(frozen=True)
class Limits:
    """The configured limits a submission is validated against (the validation context)."""

    score_min: int
    score_max: int
    game_modes: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits of a deployment."""
        return cls(settings.score_min, settings.score_max, settings.game_modes)


class SubmitRequest(BaseModel):
    """One finished game session, as a game server reports it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: UserId
    score: int = Field(description="Points of this session; bounds are RANKER_SCORE_MIN/MAX.")
    game_mode: Annotated[str, Field(pattern=NAME_PATTERN)] | None = Field(
        default=None, description="One of RANKER_GAME_MODES; RANKER_DEFAULT_GAME_MODE if absent."
    )
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = Field(
        default=None,
        description="Idempotency key: a retry with the same id within RANKER_IDEMPOTENCY_TTL_S "
        "is not counted again. Made by the service when absent.",
    )

    @field_validator("user_id", "score", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        return whole_number(value)

    @field_validator("score")
    @classmethod
    def _score_in_bounds(cls, value: int, info: ValidationInfo) -> int:
        limits = info.context
        if isinstance(limits, Limits) and not limits.score_min <= value <= limits.score_max:
            raise ValueError(f"must be between {limits.score_min} and {limits.score_max}")
        return value

    @field_validator("game_mode")
    @classmethod
    def _known_mode(cls, value: str | None, info: ValidationInfo) -> str | None:
        return known_game_mode(value, info)


def whole_number(value: object) -> object:
    """A JSON number without a fractional part as that integer (a "before" validator of a
    strict int field). JSON does not tell 1.0 from 1 (nor does the schema's "integer"), up to
    2**53, where doubles stop being exact. Any other float, a bool or a string is left for the
    strict check to refuse."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def known_game_mode(value: str | None, info: ValidationInfo) -> str | None:
    """``value`` if it is one of the configured game modes (the validation context's)."""
    limits = info.context
    if value is not None and isinstance(limits, Limits) and value not in limits.game_modes:
        raise ValueError(f"unknown game mode; one of: {', '.join(limits.game_modes)}")
    return value


class BoardStanding(BaseModel):
    """A player's place on one board a submission counted on."""

    score: int | None = Field(description="The player's score there; null while it is rebuilt.")
    rank: int | None = Field(description="Competition rank (ties share one); null while rebuilt.")
    period: str = Field(description="The period the session counted in.")


class SubmitResponse(BaseModel):
    """The outcome of a submission."""

    user_id: int
    total_score: int | None = Field(
        description="The player's new total on the global board; null while it is being rebuilt."
    )
    rank: int | None = Field(description="Rank on the global board; null while it is rebuilt.")
    session_id: str
    duplicate: bool = Field(description="True when this session had already been counted.")
    event_id: str = Field(description="The id the session was accepted as (the first one's).")
    boards: dict[str, BoardStanding] = Field(
        default_factory=dict,
        description="The player's place on every board the session counted on.",
    )


class Standing(BaseModel):
    """A player's place on a board."""

    user_id: int
    total_score: int
    rank: int = Field(description="1 + the number of players with a strictly greater total.")


class Entry(BaseModel):
    """One row of a list of players (top, around)."""

    rank: int
    user_id: int
    total_score: int


class FieldError(BaseModel):
    """One invalid field of a request."""

    field: str
    message: str


class Problem(BaseModel):
    """An error, as RFC 9457 ``application/problem+json``."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] = Field(default_factory=list)


class BoardEntry(BaseModel):
    """One row of a board page (top, around, lookup)."""

    rank: int
    user_id: int
    score: int


class BoardPage(BaseModel):
    """Entries of one period of a board, best first."""

    board: str
    period: str
    members: int = Field(description="How many players the period holds.")
    entries: list[BoardEntry]
    next_cursor: str | None = Field(
        default=None, description="Pass as ?cursor= for the next page; null on the last one."
    )


class BoardPlayer(BaseModel):
    """A player's place in one period of a board."""

    user_id: int
    score: int
    rank: int
    members: int
    percentile: float = Field(description="100 * (members - rank) / members, two decimals.")
    period: str


class LookupRequest(BaseModel):
    """Players to find on a board (a friends list)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user_ids: list[UserId] = Field(min_length=1, max_length=100)
    period: str = Field(default="current", pattern=PERIOD_PATTERN)

    @field_validator("user_ids", mode="before")
    @classmethod
    def _whole_numbers(cls, value: object) -> object:
        return [whole_number(item) for item in value] if isinstance(value, list) else value


class LookupResponse(BaseModel):
    """The players of a lookup that are on the board, in board order, and those that are not."""

    board: str
    period: str
    members: int
    entries: list[BoardEntry]
    missing: list[int]
