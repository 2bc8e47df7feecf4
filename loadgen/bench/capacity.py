"""Capacity figures and model: ``python -m loadgen.bench.capacity`` (``make capacity``).

On a fresh local stack (Redis with AOF, as ``compose.yaml`` runs it; PostgreSQL at
``wal_level=replica``, as a primary with a standby runs it) with the five-board set of
``make bench`` defined, through ranker's own code:

1. ``--players`` players' first sessions (a name each): Redis bytes per board member (every
   board key, past the listpack threshold), per name and per stream entry; then one
   ``ranker worker`` drains them: PostgreSQL CPU and bytes of a player's first sessions;
2. ``--sessions`` more sessions of those players: Redis CPU per submission, then bytes per
   idempotency key and per stream entry; their drain: PostgreSQL CPU and bytes per session,
   and the Redis CPU of the worker's reads and acks;
3. ``--reads`` rank, top and around reads each: Redis CPU per read;
4. ``ranker serve`` at ``--http-rate`` for each route: API CPU (and Redis CPU) per request;
5. ``ranker rebuild`` after a FLUSHALL: how fast a lost Redis is reloaded, members and keys.

Writes ``benchmarks/capacity.json`` and renders ``CAPACITY.md`` (the model of
``loadgen.bench.capacity_model`` from those figures); ``--render-only`` renders again from the
JSON file without measuring (after a change of the model's assumptions).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from redis.asyncio import Redis

from loadgen.bench import boards, capacity_document, capacity_model, capacity_report
from loadgen.bench import capacity_measure as cm
from loadgen.bench.run import machine, phase
from loadgen.bench.stack import BENCH_POSTGRES, Service, Stack, ranker_command
from loadgen.config import LoadConfig
from loadgen.runner import run_load
from ranker.api.auth import new_key
from ranker.dev import servers as devservers
from ranker.dev.stack import ensure_database
from ranker.keys import Keys
from ranker.ranking import Ranking
from ranker.settings import Settings

#: The benchmark's PostgreSQL, but writing the WAL a standby needs (``minimal`` logs less).
CAPACITY_POSTGRES = {**BENCH_POSTGRES, "wal_level": "replica", "max_wal_senders": 4}
READ_KINDS = ("rank", "top", "around")
HTTP_WORKLOADS = ("rank", "top", "around", "submit")
#: Seconds of Redis idle (the API process up, nothing sent) whose CPU is every span's baseline.
IDLE_S = 3.0


@dataclasses.dataclass(frozen=True)
class CapacityConfig:
    """How much is measured (the defaults take about three minutes on two cores)."""

    players: int = 200_000
    sessions: int = 200_000
    reads: int = 30_000
    http_rate: int = 1_000
    http_s: float = 5.0
    warmup_s: float = 1.0


@contextlib.contextmanager
def capacity_stack() -> Iterator[Stack]:
    """Throwaway Redis (AOF in a temporary directory) and PostgreSQL, stopped on exit."""
    with (
        tempfile.TemporaryDirectory(prefix="ranker-capacity-") as data,
        devservers.redis_server(Path(data), appendonly=True) as redis_server,
        devservers.postgres_server(server_settings=CAPACITY_POSTGRES) as postgres,
    ):
        yield Stack(redis_server.url, ensure_database(postgres.url, "ranker"))


def with_ranking(settings: Settings, work: Callable[[Ranking], Any]) -> Any:
    """Run ``work(ranking)`` on a client of its own, in an event loop of its own."""

    async def go() -> Any:
        client = Redis.from_url(settings.redis_url, max_connections=cm.IN_FLIGHT)
        try:
            return await work(Ranking(client, settings))
        finally:
            await client.aclose()

    return asyncio.run(go())


def writes_phase(
    stack: Stack, settings: Settings, config: CapacityConfig, meter: cm.RedisMeter
) -> dict[str, Any]:
    """Steps 1 and 2 of the module's docstring."""
    keys = Keys(settings.namespace)
    rng = random.Random(14)
    phase(f"capacity: {config.players:,} players' first sessions")
    stored = asyncio.run(cm.storage(settings))
    before = meter.used_memory()
    firsts = cm.first_sessions(config.players, settings.game_modes, rng)
    with_ranking(settings, lambda ranking: cm.submit_all(ranking, firsts))
    first: dict[str, Any] = {
        "used_memory_per_player": (meter.used_memory() - before) / config.players,
        "redis": cm.redis_figures(stack.redis_url, keys),
    }
    phase("capacity: their drain")
    first["drain"] = cm.drain(stack, settings, meter)
    after = asyncio.run(cm.storage(settings))
    first["postgres"] = cm.grown(stored, after, first["drain"]["events"])

    phase(f"capacity: {config.sessions:,} more sessions of those players")
    repeats = cm.repeat_sessions(config.sessions, config.players, settings.game_modes, rng)
    sample = next(repeats)
    before = meter.used_memory()
    meter.start()
    started = time.perf_counter()
    with_ranking(
        settings, lambda ranking: cm.submit_all(ranking, itertools.chain([sample], repeats))
    )
    repeat: dict[str, Any] = {"rate": config.sessions / (time.perf_counter() - started)}
    repeat["redis_cpu"] = meter.per_op(config.sessions)
    with_stream = meter.used_memory()
    repeat["stream"] = cm.redis_figures(stack.redis_url, keys)["stream"]
    repeat["idempotency_key"] = cm.idempotency_sample(stack.redis_url, keys, sample.session_id)
    phase("capacity: their drain")
    repeat["drain"] = cm.drain(stack, settings, meter)
    persisted = meter.used_memory()
    # The drain deleted the stream's entries (XDEL after the commit): what stays is the keys.
    repeat["used_memory_per_idempotency_key"] = (persisted - before) / config.sessions
    repeat["used_memory_per_stream_entry"] = (with_stream - persisted) / config.sessions
    stored = asyncio.run(cm.storage(settings))
    repeat["postgres"] = cm.grown(after, stored, repeat["drain"]["events"])
    return {"first": first, "repeat": repeat}


def reads_phase(settings: Settings, config: CapacityConfig, meter: cm.RedisMeter) -> dict[str, Any]:
    """Step 3: each read kind ``config.reads`` times, Redis's CPU per read."""
    rng = random.Random(15)
    found: dict[str, Any] = {}
    for kind in READ_KINDS:
        phase(f"capacity: {config.reads:,} {kind} reads")

        async def reads(ranking: Ranking, kind: str = kind) -> int:
            return await cm.in_flight(
                cm.read_calls(ranking, kind, config.reads, config.players, rng)
            )

        meter.start()
        started = time.perf_counter()
        done = with_ranking(settings, reads)
        found[kind] = {"rate": done / (time.perf_counter() - started), **meter.per_op(done)}
    return found


def http_phase(service: Service, config: CapacityConfig, meter: cm.RedisMeter) -> dict[str, Any]:
    """Step 4: each route at ``http_rate`` (open loop) after a warm-up, with the API process's
    CPU time and Redis's per request."""
    found: dict[str, Any] = {}
    for workload in HTTP_WORKLOADS:
        phase(f"capacity: HTTP {workload} at {config.http_rate:,} req/s")
        load = LoadConfig(
            url=service.url,
            workload=workload,
            rate=config.http_rate,
            connections=32,
            duration_s=config.http_s,
            warmup_s=0.0,
            players=config.players,
            limit=cm.TOP_LIMIT,
            seed=len(found) + 1,
            api_key=service.api_key,
        )
        asyncio.run(run_load(dataclasses.replace(load, duration_s=config.warmup_s)))
        meter.start()
        cpu = service.cpu_s()
        result = asyncio.run(run_load(load)).to_dict()
        cpu = service.cpu_s() - cpu
        count = max(int(result["count"]), 1)
        found[workload] = {
            "requests": result["count"],
            "achieved_rate": result["achieved_rate"],
            "p99_ms": result["latency_ms"]["p99"],
            "errors": result["errors"],
            "api_cpu_us_per_request": cpu * 1e6 / count,
            "redis": meter.per_op(count),
        }
    return found


def recovery(stack: Stack, meter: cm.RedisMeter) -> dict[str, Any]:
    """Step 5: Redis loses everything (FLUSHALL) and ``ranker rebuild`` reloads it from
    PostgreSQL: boards, names, definitions and the idempotency keys of the window. Twice:
    first with a window of one second, which restores no key (the members' time alone), then
    as deployed (the keys' time is the difference)."""
    meter.client.flushall()
    members: dict[str, Any] = ranker_command(
        stack, "rebuild", "--json", RANKER_IDEMPOTENCY_TTL_S="1"
    )
    meter.client.flushall()
    found: dict[str, Any] = ranker_command(stack, "rebuild", "--json")
    found["members_only"] = members
    found["used_memory_after"] = meter.used_memory()
    return found


def measure_all(config: CapacityConfig) -> dict[str, Any]:
    """Every step on a fresh stack; returns the figures."""
    results: dict[str, Any] = {"config": dataclasses.asdict(config), "machine": machine()}
    results["machine"]["load_average_before"] = list(psutil.getloadavg())
    with capacity_stack() as stack:
        # Backlogs as large as the run makes: none may be refused.
        backlog = 2 * (config.players + config.sessions) + 100_000
        settings = Settings(
            redis_url=stack.redis_url,
            database_url=stack.database_url,
            max_backlog=backlog,
            write_rate_limit=stack.env()["RANKER_WRITE_RATE_LIMIT"],  # charged, never refused
        )
        ranker_command(stack, "migrate")
        ranker_command(stack, "rebuild", "--json")  # of nothing: the namespace is loaded
        admin = new_key()
        # Copies of top pages off: under a real write rate every submission changes the
        # pages' version, so a copy is rarely current; the model wants a page's full cost.
        service = Service.ranker(
            stack,
            "--no-worker",
            RANKER_ADMIN_API_KEYS=admin,
            RANKER_TOP_CACHE="false",
            RANKER_MAX_BACKLOG=str(backlog),
        )
        meter = cm.RedisMeter(stack.redis_url)
        try:
            boards.define(service.url, admin, settings)
            phase("capacity: Redis idle, for its baseline")
            results["redis_idle_cpu_per_s"] = meter.measure_idle(IDLE_S)
            results["writes"] = writes_phase(stack, settings, config, meter)
            results["reads"] = reads_phase(settings, config, meter)
            results["http"] = http_phase(service, config, meter)
        finally:
            service.stop()
        phase("capacity: Redis wiped, then rebuilt from PostgreSQL")
        try:
            results["rebuild"] = recovery(stack, meter)
        finally:
            meter.close()
    results["machine"]["load_average_after"] = list(psutil.getloadavg())
    return results


def main(argv: list[str] | None = None) -> int:
    """Measure (unless ``--render-only``), write the figures and CAPACITY.md, print them."""
    parser = argparse.ArgumentParser(prog="python -m loadgen.bench.capacity", description=__doc__)
    defaults = CapacityConfig()
    parser.add_argument("--players", type=int, default=defaults.players)
    parser.add_argument("--sessions", type=int, default=defaults.sessions)
    parser.add_argument("--reads", type=int, default=defaults.reads, help="per read kind")
    parser.add_argument("--http-rate", type=int, default=defaults.http_rate, help="req/s")
    parser.add_argument("--http-seconds", type=float, default=defaults.http_s)
    parser.add_argument("--warmup", type=float, default=defaults.warmup_s)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/capacity.json"))
    parser.add_argument("--markdown", type=Path, default=Path("CAPACITY.md"))
    parser.add_argument(
        "--bench-results",
        type=Path,
        default=Path("benchmarks/results.json"),
        help="make bench's figures, cited beside these (cost per request)",
    )
    parser.add_argument("--render-only", action="store_true", help="from --out, no measuring")
    args = parser.parse_args(argv)
    if args.render_only:
        results = json.loads(args.out.read_text())
    else:
        config = CapacityConfig(
            args.players, args.sessions, args.reads, args.http_rate, args.http_seconds, args.warmup
        )
        results = measure_all(config)
    results["bench"] = capacity_report.bench_figures(args.bench_results, results.get("bench"))
    figures = capacity_model.Figures.from_results(results)
    steps = capacity_model.plan_all(figures)
    results["figures"] = dataclasses.asdict(figures)
    results["model"] = [capacity_model.as_dict(step) for step in steps]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    args.markdown.write_text(capacity_document.render(results, figures, steps))
    for line in capacity_document.printed(results, figures, steps):
        print(line)
    print(f"wrote {args.out} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
