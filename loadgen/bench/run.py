"""The phases of ``make bench``, in order, on one fresh local stack; every figure goes into one
dict that ``report`` turns into BENCHMARKS.md, a JSON file and plots."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from loadgen.bench import boards, edge, measure, profiling, stream
from loadgen.bench.stack import (
    Service,
    Stack,
    local_stack,
    postmaster,
    ranker_command,
    tree_cpu_s,
)
from loadgen.runner import LoadConfig, run_load
from ranker.boards import GLOBAL
from ranker.keys import Keys
from ranker.settings import Settings

WORKLOADS = ("rank", "top", "submit", "mix")
#: Measured at ``TARGET_RATE`` only, for the cost per request of every route the bench drives.
COST_WORKLOADS = ("around",)
FLOOR_WORKLOADS = ("rank", "top", "around")  # the endpoints the floor app also serves
TARGET_RATE = 1_000  # the rate the latency targets (and the worker's lag) are read at
#: The workloads read at ``TARGET_RATE`` by a target or by the cost per request (a median of
#: ``repeats`` runs each).
REPEATED_AT_TARGET_RATE = ("rank", "top", "submit", "mix", "around")


@dataclass(frozen=True)
class BenchConfig:
    """How big and how long: the full run (1M players) or --quick (100k)."""

    players: int
    sessions: int
    rates: tuple[int, ...]
    duration_s: float
    warmup_s: float
    connections: int  # closed loop: maximum throughput
    open_connections: int  # open loop: the most connections the generator may open
    drain_events: int
    naive_s: float
    repeats: int = 3  # runs of each figure a target reads; the median is reported
    stream_steps: tuple[int, ...] = stream.STEPS  # live streams per step of the stream phase


def run(config: BenchConfig) -> dict[str, Any]:
    """Every phase, timed, on a fresh stack; returns all figures."""
    results: dict[str, Any] = {"config": asdict(config), "machine": machine()}
    with local_stack() as stack:
        settings = Settings(redis_url=stack.redis_url, database_url=stack.database_url)
        ranker_command(stack, "migrate")
        phase("seed")
        started = time.perf_counter()
        results["seed"] = ranker_command(
            stack,
            "seed",
            "--players",
            str(config.players),
            "--sessions",
            str(config.sessions),
            "--json",
        )
        results["seed"]["total_s"] = time.perf_counter() - started
        phase("settle: VACUUM ANALYZE, CHECKPOINT")
        results["settle_s"] = asyncio.run(measure.settle(settings))
        phase("rebuild and its floor")
        results["rebuild"] = ranker_command(stack, "rebuild", "--json")
        results["rebuild_floor"] = asyncio.run(measure.rebuild_floor(settings))
        results["memory"] = asyncio.run(measure.memory(settings))
        results["http"], results["floor"] = http_phase(stack, settings, config)
        results["profile"] = profile_figures(stack, config)
        results["edge"] = edge_figures(stack, settings, config)
        phase("naive design: RANK() OVER per lookup")
        results["naive"] = asyncio.run(measure.naive_rank(settings, config.players, config.naive_s))
        results["drain"] = drain_phase(stack, settings, config)
        phase("verify")
        results["verify"] = ranker_command(stack, "verify", "--wait-s", "120").strip()
        results["boards"] = boards.boards_phase(
            stack,
            settings,
            config.repeats,
            load=lambda service, workload, rate: load(
                service, load_config(service, workload, config, rate), config.warmup_s
            ),
            drain=lambda: drain_round(stack, settings, config),
            phase=phase,
            target_rate=TARGET_RATE,
        )
        phase("verify --deep, five boards")
        results["verify_boards"] = ranker_command(
            stack, "verify", "--wait-s", "120", "--deep"
        ).strip()
        results["stream"] = stream.stream_phase(
            stack, phase, config.stream_steps, config.duration_s, config.players
        )
    return results


def phase(name: str) -> None:
    """Say which phase runs (the full benchmark takes minutes)."""
    print(f"== {name}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis_server": redis_version,
    }


def load_config(
    service: Service, workload: str, bench: BenchConfig, rate: int | None = None
) -> LoadConfig:
    """A run of ``workload`` on ``service``: open loop at ``rate``, else closed loop (maximum)."""
    return LoadConfig(
        url=service.url,
        workload=workload,
        rate=rate,
        connections=bench.open_connections if rate else bench.connections,
        duration_s=bench.duration_s,
        warmup_s=0.0,
        players=bench.players,
        seed=rate or 1,
        api_key=service.api_key,
    )


def load(
    service: Service, config: LoadConfig, warmup_s: float, lag_of: Settings | None = None
) -> dict[str, Any]:
    """One load run after a warm-up run, with the service's CPU time per request; with
    ``lag_of``, the worker's lag is sampled every 100 ms during the run."""
    if warmup_s > 0:
        asyncio.run(run_load(_replace(config, duration_s=warmup_s)))

    async def measured() -> tuple[Any, list[tuple[float, float]]]:
        if lag_of is None:
            return await run_load(config), []
        stop = asyncio.Event()
        sampler = asyncio.create_task(measure.sample_lag(lag_of, stop))
        try:
            result = await run_load(config)
        finally:
            stop.set()
        return result, await sampler

    before = service.cpu_s()
    result, lag = asyncio.run(measured())
    spent = service.cpu_s() - before
    figures: dict[str, Any] = result.to_dict()
    figures["service_cpu_ms_per_request"] = spent * 1000 / result.count if result.count else None
    if lag_of is not None:
        lags = sorted(seconds for _, seconds in lag)
        figures["worker_lag_s"] = {
            "samples": lag,
            "p50": lags[len(lags) // 2] if lags else 0.0,
            "p99": lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else 0.0,
            "max": lags[-1] if lags else 0.0,
        }
    return figures


def _replace(config: LoadConfig, **changes: Any) -> LoadConfig:
    return LoadConfig(**(asdict(config) | {"warmup_s": 0.0} | changes))


def median_run(
    runs: list[dict[str, Any]], figure: Callable[[dict[str, Any]], float]
) -> dict[str, Any]:
    """The run whose ``figure`` is the median (the lower middle of an even count), with every
    run's figure, in the order they ran, under ``runs``."""
    chosen = dict(sorted(runs, key=figure)[(len(runs) - 1) // 2])
    chosen["runs"] = [figure(run) for run in runs]
    return chosen


def _p99(run: dict[str, Any]) -> float:
    return float(run["latency_ms"]["p99"])


def _achieved(run: dict[str, Any]) -> float:
    return float(run["achieved_rate"])


def http_phase(
    stack: Stack, settings: Settings, config: BenchConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each workload at each fixed rate (open loop), then at its maximum (closed loop), on
    one ``ranker serve --no-worker`` with one ``ranker worker`` process beside it (the
    deployment of ``compose.yaml``; the service's CPU is both processes'); the
    ``COST_WORKLOADS`` at ``TARGET_RATE`` only.

    The figures a target reads are measured ``repeats`` times and the median reported: the
    fixed-rate runs at ``TARGET_RATE``, and the maximum of each of ``FLOOR_WORKLOADS``, which
    run in rounds alternating with the floor app's, on ranker's server and on stock uvicorn
    (the same Redis, one at a time) so that both sides of each ratio see the same moment of a
    machine whose speed drifts. Returns the
    ranker's figures and the floor app's (each with the ratio of every round)."""
    service = Service.ranker_with_worker(stack)
    board = Keys(settings.namespace).board(GLOBAL)
    floor = Service.floor(stack, board)
    stock = Service.floor(stack, board, stock=True)
    figures: dict[str, Any] = {}
    floor_figures: dict[str, Any] = {}
    try:
        for workload in (*WORKLOADS, *COST_WORKLOADS):
            rates = config.rates if workload in WORKLOADS else (TARGET_RATE,)
            figures[workload] = {
                str(rate): fixed_rate(service, settings, config, workload, rate) for rate in rates
            }
            if workload in COST_WORKLOADS and workload not in FLOOR_WORKLOADS:
                continue
            if workload not in FLOOR_WORKLOADS:
                phase(f"{workload} at its maximum")
                run = load_config(service, workload, config)
                figures[workload]["max"] = median_run(
                    [load(service, run, config.warmup_s)], _achieved
                )
                continue
            ours: list[dict[str, Any]] = []
            theirs: list[dict[str, Any]] = []
            stocks: list[dict[str, Any]] = []
            sides = ((ours, service, "ranker"), (theirs, floor, "floor app"))
            for n in range(config.repeats):
                for runs, side, name in (*sides, (stocks, stock, "floor app on stock uvicorn")):
                    phase(f"{name}: {workload} at its maximum, round {n + 1}")
                    runs.append(load(side, load_config(side, workload, config), config.warmup_s))
            figures[workload]["max"] = median_run(ours, _achieved)
            floor_figures[workload] = median_run(theirs, _achieved)
            floor_figures[workload]["stock"] = median_run(stocks, _achieved)
            floor_figures[workload]["ratios"] = [
                _achieved(a) / _achieved(b) for a, b in zip(ours, theirs, strict=True)
            ]
    finally:
        stock.stop()
        floor.stop()
        service.stop()
    return figures, floor_figures


def fixed_rate(
    service: Service, settings: Settings, config: BenchConfig, workload: str, rate: int
) -> dict[str, Any]:
    """``workload`` at ``rate`` (open loop): the median run by p99 of ``repeats`` at
    ``TARGET_RATE`` (one run at other rates), with every run's service CPU per request under
    ``cpu_runs_ms``; submit at ``TARGET_RATE`` samples the worker's lag too."""
    target = rate == TARGET_RATE and workload in REPEATED_AT_TARGET_RATE
    runs = []
    for n in range(config.repeats if target else 1):
        phase(f"{workload} at {rate} req/s" + (f", run {n + 1}" if target else ""))
        lag_of = settings if (workload, rate) == ("submit", TARGET_RATE) else None
        runs.append(
            load(service, load_config(service, workload, config, rate), config.warmup_s, lag_of)
        )
    chosen = median_run(runs, _p99)
    chosen["cpu_runs_ms"] = [run["service_cpu_ms_per_request"] for run in runs]
    return chosen


def drain_round(stack: Stack, settings: Settings, config: BenchConfig) -> dict[str, Any]:
    """A backlog of ``drain_events`` accepted with no worker running (on the boards defined
    then), and one ``ranker worker`` process persisting it; with the CPU time per persisted
    event of the worker and of every PostgreSQL process (the postmaster, the worker's
    backends, the checkpointer, WAL writer and autovacuum), over the span the rate counts
    (``None`` for PostgreSQL when its processes are not this machine's)."""
    backlog_s = asyncio.run(measure.make_backlog(settings, config.drain_events, config.players))
    server = postmaster(stack)
    since = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "ranker", "worker"],
        env=stack.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    meters = {"worker": psutil.Process(worker.pid)} | ({"postgres": server} if server else {})
    start = {name: tree_cpu_s(process) for name, process in meters.items()}

    def began() -> None:
        # The worker's start-up (imports, connecting) is outside the rate, and so outside this.
        start.update({name: tree_cpu_s(process) for name, process in meters.items()})

    try:
        drained = asyncio.run(measure.time_drain(settings, since, timeout_s=600, on_begin=began))
        spent = {name: tree_cpu_s(process) - start[name] for name, process in meters.items()}
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    events = drained["events"]
    per_event = {
        f"{name}_cpu_us_per_event": spent[name] * 1e6 / events if name in spent and events else None
        for name in ("worker", "postgres")
    }
    return {"backlog_made_s": backlog_s, **drained, "cpu_s": spent, **per_event}


def edge_figures(stack: Stack, settings: Settings, config: BenchConfig) -> dict[str, Any]:
    """The edge phase (``loadgen.bench.edge``): each variant's median round per workload."""

    def measure_max(service: Service, workload: str) -> dict[str, Any]:
        return load(service, load_config(service, workload, config), config.warmup_s)

    board = Keys(settings.namespace).board(GLOBAL)
    rounds = edge.edge_phase(stack, board, measure_max, config.repeats, phase)
    return {
        name: {workload: median_run(runs, _achieved) for workload, runs in by_workload.items()}
        for name, by_workload in rounds.items()
    }


def profile_figures(stack: Stack, config: BenchConfig) -> dict[str, Any]:
    """The profile phase (``loadgen.bench.profiling``): submit at its maximum, profiled."""

    def submit_max(service: Service, seconds: float) -> dict[str, Any]:
        run = _replace(load_config(service, "submit", config), duration_s=seconds)
        return load(service, run, 0.0)

    return profiling.profile_phase(stack, submit_max, config.duration_s, config.warmup_s, phase)


def drain_phase(stack: Stack, settings: Settings, config: BenchConfig) -> dict[str, Any]:
    """``repeats`` rounds of: a backlog of ``drain_events`` accepted with no worker running,
    then one ``ranker worker`` process (default concurrency) persisting it. The median round
    is reported, with every round's rate and CPU time per event (``rounds``)."""
    rounds = []
    for n in range(config.repeats):
        phase(
            f"write-behind: backlog of {config.drain_events} events, then its drain, round {n + 1}"
        )
        rounds.append(drain_round(stack, settings, config))
    return {
        **median_run(rounds, lambda round_: float(round_["rate"])),
        "rounds": rounds,
        "batch_size": settings.worker_batch_size,
        "concurrency": settings.worker_concurrency,
    }
