"""The measurements of ``make bench`` that are not HTTP load: the rebuild's floor, Redis memory,
the naive design's rank lookup, the write-behind drain and the worker's lag."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from redis.asyncio import Redis

from persistence import repository
from persistence.bulkload import bulk_loader
from persistence.stream import group_info, lag_s, unpersisted
from ranker.boards import GLOBAL
from ranker.definitions import builtin_boards
from ranker.keys import Keys
from ranker.models import SubmitRequest
from ranker.periods import ALL
from ranker.ranking import Ranking
from ranker.settings import Settings
from sql import query


async def settle(settings: Settings) -> float:
    """VACUUM ANALYZE and CHECKPOINT after the seed, so that neither autovacuum nor a checkpoint
    of the bulk load runs during a measurement; returns the seconds it took."""
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True
    ) as conn:
        await conn.execute(query("vacuum_analyze_tables"))
        await conn.execute(query("checkpoint"))
    return time.perf_counter() - started


async def rebuild_floor(settings: Settings) -> dict[str, float]:
    """The two halves of a rebuild, each alone and each done the fastest way we know: reading
    every board's totals from PostgreSQL (server-side cursor, as the rebuild), and loading the
    same members into scratch keys (pipelined hiredis-packed ZADDs, as the rebuild)."""
    boards: dict[str, list[tuple[int, int]]] = {}
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        for board in builtin_boards(settings.game_modes):
            rows: list[tuple[int, int]] = []
            async for batch in repository.iter_board_scores(
                conn, board.id, ALL, settings.rebuild_batch_size
            ):
                rows.extend(batch)
            boards[board.id] = rows
    read_s = time.perf_counter() - started
    redis = Redis.from_url(settings.redis_url)
    scratch = [f"bench:{{scratch}}:{board}" for board in boards]
    try:
        started = time.perf_counter()
        async with bulk_loader(redis, scratch[0]) as loader:
            for key, rows in zip(scratch, boards.values(), strict=True):
                for first in range(0, len(rows), settings.rebuild_batch_size):
                    await loader.zadd(key, rows[first : first + settings.rebuild_batch_size])
        load_s = time.perf_counter() - started
    finally:
        await redis.unlink(*scratch)
        await redis.aclose()
    members = sum(len(rows) for rows in boards.values())
    return {"read_s": read_s, "load_s": load_s, "floor_s": read_s + load_s, "members": members}


async def memory(settings: Settings) -> dict[str, Any]:
    """Bytes per member of each built-in board, and the server's total."""
    boards = await board_memory(settings, settings.boards)
    redis = Redis.from_url(settings.redis_url)
    try:
        info = await redis.info("memory")
    finally:
        await redis.aclose()
    return {"boards": boards, "used_memory": info["used_memory"]}


async def board_memory(settings: Settings, slots: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Members, bytes (MEMORY USAGE, exact) and bytes per member of each board slot."""
    redis = Redis.from_url(settings.redis_url)
    keys = Keys(settings.namespace)
    found = {}
    try:
        for slot in slots:
            members = await redis.zcard(keys.board(slot))
            used = await redis.memory_usage(keys.board(slot), samples=0) or 0
            found[slot] = {
                "members": members,
                "bytes": used,
                "bytes_per_member": used / members if members else 0.0,
            }
    finally:
        await redis.aclose()
    return found


async def naive_rank(settings: Settings, players: int, duration_s: float) -> dict[str, float]:
    """Rank lookups as the original service made them, back to back on one connection, for at
    least ``duration_s`` and at least three lookups."""
    rng = random.Random(7)
    took: list[float] = []
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        while len(took) < 3 or time.perf_counter() - started < duration_s:
            params = {"board": GLOBAL, "user_id": rng.randint(1, players)}
            before = time.perf_counter()
            await (await conn.execute(query("select_rank_by_window"), params)).fetchall()
            took.append(time.perf_counter() - before)
    return {
        "lookups": len(took),
        "rate": len(took) / sum(took),
        "p50_ms": statistics.median(took) * 1000,
        "max_ms": max(took) * 1000,
    }


async def make_backlog(settings: Settings, events: int, players: int) -> float:
    """Accept ``events`` submissions straight through the submit script (no worker running),
    as fast as one process can; returns the seconds it took."""
    redis = Redis.from_url(settings.redis_url, max_connections=64)
    ranking = Ranking(redis, settings)
    rng = random.Random(11)
    started = time.perf_counter()

    async def sender(offset: int) -> None:
        for _ in range(offset, events, 50):
            await ranking.submit(
                SubmitRequest(
                    user_id=rng.randint(1, players),
                    score=rng.randint(1, 10_000),
                    game_mode=rng.choice(settings.game_modes),
                )
            )

    try:
        await asyncio.gather(*(sender(offset) for offset in range(50)))
    finally:
        await redis.aclose()
    return time.perf_counter() - started


async def time_drain(
    settings: Settings,
    since: float,
    timeout_s: float,
    on_begin: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Poll the backlog until it is empty. The rate counts from the first sample that shows the
    worker reading (its group's cursor moved: start-up excluded, every batch's work included),
    or from ``since`` (a ``perf_counter`` time: when the worker was started) when the backlog
    was gone before a sample saw the cursor move. ``on_begin`` is called at that first sample
    (not at all in the second case), so that what it measures covers the same span."""
    redis = Redis.from_url(settings.redis_url)
    keys = Keys(settings.namespace)
    try:
        start_count = await unpersisted(redis, keys)
        cursor = await _delivered_cursor(redis, keys)
        began = since
        deadline = time.monotonic() + timeout_s
        while (left := await unpersisted(redis, keys)) > 0:
            if cursor is not None and await _delivered_cursor(redis, keys) != cursor:
                began, cursor = time.perf_counter(), None
                if on_begin is not None:
                    on_begin()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{left} events left after {timeout_s} s")
            await asyncio.sleep(0.01)
        end = time.perf_counter()
    finally:
        await redis.aclose()
    return {"events": start_count, "rate": start_count / (end - began)}


async def _delivered_cursor(redis: Redis, keys: Keys) -> object:
    """The worker group's last-delivered id (``b"none"`` before the group exists)."""
    group = await group_info(redis, keys)
    return b"none" if group is None else group.get("last-delivered-id")


async def sample_lag(settings: Settings, stop: asyncio.Event) -> list[tuple[float, float]]:
    """(elapsed s, worker lag s) every 100 ms until ``stop`` is set."""
    redis = Redis.from_url(settings.redis_url)
    keys = Keys(settings.namespace)
    samples: list[tuple[float, float]] = []
    started = time.perf_counter()
    try:
        while not stop.is_set():
            samples.append((time.perf_counter() - started, await lag_s(redis, keys)))
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    return samples
