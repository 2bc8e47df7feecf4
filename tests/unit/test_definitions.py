"""Board definitions (``ranker/definitions.py``): what is accepted, refused, fixed, built in."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ranker.definitions import (
    BoardDefinition,
    builtin_boards,
    immutable_changes,
    read_boards,
    reserved,
)
from ranker.models import Limits

LIMITS = Limits(0, 1_000, ("solo", "team"))
WEEKLY_BEST = {
    "id": "weekly-best",
    "title": "Best run this week",
    "operator": "best",
    "order": "desc",
    "reset": "weekly",
    "timezone": "Europe/Paris",
    "game_mode": None,
    "retain_periods": 8,
}


def validate(body: dict[str, Any]) -> BoardDefinition:
    return BoardDefinition.model_validate(body, context=LIMITS)


def test_the_example_of_the_design_is_a_definition() -> None:
    board = validate(WEEKLY_BEST)
    assert (board.operator, board.reset, board.timezone) == ("best", "weekly", "Europe/Paris")
    assert board.counts("solo") and board.counts("team")


def test_defaults_make_a_sum_board_highest_first_never_reset() -> None:
    board = validate({"id": "all-time"})
    assert (board.operator, board.order, board.reset, board.timezone) == (
        "sum",
        "desc",
        "never",
        "UTC",
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "Weekly"),
        ("id", "-weekly"),
        ("id", "a" * 49),
        ("id", "week ly"),
        ("operator", "max"),
        ("order", "up"),
        ("reset", "hourly"),
        ("timezone", "Mars/Olympus"),
        ("timezone", "utc "),
        ("game_mode", "duo"),
        ("retain_periods", -1),
        ("retain_periods", 1_001),
        ("retain_periods", "8"),
        ("title", "a\x1bb"),
        ("title", "x" * 101),
        ("extra", 1),
    ],
)
def test_a_bad_field_is_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        validate(WEEKLY_BEST | {field: value})
    assert [error["loc"][0] for error in caught.value.errors()] == [field]


def test_a_mode_board_counts_only_its_mode() -> None:
    board = validate({"id": "solo-sprint", "game_mode": "solo", "order": "asc"})
    assert board.counts("solo") and not board.counts("team")


def test_the_fixed_fields_are_named_when_they_change() -> None:
    old = validate(WEEKLY_BEST)
    renamed = validate(WEEKLY_BEST | {"title": "Weekly", "retain_periods": 2})
    assert immutable_changes(old, renamed) == []
    changed = validate(WEEKLY_BEST | {"operator": "sum", "timezone": "UTC"})
    assert immutable_changes(old, changed) == ["operator", "timezone"]


def test_the_boards_of_before_are_built_in() -> None:
    boards = builtin_boards(LIMITS.game_modes)
    assert [(b.id, b.operator, b.order, b.reset, b.game_mode) for b in boards] == [
        ("global", "sum", "desc", "never", None),
        ("mode-solo", "sum", "desc", "never", "solo"),
        ("mode-team", "sum", "desc", "never", "team"),
    ]
    assert all(reserved(board.id) for board in boards)
    assert not reserved("weekly-best") and not reserved("modes")


BOARDS_FILE = """
[[board]]
id = "weekly-best"
title = "Best run this week"
operator = "best"
reset = "weekly"
timezone = "Europe/Paris"

[[board]]
id = "solo-sprint"
operator = "best"
order = "asc"
game_mode = "solo"
"""


def test_a_boards_file_holds_definitions() -> None:
    boards = read_boards(BOARDS_FILE, LIMITS)
    assert [(b.id, b.operator, b.order, b.game_mode) for b in boards] == [
        ("weekly-best", "best", "desc", None),
        ("solo-sprint", "best", "asc", "solo"),
    ]
    assert read_boards("", LIMITS) == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[[board]]\nid = 'x'\noperator = 'max'\n", "board 1 (x): operator: Input should be"),
        ("[[board]]\nid = 'x'\n[[board]]\nid = 'x'\n", "board 2 (x): id: 'x' is defined twice"),
        ("[[board]]\nid = 'global'\n", "board 1 (global): id: 'global' is a built-in board's"),
        ("[[board]]\ntitle = 'no id'\n", "board 1: id: Field required"),
        (
            "[[board]]\nid = 'x'\ngame_mode = 'duo'\n",
            "board 1 (x): game_mode: Value error, unknown",
        ),
        ("board = 3\n", "boards are [[board]] tables"),
        ("[[board]\n", "not TOML"),
    ],
)
def test_a_bad_boards_file_is_one_line_naming_the_board_and_field(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        read_boards(text, LIMITS)
    assert str(caught.value).startswith(reason), caught.value
    assert "\n" not in str(caught.value)
