"""``make soak``: the ``mix`` workload at a steady rate for a long time (10 minutes by default) on a
fresh local stack, with the memory of every process sampled, then ``ranker verify``.

What it says: the errors by status (none expected), the latency of the whole run, and per process
the memory at the start and end of the measured part and its trend (a least-squares slope, in MB
per hour, over the samples after the warm-up). A leak shows as a steady positive slope; the noise of
allocators and buffers as a slope near zero. Writes ``soak.json`` and ``soak.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from redis.asyncio import Redis

from loadgen.bench.run import phase
from loadgen.bench.stack import Service, Stack, local_stack, ranker_command
from loadgen.runner import LoadConfig, run_load

SAMPLE_EVERY_S = 5.0


def server_processes(stack: Stack, api: Service) -> dict[str, list[psutil.Process]]:
    """The processes whose memory is sampled: the API (with its worker, in process), Redis, and
    PostgreSQL (postmaster and backends), found by the ports in their command lines. (The load
    generator's own memory grows with what it records and is not part of the question.)"""
    redis_port = stack.redis_url.rsplit(":", 1)[1].split("/")[0]
    pg_port = stack.database_url.rsplit(":", 1)[1].split("/")[0]
    found: dict[str, list[psutil.Process]] = {
        "api": [psutil.Process(api.process.pid)],
        "redis": [],
        "postgres": [],
    }
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "redis-server" in cmdline and f":{redis_port}" in cmdline:
            found["redis"].append(process)
        elif f"--port={pg_port}" in cmdline:
            found["postgres"] += [process, *process.children()]
    return found


def rss_mb(processes: list[psutil.Process]) -> float:
    """Resident memory of a group of processes, MB (processes that ended count 0)."""
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


async def soak(stack: Stack, api: Service, config: LoadConfig) -> dict[str, Any]:
    """Run the load and sample memory every ``SAMPLE_EVERY_S`` until it ends."""
    groups = server_processes(stack, api)
    samples: list[dict[str, float]] = []
    started = time.perf_counter()

    async def sample() -> None:
        while True:
            row = {"t": time.perf_counter() - started}
            row |= {name: rss_mb(processes) for name, processes in groups.items()}
            samples.append(row)
            await asyncio.sleep(SAMPLE_EVERY_S)

    redis = Redis.from_url(stack.redis_url)
    before = await redis_data(redis)
    sampler = asyncio.create_task(sample())
    try:
        result = await run_load(config)
    finally:
        sampler.cancel()
    after = await redis_data(redis)
    await redis.aclose()
    return {
        "load": result.to_dict(),
        "memory": samples,
        "groups": list(groups),
        "redis_data": {"before": before, "after": after},
    }


async def redis_data(redis: Redis) -> dict[str, int]:
    """Redis's own account of its data: keys and bytes (what its memory growth is made of)."""
    info = await redis.info("memory")
    return {"keys": int(await redis.dbsize()), "used_memory": int(info["used_memory"])}


def trends(memory: list[dict[str, float]], warmup_s: float, groups: list[str]) -> dict[str, Any]:
    """Per process group: memory at the start and end of the measured part, and its slope over
    all of it and over its second half (a leak keeps growing; a warm-up levels off)."""
    measured = [row for row in memory if row["t"] >= warmup_s]
    second_half = measured[len(measured) // 2 :]
    out: dict[str, Any] = {}
    for name in groups:
        values = [row[name] for row in measured]
        out[name] = {
            "start_mb": values[0],
            "end_mb": values[-1],
            "max_mb": max(values),
            "slope_mb_per_hour": _slope(measured, name),
            "second_half_slope_mb_per_hour": _slope(second_half, name),
        }
    return out


def _slope(rows: list[dict[str, float]], name: str) -> float:
    """Least-squares slope of ``name`` over time, MB per hour (0 for fewer than 3 samples)."""
    if len(rows) < 3:
        return 0.0
    hours = [row["t"] / 3600 for row in rows]
    return statistics.linear_regression(hours, [row[name] for row in rows]).slope


def plot(memory: list[dict[str, float]], groups: list[str], path: Path) -> None:
    # Imported here: the backend must be chosen before pyplot is imported.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.4))
    for name in groups:
        ax.plot([row["t"] / 60 for row in memory], [row[name] for row in memory], label=name)
    ax.set_xlabel("minutes of mix")
    ax.set_ylabel("resident memory, MB")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadgen.bench.soak", description=__doc__)
    parser.add_argument("--players", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=500.0, help="mix requests/s")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the trend")
    parser.add_argument("--out", type=Path, default=Path("benchmarks"))
    args = parser.parse_args(argv)
    with local_stack() as stack:
        ranker_command(stack, "migrate")
        phase(f"seed {args.players} players")
        players = str(args.players)
        ranker_command(stack, "seed", "--players", players, "--sessions", str(args.players * 5))
        api = Service.ranker(stack)
        try:
            phase(f"mix at {args.rate:g} req/s for {args.duration:g} s")
            config = LoadConfig(
                url=api.url,
                workload="mix",
                rate=args.rate,
                duration_s=args.duration,
                warmup_s=0.0,
                players=args.players,
                seed=7,
                api_key=stack.api_key,
            )
            figures = asyncio.run(soak(stack, api, config))
        finally:
            api.stop()
        phase("verify")
        figures["verify"] = ranker_command(stack, "verify", "--wait-s", "120").strip()
    figures["config"] = vars(args) | {"out": str(args.out)}
    figures["trend"] = trends(figures["memory"], args.warmup, figures["groups"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(figures, indent=1))
    plot(figures["memory"], figures["groups"], args.out / "soak.png")
    load = figures["load"]
    print(
        f"mix at {args.rate:g} req/s for {args.duration:g} s: {load['count']} requests, "
        f"achieved {load['achieved_rate']:.1f} req/s, errors {load['errors'] or 'none'}, "
        f"p99 {load['latency_ms']['p99']:.2f} ms, max {load['latency_ms']['max']:.2f} ms"
    )
    for name, trend in figures["trend"].items():
        print(
            f"{name:9} memory {trend['start_mb']:.1f} -> {trend['end_mb']:.1f} MB "
            f"(max {trend['max_mb']:.1f}), trend {trend['slope_mb_per_hour']:+.1f} MB/hour, "
            f"over the second half {trend['second_half_slope_mb_per_hour']:+.1f} MB/hour"
        )
    data = figures["redis_data"]
    submissions = load["kind_counts"].get("submit", 0)
    grown = data["after"]["used_memory"] - data["before"]["used_memory"]
    print(
        f"redis data: {data['before']['keys']} -> {data['after']['keys']} keys, "
        f"+{grown / 2**20:.1f} MB for {submissions} submissions "
        f"({grown / max(1, submissions):.0f} B each: idempotency keys live "
        f"RANKER_IDEMPOTENCY_TTL_S, new board members)"
    )
    print(f"verify: {figures['verify']}")
    return 0 if not load["errors"] and figures["verify"].startswith("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
