"""The boards phase of ``make bench``: the five-board set (``global``, its mode's board, a daily
best, a weekly sum and a monthly best: five boards per session) beside the same run's figures
with the built-in boards alone (two per session).

- submit at its maximum (closed loop) with two boards, then with five, ``repeats`` rounds each;
- the write-behind drain of a backlog made with five boards per session;
- the board reads (``/api/boards/global/...``: top, a player, around, a lookup of 20) on the
  million-member global board at ``TARGET_RATE``;
- a walk by cursor: the cost of a page at the top of the board and near its end;
- Redis bytes per member of each of the five boards.

It runs last: once defined, the boards count on every later submission.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from loadgen.bench import measure
from loadgen.bench.stack import Service, Stack
from ranker.api.auth import new_key
from ranker.definitions import read_boards
from ranker.models import Limits
from ranker.pages import encode_cursor
from ranker.placements import place
from ranker.settings import Settings

#: The three boards the set defines (tests/fixtures/five_boards.toml is the same set).
FIVE_BOARDS = """
[[board]]
id = "daily-best"
operator = "best"
reset = "daily"
retain_periods = 7

[[board]]
id = "weekly-sum"
operator = "sum"
reset = "weekly"
retain_periods = 4

[[board]]
id = "monthly-best"
operator = "best"
reset = "monthly"
retain_periods = 3
"""
READ_KINDS = ("board-top", "board-player", "board-around", "board-lookup")
#: Pages of 100 timed at each end of the board.
WALKED_PAGES = 20
PAGE = 100

Load = Callable[[Service, str, int | None], dict[str, Any]]


def boards_phase(
    stack: Stack,
    settings: Settings,
    repeats: int,
    load: Load,
    drain: Callable[[], dict[str, Any]],
    phase: Callable[[str], None],
    target_rate: int,
) -> dict[str, Any]:
    """Every figure of the phase (``load(service, workload, rate)`` runs one measured load,
    ``rate`` None for the closed loop; ``drain`` one drain round)."""
    admin = new_key()
    service = Service.ranker(stack, RANKER_ADMIN_API_KEYS=admin)
    figures: dict[str, Any] = {"submit_two": [], "submit_five": []}
    try:
        for n in range(repeats):
            phase(f"boards: submit at its maximum with two boards, round {n + 1}")
            figures["submit_two"].append(load(service, "submit", None))
        define(service.url, admin, settings)
        for n in range(repeats):
            phase(f"boards: submit at its maximum with five boards, round {n + 1}")
            figures["submit_five"].append(load(service, "submit", None))
        for kind in READ_KINDS:
            runs = []
            for n in range(repeats):
                phase(f"boards: {kind} at {target_rate} req/s, round {n + 1}")
                runs.append(load(service, kind, target_rate))
            figures[kind] = runs
        phase("boards: a walk by cursor, at the top and near the end")
        figures["walk"] = asyncio.run(walk(service.url))
    finally:
        service.stop()
    phase("boards: write-behind drain with five boards per session")
    figures["drain"] = [drain() for _ in range(repeats)]
    figures["memory"] = asyncio.run(memory(settings))
    return figures


def define(url: str, admin: str, settings: Settings) -> None:
    """Create the three boards of the set through the API (an admin key)."""
    for board in read_boards(FIVE_BOARDS, Limits.from_settings(settings)):
        body = board.model_dump(mode="json")
        request = urllib.request.Request(
            f"{url}/api/boards/{board.id}",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 201:
                raise RuntimeError(f"board {board.id}: {response.status}")


async def walk(url: str) -> dict[str, Any]:
    """Milliseconds per page of 100 following the cursor from the top, and from a cursor near
    the end of the board (the same request; only its offset differs)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        first = (await http.get("/api/boards/global/top", params={"limit": PAGE})).json()
        members = first["members"]

        async def pages(cursor: str | None) -> list[float]:
            took = []
            for _ in range(WALKED_PAGES):
                params: dict[str, Any] = {"limit": PAGE, **({"cursor": cursor} if cursor else {})}
                started = time.perf_counter()
                page = (await http.get("/api/boards/global/top", params=params)).json()
                took.append((time.perf_counter() - started) * 1000)
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            return took

        top = await pages(None)
        near_end = max(0, members - PAGE * (WALKED_PAGES + 1))
        end = await pages(encode_cursor("global", first["period"], near_end))
    return {
        "members": members,
        "top_ms": statistics.median(top),
        "end_ms": statistics.median(end),
        "end_offset": near_end,
    }


async def memory(settings: Settings) -> dict[str, Any]:
    """Bytes per member of the current period of each of the five boards (MEMORY USAGE)."""
    boards = read_boards(FIVE_BOARDS, Limits.from_settings(settings))
    slots = ["global", f"mode:{settings.default_game_mode}"]
    slots += [p.slot for p in place(boards, datetime.now(UTC))]
    return await measure.board_memory(settings, slots)
