"""Board entries as Redis replies hold them: scores, names and competition ranks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ranker.models import BoardStanding, Entry
from ranker.placements import Placement


def to_int(raw: bytes | str | int | float) -> int:
    """A sorted-set score as an int (Redis replies with the text of a double)."""
    if isinstance(raw, int):
        return raw
    try:
        return int(raw)
    except ValueError:
        return int(float(raw))


def name_of(raw: bytes | None) -> str | None:
    """A display name as Redis returns it (``None``: the player has none)."""
    return None if raw is None else raw.decode()


def ranked(
    flat: Sequence[bytes],
    first_rank: int = 1,
    first_position: int = 0,
    names: Sequence[bytes | None] = (),
) -> list[Entry]:
    """Entries from a flat ``member, score, ...`` reply ordered best first, named by ``names``
    (one per entry, ``None`` for a player without a name; none at all: no names).

    The first member has rank ``first_rank`` and 0-based board position ``first_position``
    (they differ when it ties with members above the slice). Each next member shares the
    previous rank on a tie and otherwise ranks by its position: standard competition ranking,
    like SQL ``RANK()``.
    """
    entries: list[Entry] = []
    rank = first_rank
    previous: int | None = None
    for offset in range(0, len(flat), 2):
        total = to_int(flat[offset + 1])
        if previous is not None and total != previous:
            rank = first_position + offset // 2 + 1
        name = name_of(names[offset // 2]) if names else None
        entries.append(
            Entry(rank=rank, user_id=int(flat[offset]), total_score=total, username=name)
        )
        previous = total
    return entries


def counted_on(
    placements: Sequence[Placement], standings: Sequence[Any], ready: int
) -> dict[str, BoardStanding]:
    """Each board's standing after a submission, from ``submit.lua``'s score, rank pairs."""
    counted = {}
    for i, placement in enumerate(placements):
        score, rank = standings[2 * i : 2 * i + 2]
        if not ready or score is None:  # rebuilding, or (a retry) not on this board
            score = rank = None
        counted[placement.board] = BoardStanding(
            score=None if score is None else to_int(score),
            rank=None if rank is None else int(rank),
            period=placement.period,
        )
    return counted
