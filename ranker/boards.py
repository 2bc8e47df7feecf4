"""Board names: the one place that knows which boards exist and which a session counts on.

A namespace has the ``global`` board and one board per configured game mode, ``mode:<mode>``.
Board names become parts of Redis keys (``keys.py``) and rows of ``board_totals``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: What a game mode, a namespace or a board suffix may look like: they become parts of Redis keys.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
#: The board every session counts on.
GLOBAL = "global"
_MODE_PREFIX = "mode:"
#: Every name ``of_mode`` can return.
BOARD_PATTERN = rf"^({GLOBAL}|{_MODE_PREFIX}{NAME_PATTERN.strip('^$')})$"
_BOARD = re.compile(BOARD_PATTERN)


def of_mode(mode: str | None) -> str:
    """The board of a game mode (``None``: the global board)."""
    return GLOBAL if mode is None else f"{_MODE_PREFIX}{mode}"


def of_session(game_mode: str) -> tuple[str, str]:
    """The boards a session of ``game_mode`` counts on: the global board and its mode's."""
    return (GLOBAL, of_mode(game_mode))


def every_board(game_modes: Iterable[str]) -> tuple[str, ...]:
    """Every board of a namespace with these game modes, the global board first."""
    return (GLOBAL, *(of_mode(mode) for mode in game_modes))


def is_board(name: str) -> bool:
    """Whether ``name`` is a board name ``of_mode`` could have made."""
    return bool(_BOARD.match(name))
