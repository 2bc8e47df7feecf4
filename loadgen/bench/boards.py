"""The boards phase of ``make bench``: the five-board set (``global``, its mode's board, a daily
best, a weekly sum and a monthly best: five boards per session) beside the same run's figures
with the built-in boards alone (two per session).

- submit at its maximum (closed loop) with two boards, then with five, ``repeats`` rounds each,
  the five-board rounds alternating with the submit floor app's (``loadgen.bench.floor``: the
  same Redis work in one script, on copies of the boards under ``FLOOR_PREFIX``, dropped after);
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
from redis import Redis

from loadgen.bench import measure
from loadgen.bench.floor import SubmitKeys
from loadgen.bench.stack import Service, Stack
from ranker.api.auth import new_key
from ranker.boards import GLOBAL
from ranker.definitions import builtin_boards, read_boards
from ranker.keys import Keys
from ranker.models import Limits
from ranker.pages import encode_cursor
from ranker.placements import place, tokens_text
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
#: The floor app's keys: a throwaway prefix no key of ranker's namespace (``ranker:{<ns>}:``)
#: starts with, so that its stream entries never reach ranker's worker, drain or verify.
FLOOR_PREFIX = "{floor}"
#: The ops of the boards a session counts on, in the order ``floor_submit.lua`` applies them.
FLOOR_OPS = ["s", "s", "h", "s", "h"]

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
    figures: dict[str, Any] = {"submit_two": []}
    try:
        for n in range(repeats):
            phase(f"boards: submit at its maximum with two boards, round {n + 1}")
            figures["submit_two"].append(load(service, "submit", None))
        define(service.url, admin, settings)
        figures |= five_against_floor(stack, settings, service, repeats, load, phase)
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


def five_against_floor(
    stack: Stack,
    settings: Settings,
    service: Service,
    repeats: int,
    load: Load,
    phase: Callable[[str], None],
) -> dict[str, Any]:
    """``repeats`` rounds of submit at its maximum on ranker with five boards, each followed by
    one on the submit floor app (the same connections and duration), so that both sides of the
    ratio see the same moments of the machine; the floor's keys are dropped after."""
    keys = floor_keys(settings, datetime.now(UTC))
    copy_boards(settings, keys)
    figures: dict[str, Any] = {"submit_five": [], "submit_floor": []}
    try:
        floor = Service.floor(stack, keys["global_board"], json.dumps(keys))
        try:
            for n in range(repeats):
                phase(f"boards: submit at its maximum with five boards, round {n + 1}")
                figures["submit_five"].append(load(service, "submit", None))
                phase(f"boards: the submit floor app at its maximum, round {n + 1}")
                figures["submit_floor"].append(load(floor, "submit", None))
        finally:
            floor.stop()
    finally:
        figures["floor_keys_dropped"] = drop_floor_keys(settings.redis_url)
    return figures


def floor_keys(settings: Settings, instant: datetime) -> SubmitKeys:
    """The floor app's keys for submissions at ``instant``: copies of the five boards' slots
    under ``FLOOR_PREFIX``, its own stream and idempotency keys, and per game mode the
    placements field ranker writes."""
    definitions = read_boards(FIVE_BOARDS, Limits.from_settings(settings))
    boards: dict[str, list[str]] = {}
    placements: dict[str, str] = {}
    for mode in settings.game_modes:
        counting = [b for b in builtin_boards(settings.game_modes) if b.counts(mode)]
        placed = place([*counting, *definitions], instant)
        if [p.op for p in placed] != FLOOR_OPS:
            raise RuntimeError(f"floor_submit.lua applies {FLOOR_OPS}, the set has {placed}")
        boards[mode] = [_floor_board(p.slot) for p in placed[1:]]  # global is its own key
        placements[mode] = tokens_text(placed)
    return SubmitKeys(
        stream=f"{FLOOR_PREFIX}:events",
        idempotency_prefix=f"{FLOOR_PREFIX}:idem:",
        pages_version=f"{FLOOR_PREFIX}:pages:version",
        ttl_ms=settings.idempotency_ttl_s * 1000,
        default_mode=settings.default_game_mode,
        global_board=_floor_board(GLOBAL),
        boards=boards,
        placements=placements,
    )


def _floor_board(slot: str) -> str:
    return f"{FLOOR_PREFIX}:board:{slot}"


def copy_boards(settings: Settings, keys: SubmitKeys) -> None:
    """Copy each of ranker's boards the floor app writes to its key (COPY: the same members
    and encoding), so that both update sets of the same size."""
    namespace = Keys(settings.namespace)
    prefix = _floor_board("")
    slots = {key.removeprefix(prefix) for mode in keys["boards"].values() for key in mode}
    with Redis.from_url(settings.redis_url) as redis:
        for slot in {GLOBAL, *slots}:
            redis.copy(namespace.board(slot), _floor_board(slot), replace=True)


def drop_floor_keys(redis_url: str) -> int:
    """Unlink every key under ``FLOOR_PREFIX`` (boards, stream, idempotency keys); returns how
    many there were."""
    dropped = 0
    with Redis.from_url(redis_url) as redis:
        batch: list[bytes] = []
        for key in redis.scan_iter(match=f"{FLOOR_PREFIX}:*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                dropped += int(redis.unlink(*batch))
                batch = []
        if batch:
            dropped += int(redis.unlink(*batch))
    return dropped


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
