"""Where a session counts: the boards and periods of one acceptance, their Redis slots, and the
tokens that carry them through the events stream to PostgreSQL.

A session counts on every board whose game mode matches, in the period that holds the instant
the API accepted it (the API's clock, in the board's time zone). The submit script gets one
``Placement`` per board; its stream entry lists them as tokens ``<board>:<period>:<op>``, so
the worker files the session exactly where Redis counted it, whatever definitions change
meanwhile.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from ranker import boards
from ranker.definitions import MODE_PREFIX, BoardDefinition, reserved
from ranker.errors import InvalidInput, NotFound
from ranker.models import FieldError
from ranker.periods import (
    ALL,
    PERIOD_PATTERN,
    Period,
    Reset,
    period_at,
    period_by_id,
    previous,
)

#: How a score joins a player's: ``s`` added (sum), ``h`` the higher kept (best on a desc
#: board), ``l`` the lower kept (best on an asc board), ``n`` the newest kept (last).
OPS = ("s", "h", "l", "n")
_PERIOD = re.compile(PERIOD_PATTERN)
#: How long a past period stays in Redis after it leaves the retained ones: a late write from
#: an API process whose clock lags cannot recreate a key that has just expired.
RETENTION_GRACE = timedelta(hours=1)
#: How long a past period reloaded from PostgreSQL (once it left Redis) stays in Redis after
#: its last read.
ARCHIVE_TTL_S = 600
#: How far ahead of its clock a process may place sessions in a board's next period (and a
#: rebuild loads it).
LOOKAHEAD = timedelta(minutes=5)


def op_of(board: BoardDefinition) -> str:
    """The op code of a board's operator and order."""
    if board.operator == "sum":
        return "s"
    if board.operator == "last":
        return "n"
    return "h" if board.order == "desc" else "l"


def slot_of(board: BoardDefinition | str, period_id: str) -> str:
    """The name of a board's period in Redis (``keys.Keys.board``): the built-in boards keep
    the names they had before definitions (``global``, ``mode:<mode>``: an upgrade moves no
    data); any other is ``<board id>/<period id>``."""
    board_id = board if isinstance(board, str) else board.id
    if reserved(board_id):
        if board_id == boards.GLOBAL:
            return boards.GLOBAL
        return boards.of_mode(board_id.removeprefix(MODE_PREFIX))
    return f"{board_id}/{period_id}"


@dataclass(frozen=True, slots=True)
class Token:
    """Where a session counts: a board, a period and the op, as its stream entry carries them
    (what the worker persists)."""

    board: str
    period: str
    op: str

    @property
    def slot(self) -> str:
        return slot_of(self.board, self.period)

    @property
    def token(self) -> str:
        return f"{self.board}:{self.period}:{self.op}"


@dataclass(frozen=True, slots=True)
class Placement(Token):
    """A token with what the submit script also needs: the board's order, and when the
    period's key expires (unix ms: the end of the last period that retains it, plus
    ``RETENTION_GRACE``; 0: never, a board that never resets)."""

    order: str
    expires_at_ms: int


def place(definitions: Iterable[BoardDefinition], instant: datetime) -> list[Placement]:
    """The placements of a session accepted at ``instant`` on ``definitions`` (the boards it
    counts on, in that order)."""
    placed = []
    for board in definitions:
        period = period_at(board.reset, board.timezone, instant)
        expires = expiry_ms(board.reset, board.timezone, board.retain_periods, period)
        placed.append(Placement(board.id, period.id, op_of(board), board.order, expires))
    return placed


def live_placements(definitions: Iterable[BoardDefinition], instant: datetime) -> list[Placement]:
    """Every period of ``definitions`` that Redis may hold live at ``instant``, one placement
    each: the current one, the next when it begins within ``LOOKAHEAD`` (a clock running
    ahead places sessions there), and the retained ones."""
    found: dict[str, Placement] = {}
    for board in definitions:
        instants = [instant + LOOKAHEAD, instant]
        instants += [p.starts_at for p in retained(board, instant)[1:] if p.starts_at]
        for at in instants:
            for placement in place([board], at):
                found.setdefault(placement.slot, placement)
    return list(found.values())


def period_of(board: BoardDefinition, instant: datetime) -> Period:
    """The period of ``board`` holding ``instant``."""
    return period_at(board.reset, board.timezone, instant)


@lru_cache(maxsize=4096)
def expiry_ms(reset: Reset, timezone: str, retain: int, period: Period) -> int:
    """When the key of ``period`` may leave Redis: once ``retain`` periods have followed it
    (plus the grace); 0 for a board that never resets."""
    if period.ends_at is None:
        return 0
    last = period
    for _ in range(retain):
        assert last.ends_at is not None
        last = period_at(reset, timezone, last.ends_at)
    assert last.ends_at is not None
    return int((last.ends_at + RETENTION_GRACE).timestamp() * 1000)


def tokens_text(placements: Sequence[Token]) -> str:
    """The stream field that lists a session's placements."""
    return ",".join(placement.token for placement in placements)


def legacy_tokens(game_mode: str) -> list[Token]:
    """Where an entry written before definitions existed counted: the global board and its
    mode's (it has no tokens)."""
    return [Token(boards.GLOBAL, ALL, "s"), Token(f"{MODE_PREFIX}{game_mode}", ALL, "s")]


def parse_tokens(text: bytes | str | None, game_mode: str) -> list[Token]:
    """The placements of a stream entry (``legacy_tokens`` for one without)."""
    if not text:
        return legacy_tokens(game_mode)
    raw = text.decode() if isinstance(text, bytes) else text
    tokens = []
    for part in raw.split(","):
        board, period, op = part.split(":")
        tokens.append(Token(board, period, op))
    return tokens


def retained(board: BoardDefinition, instant: datetime) -> list[Period]:
    """The periods of ``board`` Redis holds at ``instant``: the current one and the
    ``retain_periods`` before it, newest first (one for a board that never resets)."""
    periods = [period_at(board.reset, board.timezone, instant)]
    for _ in range(board.retain_periods):
        before = previous(board.reset, board.timezone, periods[-1])
        if before is None:
            break
        periods.append(before)
    return periods


def resolve_period(board: BoardDefinition, wanted: str, instant: datetime) -> Period:
    """The period a read names: ``current`` (the one holding ``instant``), ``previous`` (the
    one before it) or a period id of the board's reset. ``InvalidInput`` (422 naming
    ``period``) for anything else, ``NotFound`` for a period that has not begun or, on a board
    that never resets, ``previous``."""
    current = period_at(board.reset, board.timezone, instant)
    if wanted == "current":
        return current
    if wanted == "previous":
        before = previous(board.reset, board.timezone, current)
        if before is None:
            raise NotFound(f"board {board.id} never resets: it has no previous period")
        return before
    if not _PERIOD.match(wanted):
        raise InvalidInput(
            "period must be current, previous or a period id (all, 2026-12-01, 2026-W49, 2026-12)",
            [FieldError(field="period", message=f"must match {PERIOD_PATTERN}")],
        )
    try:
        period = period_by_id(board.reset, board.timezone, wanted)
    except ValueError:
        raise NotFound(f"board {board.id} ({board.reset}) has no period {wanted}") from None
    if current.starts_at is not None and period.starts_at is not None:
        if period.starts_at > current.starts_at:
            raise NotFound(f"period {period.id} of board {board.id} has not begun")
    return period
