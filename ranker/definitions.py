"""Board definitions: what a board counts, in which order, and when it starts again.

A definition is made by the game (``PUT /api/boards/{id}``, or ``RANKER_BOARDS_FILE``) or is
built in: ``global`` (the sum of every session, highest first, never reset) and ``mode-<mode>``
(the same for one configured game mode), the boards that existed before definitions did, with
their data. Ids starting with ``mode-`` are kept for those.

The fields that decide what a board holds (operator, order, reset, time zone, game mode) are
fixed at creation: changing one would make the board's past a different board's. The title and
the number of past periods kept in Redis may change.
"""

from __future__ import annotations

import tomllib
import unicodedata
import zoneinfo
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ranker.boards import GLOBAL
from ranker.models import Limits, excluding_class, known_game_mode, whole_number
from ranker.periods import Reset

#: What a board id may look like (it becomes part of Redis keys and SQL rows).
BOARD_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,47}$"
#: The prefix of the built-in boards of game modes (a mode has at most 32 characters, so its
#: board's id fits ``BOARD_ID_PATTERN``).
MODE_PREFIX = "mode-"
#: The fields a definition keeps from its creation on.
IMMUTABLE = ("operator", "order", "reset", "timezone", "game_mode")

#: Unicode categories a title may not hold: control, format, private-use, surrogate.
UNPRINTABLE = frozenset({"Cc", "Cf", "Co", "Cs"})

Operator = Literal["sum", "best", "last"]
Order = Literal["desc", "asc"]


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zones() -> list[str]:
    """Every time zone a board may count its periods in."""
    return sorted(_zones())


@cache
def title_pattern() -> str:
    """A regular expression of the titles ``_printable`` takes (for the OpenAPI document):
    none of the ``UNPRINTABLE`` code points."""
    return f"^{excluding_class(UNPRINTABLE)}*$"


class BoardDefinition(BaseModel):
    """One board: its id, what it counts (``operator``), which score wins (``order``), when it
    starts again (``reset``, in ``timezone``), which sessions count (``game_mode``; ``None``:
    all), and how many past periods Redis keeps for fast reads (``retain_periods``)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str = Field(pattern=BOARD_ID_PATTERN, description="Unique in the namespace.")
    title: str = Field(default="", max_length=100, description="Shown to players.")
    operator: Operator = Field(
        default="sum",
        description="sum: every session's score added; best: the player's best session "
        "(highest on desc, lowest on asc); last: the latest accepted session's score.",
    )
    order: Order = Field(default="desc", description="desc: highest first; asc: lowest first.")
    reset: Reset = Field(default="never", description="never, daily, weekly (ISO) or monthly.")
    timezone: str = Field(default="UTC", description="The IANA zone the periods are counted in.")
    game_mode: str | None = Field(
        default=None, description="Only sessions of this mode count; null: every mode."
    )
    retain_periods: int = Field(
        default=8, ge=0, le=1_000, description="Past periods kept in Redis for fast reads."
    )

    @field_validator("retain_periods", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        return whole_number(value)

    @field_validator("title")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(unicodedata.category(c) in UNPRINTABLE for c in value):
            raise ValueError("no control, format or private-use characters")
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in _zones():
            raise ValueError("not an IANA time zone (e.g. UTC, Europe/Paris)")
        return value

    @field_validator("game_mode")
    @classmethod
    def _known_mode(cls, value: str | None, info: ValidationInfo) -> str | None:
        return known_game_mode(value, info)

    def counts(self, game_mode: str) -> bool:
        """Whether a session of ``game_mode`` counts on this board."""
        return self.game_mode is None or self.game_mode == game_mode


class PeriodOut(BaseModel):
    """A period as the API shows it (``None`` bounds: a board that never resets)."""

    id: str
    starts_at: datetime | None
    ends_at: datetime | None


class Board(BoardDefinition):
    """A definition with its state, its current period and how many players that period
    holds."""

    state: str = Field(
        default="live",
        description="live; filling (computed from past sessions, reads answer 503); deleted "
        "(counts no more; its periods stay readable).",
    )
    period: PeriodOut
    members: int


def builtin_boards(game_modes: Iterable[str]) -> list[BoardDefinition]:
    """The boards every namespace has: ``global`` and one per configured game mode."""
    boards = [BoardDefinition(id=GLOBAL, title="All modes", retain_periods=0)]
    boards += [
        BoardDefinition(id=f"{MODE_PREFIX}{mode}", title=mode, game_mode=mode, retain_periods=0)
        for mode in game_modes
    ]
    return boards


def immutable_changes(old: BoardDefinition, new: BoardDefinition) -> list[str]:
    """The fixed fields ``new`` would change (a 409 names them)."""
    return [field for field in IMMUTABLE if getattr(old, field) != getattr(new, field)]


def reserved(board_id: str) -> bool:
    """Whether ``board_id`` belongs to a built-in board (a game may not create or delete it)."""
    return board_id == GLOBAL or board_id.startswith(MODE_PREFIX)


def read_boards(text: str, limits: Limits) -> list[BoardDefinition]:
    """The definitions of a boards file (TOML, one ``[[board]]`` table each, the fields of
    ``BoardDefinition``); ``ValueError`` with one line naming the board and the field."""
    try:
        tables = tomllib.loads(text).get("board", [])
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not TOML: {exc}") from None
    if not isinstance(tables, list):
        raise ValueError("boards are [[board]] tables")
    boards: list[BoardDefinition] = []
    for number, table in enumerate(tables, 1):
        name = f"board {number}" + (f" ({table['id']})" if isinstance(table.get("id"), str) else "")
        try:
            board = BoardDefinition.model_validate(table, context=limits)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or "board"
            raise ValueError(f"{name}: {field}: {error['msg']}") from None
        if reserved(board.id):
            raise ValueError(f"{name}: id: {board.id!r} is a built-in board's")
        if any(other.id == board.id for other in boards):
            raise ValueError(f"{name}: id: {board.id!r} is defined twice")
        boards.append(board)
    return boards
