"""What is sent: the request kinds, the mix of kinds, and the request of each kind.

A kind is one endpoint of ranker's API; the ``mix`` workload draws a kind per request by the
configured ratios. Submit bodies are built with ``ranker.models.SubmitRequest``, so a body the
service would refuse fails here, not as a run full of 422s.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ranker.models import SubmitRequest

KINDS = (
    "rank",
    "top",
    "submit",
    "around",
    "board-top",
    "board-player",
    "board-around",
    "board-lookup",
)
WORKLOADS = (*KINDS, "mix")
#: The original service's simulation: submissions, plus polling of the top and of ranks.
DEFAULT_MIX: dict[str, float] = {"submit": 2.0, "top": 3.0, "rank": 5.0}
#: Players above and below in an ``around`` request.
AROUND_N = 5
#: Entries of a board's around window, and players of a lookup (a friends list).
BOARD_AROUND_LIMIT = 11
LOOKUP_PLAYERS = 20
#: The board the ``board-*`` kinds read (the built-in global board by default).
DEFAULT_BOARD = "global"
SCORE_MIN = 1
SCORE_MAX = 10_000
JSON_HEADERS = {"Content-Type": "application/json"}


class MixError(ValueError):
    """A ``--mix`` that cannot be used: its message says which part and why."""


def parse_mix(text: str) -> dict[str, float]:
    """Parse ``"submit=1,top=2,rank=7"`` into ratios by kind.

    Ratios are relative (they need not add up to anything); a kind may be given a ratio of 0 to
    leave it out. Raises ``MixError`` for an unknown kind, a kind named twice, a ratio that is not
    a finite number >= 0, or ratios that are all 0.
    """
    mix: dict[str, float] = {}
    for part in (piece.strip() for piece in text.split(",")):
        kind, sep, value = (item.strip() for item in part.partition("="))
        if not sep or not kind:
            raise MixError(f"bad mix entry {part!r}: expected kind=ratio, e.g. submit=2")
        if kind in mix:
            raise MixError(f"kind {kind!r} is named twice in the mix")
        try:
            mix[kind] = float(value)
        except ValueError:
            raise MixError(f"ratio of {kind!r} is not a number: {value!r}") from None
    check_mix(mix)
    return mix


def check_mix(mix: Mapping[str, float]) -> None:
    """Raise ``MixError`` unless ``mix`` names known kinds with finite ratios >= 0, not all 0."""
    for kind, ratio in mix.items():
        if kind not in KINDS:
            raise MixError(f"unknown kind {kind!r} in the mix; kinds are {', '.join(KINDS)}")
        if not math.isfinite(ratio) or ratio < 0:
            raise MixError(f"ratio of {kind!r} must be a finite number >= 0, not {ratio}")
    if sum(mix.values()) <= 0:
        raise MixError("the mix has no kind with a ratio above 0")


def check_mode(mode: str) -> None:
    """Raise ``ValueError`` unless ``mode`` is a game mode name a submission may carry."""
    try:
        SubmitRequest(user_id=1, score=SCORE_MIN, game_mode=mode)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"bad game mode {mode!r}: not a valid mode name") from exc


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to send."""

    kind: str
    method: str
    url: str
    body: bytes | None = None


class Workload:
    """Draws the requests of a run: the kind by the ratios, then its player, score and mode.

    One seeded ``random.Random`` makes the sequence of an open-loop run reproducible; session
    ids carry ``run_id`` so that they stay unique across runs, whatever the seed (the service
    remembers them for a day and would answer a repeat as a duplicate).
    """

    def __init__(
        self,
        url: str,
        ratios: Mapping[str, float],
        *,
        players: int,
        limit: int,
        modes: Sequence[str],
        rng: random.Random,
        run_id: str,
        board: str = DEFAULT_BOARD,
    ) -> None:
        self.base = url.rstrip("/") + "/api/leaderboard"
        self.board = f"{url.rstrip('/')}/api/boards/{board}"
        self.kinds = [kind for kind, ratio in ratios.items() if ratio > 0]
        self.cum_weights = list(itertools.accumulate(ratios[kind] for kind in self.kinds))
        self.players = players
        self.modes = list(modes)
        self.rng = rng
        self.run_id = run_id
        self.top_url = f"{self.base}/top?limit={limit}"
        self.board_top_url = f"{self.board}/top?limit={limit}"
        self.submissions = itertools.count()  # numbers the session ids of this run

    def next(self) -> Request:
        """The next request: its kind drawn by the ratios (always the same for one kind)."""
        if len(self.kinds) == 1:
            kind = self.kinds[0]
        else:
            kind = self.rng.choices(self.kinds, cum_weights=self.cum_weights)[0]
        return self.request(kind)

    def request(self, kind: str) -> Request:
        """A request of ``kind`` for a player drawn uniformly from 1..players."""
        if kind == "top":
            return Request(kind, "GET", self.top_url)
        if kind == "board-top":
            return Request(kind, "GET", self.board_top_url)
        if kind == "board-lookup":
            ids = [self.rng.randint(1, self.players) for _ in range(LOOKUP_PLAYERS)]
            friends = json.dumps({"user_ids": ids}).encode()
            return Request(kind, "POST", f"{self.board}/lookup", friends)
        user_id = self.rng.randint(1, self.players)
        if kind == "board-player":
            return Request(kind, "GET", f"{self.board}/players/{user_id}")
        if kind == "board-around":
            return Request(kind, "GET", f"{self.board}/around/{user_id}?limit={BOARD_AROUND_LIMIT}")
        if kind == "rank":
            return Request(kind, "GET", f"{self.base}/rank/{user_id}")
        if kind == "around":
            return Request(kind, "GET", f"{self.base}/around/{user_id}?n={AROUND_N}")
        if kind != "submit":
            raise ValueError(f"unknown request kind {kind!r}")
        body = SubmitRequest(
            user_id=user_id,
            score=self.rng.randint(SCORE_MIN, SCORE_MAX),
            game_mode=self.rng.choice(self.modes),
            session_id=f"lg-{self.run_id}-{next(self.submissions)}",
        )
        return Request(kind, "POST", f"{self.base}/submit", body.model_dump_json().encode())
