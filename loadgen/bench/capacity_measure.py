"""The measurements of ``make capacity`` (``loadgen.bench.capacity`` runs them in order): Redis
bytes per board member, idempotency key, stream entry and name; Redis CPU per submission and per
read, from ``INFO cpu`` with ``INFO commandstats`` beside it; the write-behind drain's CPU
(worker, PostgreSQL, Redis) per event; PostgreSQL's bytes per row and WAL per session.

Every submission and read goes through ranker's own code (``Ranking``, ``submit.lua``, the read
scripts, ``ranker worker``), so the figures are of what ranker stores and runs, not of a model
of it.
"""

from __future__ import annotations

import asyncio
import functools
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

import psutil
import psycopg
import redis

from loadgen.bench import measure
from loadgen.bench.stack import Stack, postmaster, tree_cpu_s
from ranker import logs
from ranker.api.ratelimit import RateLimits
from ranker.keys import Keys
from ranker.models import SubmitRequest
from ranker.ranking import Ranking
from ranker.settings import Settings
from sql import query

#: Calls in flight from the measuring process: enough that the read scripts go to Redis in
#: batches (``ranker.coalesce``), as they do in an API process under load.
IN_FLIGHT = 64
#: A full page: the largest ``limit`` of top at the default ``RANKER_TOP_LIMIT_MAX``.
TOP_LIMIT = 100
#: Players above and below in an around read (the load generator's ``AROUND_N``).
AROUND_SIDE = 5
SCORE_MAX = 10_000
#: The API key id (12 hex digits, as ``ranker.api.auth`` names a key) the direct submissions
#: are charged to: one budget key, as one game server's.
CALLER = "ca9ac17e0014"
#: Commands of the meter itself, left out of the command statistics it reports.
OWN_COMMANDS = ("info", "config")


class RedisMeter:
    """Redis's CPU time (``INFO cpu``: the whole process, and its main thread alone, which is
    the one core a primary's commands run on) and ``INFO commandstats`` over a span, per
    operation. A synchronous client: it is read only at the edges of a span."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self._start: dict[str, float] = {}
        self._started = 0.0
        #: Main-thread CPU seconds per second of Redis with nothing measured running (its cron,
        #: the idle API process's background reads), taken off every span's figure.
        self.idle_per_s = 0.0

    def cpu_s(self) -> dict[str, float]:
        info: dict[str, Any] = self.client.info("cpu")
        return {
            "process": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "main_thread": float(info["used_cpu_user_main_thread"])
            + float(info["used_cpu_sys_main_thread"]),
        }

    def measure_idle(self, seconds: float) -> float:
        """Set (and return) ``idle_per_s`` from ``seconds`` of waiting."""
        before = self.cpu_s()["main_thread"]
        time.sleep(seconds)
        self.idle_per_s = (self.cpu_s()["main_thread"] - before) / seconds
        return self.idle_per_s

    def start(self) -> None:
        """Begin a span: command statistics reset, CPU time read."""
        self.client.config_resetstat()
        self._start = self.cpu_s()
        self._started = time.perf_counter()

    def per_op(self, ops: int) -> dict[str, Any]:
        """The span so far, per operation: CPU microseconds (process and main thread) and,
        for each command Redis ran, calls per operation and microseconds per call (a script's
        own commands are counted under their names too, so they do not add up)."""
        now = self.cpu_s()
        idle_s = self.idle_per_s * (time.perf_counter() - self._started)
        stats: dict[str, Any] = self.client.info("commandstats")
        commands = {
            name.removeprefix("cmdstat_"): {
                "calls_per_op": stat["calls"] / ops,
                "usec_per_call": float(stat["usec_per_call"]),
            }
            for name, stat in stats.items()
            if name.removeprefix("cmdstat_") not in OWN_COMMANDS
        }
        return {
            "ops": ops,
            "cpu_us_per_op": (now["process"] - self._start["process"] - idle_s) * 1e6 / ops,
            "main_thread_us_per_op": (now["main_thread"] - self._start["main_thread"] - idle_s)
            * 1e6
            / ops,
            "idle_us_per_op": idle_s * 1e6 / ops,
            "commands": commands,
        }

    def used_memory(self) -> int:
        info: dict[str, Any] = self.client.info("memory")
        return int(info["used_memory"])

    def close(self) -> None:
        self.client.close()


def mode_of(user_id: int, modes: Sequence[str]) -> str:
    """Each player plays one mode, always: a returning player's sessions add no member."""
    return modes[user_id % len(modes)]


def first_sessions(players: int, modes: Sequence[str], rng: random.Random) -> Iterator[Any]:
    """Players ``1..players``' first sessions, each with a UUID session id (what the README
    recommends) and a display name (``player_<id>``: 8 to 16 characters)."""
    for user_id in range(1, players + 1):
        yield SubmitRequest(
            user_id=user_id,
            score=rng.randint(1, SCORE_MAX),
            game_mode=mode_of(user_id, modes),
            session_id=str(uuid.uuid4()),
            username=f"player_{user_id}",
        )


def repeat_sessions(
    count: int, players: int, modes: Sequence[str], rng: random.Random
) -> Iterator[Any]:
    """``count`` more sessions of players already on every board they count on."""
    for _ in range(count):
        user_id = rng.randint(1, players)
        yield SubmitRequest(
            user_id=user_id,
            score=rng.randint(1, SCORE_MAX),
            game_mode=mode_of(user_id, modes),
            session_id=str(uuid.uuid4()),
        )


async def in_flight(calls: Iterable[Callable[[], Awaitable[object]]]) -> int:
    """Await every call, ``IN_FLIGHT`` at a time; returns how many there were."""
    source = iter(calls)
    done = 0

    async def lane() -> None:
        nonlocal done
        for call in source:  # one shared iterator: each call is taken by one lane
            await call()
            done += 1

    await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
    return done


async def submit_all(ranking: Ranking, requests: Iterable[Any]) -> int:
    """Each request through ``Ranking.submit`` as the API makes it: charged to an API key's
    write budget (in the script, as ``routes.submit`` does) and with a fresh request id (the
    stream entry keeps it, field ``q``); returns how many."""
    charge = RateLimits(ranking.redis, ranking.settings).charge("write", CALLER)

    def call(request: Any) -> Callable[[], Awaitable[object]]:
        async def submit() -> object:
            logs.request_id.set(logs.new_request_id())  # this lane's task's context only
            return await ranking.submit(request, charge)

        return submit

    return await in_flight(call(request) for request in requests)


def read_calls(
    ranking: Ranking, kind: str, count: int, players: int, rng: random.Random
) -> Iterator[Callable[[], Awaitable[object]]]:
    """``count`` reads of ``kind`` (rank, top of ``TOP_LIMIT`` or around) of random players
    of the global board, uncached (``Ranking.top`` asks for the page, not a copy)."""
    for _ in range(count):
        user_id = rng.randint(1, players)
        if kind == "rank":
            yield functools.partial(ranking.rank, user_id)
        elif kind == "top":
            yield functools.partial(ranking.top, TOP_LIMIT)
        else:
            yield functools.partial(ranking.around, user_id, AROUND_SIDE)


def redis_figures(url: str, keys: Keys) -> dict[str, Any]:
    """Exact bytes (``MEMORY USAGE ... SAMPLES 0``) and encoding of every board key, of the
    names hash and of the events stream, with their members, fields and entries."""
    client = redis.Redis.from_url(url)
    try:
        prefix = keys.board("global").removesuffix("global")
        boards: dict[str, Any] = {}
        for key in sorted(client.scan_iter(match=f"{prefix}*", count=1000)):
            members = int(client.zcard(key))
            used = int(client.memory_usage(key, samples=0) or 0)
            boards[key.decode().removeprefix(prefix)] = {
                "members": members,
                "bytes": used,
                "bytes_per_member": used / members if members else 0.0,
                "encoding": client.object("encoding", key).decode(),
            }
        found: dict[str, Any] = {"boards": boards}
        for name, key, count in (
            ("names", keys.names, client.hlen),
            ("stream", keys.events, client.xlen),
        ):
            items = int(count(key))
            used = int(client.memory_usage(key, samples=0) or 0)
            found[name] = {
                "items": items,
                "bytes": used,
                "bytes_per_item": used / items if items else 0.0,
                "encoding": client.object("encoding", key).decode(),
            }
        listpack = client.config_get("zset-max-listpack-entries")
        found["zset_max_listpack_entries"] = int(str(listpack["zset-max-listpack-entries"]))
        return found
    finally:
        client.close()


def idempotency_sample(url: str, keys: Keys, session_id: str) -> dict[str, Any]:
    """One idempotency key of ``session_id``: its name, value and TTL as ``submit.lua`` set
    them, and its ``MEMORY USAGE`` (the object alone: not the key tables' entries)."""
    client = redis.Redis.from_url(url)
    try:
        key = keys.seen(session_id)
        return {
            "key": key,
            "key_bytes": len(key.encode()),
            "value_bytes": len(client.get(key) or b""),
            "ttl_s": int(client.ttl(key)),
            "memory_usage": int(client.memory_usage(key, samples=0) or 0),
        }
    finally:
        client.close()


async def storage(settings: Settings) -> dict[str, int]:
    """PostgreSQL's tables after VACUUM ANALYZE and a CHECKPOINT (``measure.settle``): bytes
    and rows of each, and the WAL position."""
    await measure.settle(settings)
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        cursor = await conn.execute(query("select_storage_sizes"))
        row = await cursor.fetchone()
        assert row is not None and cursor.description is not None
        return {
            column.name: int(value) for column, value in zip(cursor.description, row, strict=True)
        }


def drain(stack: Stack, settings: Settings, meter: RedisMeter) -> dict[str, Any]:
    """One ``ranker worker`` process persists the backlog; returns the events, the rate and
    the CPU time per event of the worker, of every PostgreSQL process (``None`` when they are
    not this machine's) and of Redis (the worker's reads, acks and deletes), over the span the
    rate counts (``measure.time_drain``: the worker's start-up excluded)."""
    server = postmaster(stack)
    since = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "ranker", "worker"],
        env=stack.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    meters: dict[str, psutil.Process] = {"worker": psutil.Process(worker.pid)}
    if server is not None:
        meters["postgres"] = server
    start = {name: tree_cpu_s(process) for name, process in meters.items()}
    meter.start()

    def began() -> None:
        start.update({name: tree_cpu_s(process) for name, process in meters.items()})
        meter.start()

    try:
        drained = asyncio.run(measure.time_drain(settings, since, timeout_s=600, on_begin=began))
        spent = {name: tree_cpu_s(process) - start[name] for name, process in meters.items()}
        events = int(drained["events"])
        redis_cpu = meter.per_op(max(events, 1))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return {
        "events": events,
        "rate": drained["rate"],
        "worker_cpu_us_per_event": spent["worker"] * 1e6 / events if events else None,
        "postgres_cpu_us_per_event": (
            spent["postgres"] * 1e6 / events if "postgres" in spent and events else None
        ),
        "redis": redis_cpu,
    }


def grown(before: dict[str, int], after: dict[str, int], events: int) -> dict[str, Any]:
    """What a drain of ``events`` added to PostgreSQL: bytes per new row of each table (per
    event for a table that gained none: its pages' growth, if any) and WAL bytes per event."""
    wal = after["wal_bytes"] - before["wal_bytes"]
    figures: dict[str, Any] = {"wal_bytes_per_event": wal / events}
    for table in ("sessions", "board_scores", "players"):
        rows = after[table] - before[table]
        size = after[f"{table}_bytes"] - before[f"{table}_bytes"]
        figures[table] = {
            "rows": rows,
            "bytes": size,
            "bytes_per_row": size / rows if rows else None,
            "bytes_per_event": size / events,
        }
    return figures
