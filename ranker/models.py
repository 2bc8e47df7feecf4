"""The public models of the HTTP interface: request and response bodies, and their limits.

Validation is strict (no coercion of ``"5"`` to ``5``; unknown fields are rejected). Limits that
are settings (score bounds, game modes) are passed as the validation context, see ``Limits``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated

import orjson
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ranker.boards import NAME_PATTERN
from ranker.periods import PERIOD_PATTERN
from ranker.settings import Settings

USER_ID_MAX = 2**63 - 1
#: Session ids become part of a Redis key: a strict alphabet and a bounded length.
SESSION_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"

UserId = Annotated[int, Field(ge=1, le=USER_ID_MAX, description="A player, 1 .. 2**63-1.")]
#: Display names, in characters (code points) after NFKC normalisation and trimming.
USERNAME_MAX = 32
#: Unicode categories a name may not hold: control, format, private use, surrogates, and the
#: line and paragraph separators (a name is one line).
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})


@cache
def excluding_class(categories: frozenset[str]) -> str:
    """A regular-expression class of every code point outside these Unicode categories, as
    ranges (for the OpenAPI document's patterns). Surrogates are left out of it whatever the
    categories: no regex engine of ECMA-262's kind takes them in a class, and a JSON string
    cannot carry one unpaired (the body's parser refuses it)."""
    ranges: list[tuple[int, int]] = []
    for point in range(0x110000):
        if unicodedata.category(chr(point)) in categories - {"Cs"}:
            if ranges and ranges[-1][1] == point - 1:
                ranges[-1] = (ranges[-1][0], point)
            else:
                ranges.append((point, point))

    def escaped(point: int) -> str:
        # Beyond the BMP the character itself: ECMA-262 and Python spell its escape apart.
        return f"\\u{point:04x}" if point < 0x10000 else chr(point)

    body = "".join(
        escaped(low) if low == high else f"{escaped(low)}-{escaped(high)}" for low, high in ranges
    )
    return f"[^{body}]"


@cache
def username_pattern() -> str:
    """A regular expression of the names ``normal_username`` takes (for the OpenAPI document):
    spaces around 1 to ``USERNAME_MAX`` characters that start and end with another, none of
    ``REFUSED_CATEGORIES``. (What NFKC changes is not spelled out: a few compatibility
    characters normalise to longer text.)"""
    allowed = excluding_class(frozenset(REFUSED_CATEGORIES))
    visible = allowed[:-1] + "\\s]"
    return f"^\\s*{visible}({allowed}{{0,{USERNAME_MAX - 2}}}{visible})?\\s*$"


def normal_username(value: object) -> object:
    """A display name as stored: NFKC-normalised and trimmed, 1 to ``USERNAME_MAX``
    characters, none of ``REFUSED_CATEGORIES`` (``ValueError`` saying which rule it breaks).
    Anything but a string is left for the strict check to refuse. Names need not be unique."""
    if not isinstance(value, str):
        return value
    name = unicodedata.normalize("NFKC", value).strip()
    if not name:
        raise ValueError("must hold at least one character besides spaces")
    if len(name) > USERNAME_MAX:
        raise ValueError(f"at most {USERNAME_MAX} characters (after NFKC normalisation)")
    for char in name:
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            raise ValueError(
                f"may not hold U+{ord(char):04X} (control, format, private-use or "
                "line-separator characters)"
            )
    return name


Username = Annotated[
    str,
    Field(
        description="A display name: 1 to 32 characters after NFKC normalisation and trimming; "
        "no control, format or private-use characters. Names need not be unique.",
    ),
]


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
    username: Username | None = Field(
        default=None, description="Sets (or changes) the player's display name."
    )

    @field_validator("username", mode="before")
    @classmethod
    def _normal_username(cls, value: object) -> object:
        return normal_username(value)

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
    message: str = Field(
        default="Score submitted successfully",
        description="What the original service answered (its clients check for it).",
    )


class Standing(BaseModel):
    """A player's place on a board."""

    user_id: int
    total_score: int
    rank: int = Field(description="1 + the number of players with a strictly greater total.")
    username: str | None = Field(default=None, description="The display name; null if unknown.")


class Entry(BaseModel):
    """One row of a list of players (top, around)."""

    rank: int
    user_id: int
    total_score: int
    username: str | None = Field(default=None, description="The display name; null if unknown.")


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
    request_id: str | None = Field(
        default=None, description="The request's id, as its X-Request-ID header and log line."
    )


class BoardEntry(BaseModel):
    """One row of a board page (top, around, lookup)."""

    rank: int
    user_id: int
    score: int
    username: str | None = Field(default=None, description="The display name; null if unknown.")


class BoardPage(BaseModel):
    """Entries of one period of a board, best first."""

    board: str
    period: str
    members: int = Field(description="How many players the period holds.")
    entries: list[BoardEntry]
    next_cursor: str | None = Field(
        default=None, description="Pass as ?cursor= for the next page; null on the last one."
    )


def entries_json(entries: Sequence[Entry]) -> bytes:
    """A list of entries as the routes write it (top, around): pydantic's own encoder in one
    call, 2.7 us for a top page of 10 against 9.5 us through orjson with a ``model_dump`` per
    entry. For such fields (ints, strings and None) both write the same bytes."""
    return pydantic_core.to_json(entries)


def page_json(page: BaseModel) -> bytes:
    """A response model as the routes write it (``ranker.api.problems.JSON``: orjson of its
    ``model_dump``), for a body made before its response (a board's top page)."""
    return orjson.dumps(page.model_dump())


class BoardPlayer(BaseModel):
    """A player's place in one period of a board."""

    user_id: int
    score: int
    rank: int
    members: int
    percentile: float = Field(description="100 * (members - rank) / members, two decimals.")
    period: str
    username: str | None = Field(default=None, description="The display name; null if unknown.")


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
