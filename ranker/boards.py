"""The Redis names of the built-in boards: `global` and one per configured game mode.

A namespace has the ``global`` board and one board per configured game mode, ``mode:<mode>``
(``keys.py``); their definitions' ids are ``global`` and ``mode-<mode>`` (``definitions.py``),
and the boards a session counts on come from ``placements.place``.
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


def every_board(game_modes: Iterable[str]) -> tuple[str, ...]:
    """Every board of a namespace with these game modes, the global board first."""
    return (GLOBAL, *(of_mode(mode) for mode in game_modes))


def is_board(name: str) -> bool:
    """Whether ``name`` is a board name ``of_mode`` could have made."""
    return bool(_BOARD.match(name))
