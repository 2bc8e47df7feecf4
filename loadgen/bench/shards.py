"""What sharding a board costs its reads: ``python -m loadgen.bench.shards`` (``make
bench-shards``).

A board over N shards (``RANKER_BOARD_SHARDS``, docs/design.md "Sharded boards") spans N
primaries, and pays for it on every read: a rank takes two steps (the player's shard, then the
others' counts), a page merges N pages. This measures that price. On a fresh local Redis Cluster
(3 primaries, 3 replicas) the same players and scores are loaded twice, straight into Redis
(markers set, so no PostgreSQL): in a namespace with N = 1 and in one with N = 3. Then through
ranker's own reads (``Ranking.rank``, ``top(100)``, ``around(user, 5)``) in this process, on the
client the API builds (``request_redis``): the latency of one caller alone (median, p99), the
throughput of ``--callers`` concurrent ones, and the primaries' CPU per call (``INFO cpu``, their
idle taken off). Beside them the floor: ZSCORE and ZCOUNT of one rank in one small script on the
N = 1 board, through the same client and read batcher.

While it measures it checks that both namespaces answer as one board (ranks of a sample of
players, equal to those of the scores loaded; top(100)'s ranks, scores and players; windows).
Exits 1 when a check fails, 3 when no local cluster can be started.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ranker.connections import Client, request_redis
from ranker.dev import servers as devservers
from ranker.dev.base import redis_client
from ranker.models import Entry
from ranker.ranking import Ranking
from ranker.settings import Settings
from ranker.shards import shard_of, shards_of

SHARDS = (1, 3)
NAMESPACES = {1: "bench-one", 3: "bench-three"}
KINDS = ("rank", "top", "around", "floor")
#: Scores of 0..SCORE_MAX: at 200k players, some twenty tie on each (ties are where shards
#: order differently from one set, so they must be common).
SCORE_MAX = 10_000
TOP_LIMIT = 100
AROUND_SIDE = 5
#: Players whose rank (and window) both namespaces must give alike.
SAMPLE = 500
UNAVAILABLE = 3
#: The least Redis work of a rank on one sorted set, in one round trip (no marker, no name).
FLOOR = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
return {score, redis.call('ZCOUNT', KEYS[1], '(' .. score, '+inf') + 1}
"""
Call = Callable[[int], Awaitable[object]]


async def load(redis: Client, namespace: str, count: int, scores: list[int]) -> None:
    """Every player's score (and name) on its shard's global board, each shard marked loaded,
    as a rebuild leaves them."""
    by_shard: dict[int, dict[str, int]] = defaultdict(dict)
    for user_id in range(1, len(scores)):
        by_shard[shard_of(user_id, count)][str(user_id)] = scores[user_id]
    for i, keys in enumerate(shards_of(namespace, count).parts):
        members = list(by_shard[i].items())
        for start in range(0, len(members), 5_000):  # bounded commands: no long stall
            chunk = dict(members[start : start + 5_000])
            await redis.zadd(keys.board("global"), chunk)
            await redis.hset(keys.names, mapping={u: f"player_{u}" for u in chunk})
        await redis.set(keys.marker, "loaded")


class PrimariesCpu:
    """CPU seconds of the cluster's primaries (``used_cpu_user`` + ``used_cpu_sys``), summed,
    less what they spend idle (cluster bus, cron) over the same time."""

    def __init__(self, ports: list[int]) -> None:
        self.clients = [redis_client(port) for port in ports]
        self.idle_per_s = 0.0
        self._start, self._started = 0.0, 0.0

    def seconds(self) -> float:
        infos = [client.info("cpu") for client in self.clients]
        return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in infos)

    def measure_idle(self, seconds: float) -> None:
        before = self.seconds()
        time.sleep(seconds)
        self.idle_per_s = (self.seconds() - before) / seconds

    def start(self) -> None:
        self._start, self._started = self.seconds(), time.perf_counter()

    def us_per_call(self, calls: int) -> float:
        idle = self.idle_per_s * (time.perf_counter() - self._started)
        return max(0.0, self.seconds() - self._start - idle) * 1e6 / calls


async def serial(call: Call, users: list[int]) -> list[float]:
    """Each call alone (one caller): its latency in microseconds."""
    latencies = []
    for user in users:
        began = time.perf_counter_ns()
        await call(user)
        latencies.append((time.perf_counter_ns() - began) / 1_000)
    return latencies


async def concurrent(call: Call, users: list[int], callers: int) -> float:
    """Every call, ``callers`` at a time: calls per second."""
    source = iter(users)

    async def caller() -> None:
        for user in source:  # one shared iterator: each user is taken by one caller
            await call(user)

    began = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return len(users) / (time.perf_counter() - began)


async def measure(
    call: Call, args: argparse.Namespace, cpu: PrimariesCpu, seed: int
) -> dict[str, float]:
    """One read: latency alone, then calls/s and CPU per call of ``--callers`` callers."""
    rng = random.Random(seed)  # the same users for N = 1 and N = 3
    reads, callers = args.reads, args.callers

    def users(count: int) -> list[int]:
        return [rng.randint(1, args.players) for _ in range(count)]

    await concurrent(call, users(max(reads // 10, 20)), callers)  # warm-up: scripts, pools
    latencies = await serial(call, users(max(reads // 4, 20)))
    cpu.start()
    rate = await concurrent(call, users(reads), callers)
    return {
        "median_us": statistics.median(latencies),
        "p99_us": statistics.quantiles(latencies, n=100)[98],
        "calls_per_s": rate,
        "redis_cpu_us_per_call": cpu.us_per_call(reads),
    }


def reader(kind: str, ranking: Ranking) -> Call:
    """The read ``kind`` of one user; the floor's script goes through the ranking's own client
    and batcher, as its reads do (on the N = 1 board)."""
    if kind == "floor":
        script, key = ranking.redis.register_script(FLOOR), ranking.keys.board("global")
        return lambda user: ranking.reads.run(script, [key], [user])
    if kind == "top":
        return lambda _: ranking.top(TOP_LIMIT)
    if kind == "around":
        return lambda user: ranking.around(user, AROUND_SIDE)
    return ranking.rank


async def check(
    rankings: dict[int, Ranking], scores: list[int], rng: random.Random
) -> dict[str, Any]:
    """Whether N = 1 and N = 3 answer as one board, and as the scores loaded: the first few
    differences of each kind (none: ok)."""
    ordered = sorted(scores[1:])

    def rank_of(score: int) -> int:  # competition rank: 1 + those strictly better
        return len(ordered) - bisect.bisect_right(ordered, score) + 1

    one, three = rankings[1], rankings[3]
    found: dict[str, list[str]] = {"rank": [], "top": [], "around": []}
    for user in rng.sample(range(1, len(scores)), min(SAMPLE, len(scores) - 1)):
        a, b = await one.rank(user), await three.rank(user)
        want = (scores[user], rank_of(scores[user]))
        if (a.total_score, a.rank) != want or (b.total_score, b.rank) != want:
            found["rank"].append(f"{user}: {a.rank} {b.rank}, want {want}")
        for n, ranking in rankings.items():
            window = await ranking.around(user, AROUND_SIDE)
            if bad := window_faults(window, user, scores, rank_of):
                found["around"].append(f"N={n} around {user}: {bad}")
    tops = {n: await ranking.top(TOP_LIMIT) for n, ranking in rankings.items()}
    cut = ordered[-TOP_LIMIT]  # the last score of the top: its ties may be cut differently
    for n, top in tops.items():
        if sorted((e.rank, e.total_score) for e in top) != sorted(
            (rank_of(s), s) for s in ordered[-TOP_LIMIT:]
        ):
            found["top"].append(f"N={n}: ranks and scores differ from the scores loaded")
        per_score: dict[int, set[int]] = defaultdict(set)
        for entry in top:
            per_score[entry.total_score].add(entry.user_id)
        for score, users in per_score.items():
            all_tied = {u for u in range(1, len(scores)) if scores[u] == score}
            if not (users <= all_tied if score == cut else users == all_tied):
                found["top"].append(f"N={n}: players of score {score} differ")
    return {
        "sampled": min(SAMPLE, len(scores) - 1),
        "differences": {kind: lines[:5] for kind, lines in found.items()},
        "ok": not any(found.values()),
    }


def window_faults(
    window: list[Entry], user: int, scores: list[int], rank_of: Callable[[int], int]
) -> str:
    """What is wrong with a window around ``user`` ("": nothing)."""
    if user not in {e.user_id for e in window}:
        return "the player is missing"
    if not AROUND_SIDE + 1 <= len(window) <= 2 * AROUND_SIDE + 1:
        return f"{len(window)} entries"
    if any(e.total_score != scores[e.user_id] or e.rank != rank_of(e.total_score) for e in window):
        return "an entry's score or rank is wrong"
    if [e.total_score for e in window] != sorted((e.total_score for e in window), reverse=True):
        return "out of order"
    return ""


async def run(args: argparse.Namespace, cluster: devservers.LocalCluster) -> dict[str, Any]:
    rng = random.Random(args.seed)
    scores = [0] + [rng.randint(0, SCORE_MAX) for _ in range(args.players)]  # by user id
    clients: dict[int, Client] = {}
    rankings: dict[int, Ranking] = {}
    for n in SHARDS:
        settings = Settings(redis_url=cluster.url, namespace=NAMESPACES[n], board_shards=n)
        clients[n] = request_redis(settings)
        rankings[n] = Ranking(clients[n], settings)
        await load(clients[n], NAMESPACES[n], n, scores)
    cpu = PrimariesCpu(cluster.primaries())
    cpu.measure_idle(2.0)
    figures: dict[str, dict[str, Any]] = {str(n): {} for n in SHARDS}
    try:
        checks = await check(rankings, scores, random.Random(args.seed + 1))
        for i, kind in enumerate(KINDS):
            for n in SHARDS if kind != "floor" else (1,):
                print(f"== {kind}, N={n}", file=sys.stderr, flush=True)
                call, seed = reader(kind, rankings[n]), args.seed + 10 + i
                figures[str(n)][kind] = await measure(call, args, cpu, seed)
        version = cpu.clients[0].info("server")["redis_version"]
    finally:
        for client in clients.values():
            await client.aclose()
        for primary in cpu.clients:
            primary.close()
    return {"runs": figures, "checks": checks, "redis_version": version}


def table(runs: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    lines = [
        "| read | N | median µs | p99 µs | calls/s | Redis CPU µs/call |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind in KINDS:
        for n, run in runs.items():
            if f := run.get(kind):
                lines.append(
                    f"| {kind} | {n} | {f['median_us']:.0f} | {f['p99_us']:.0f} | "
                    f"{f['calls_per_s']:,.0f} | {f['redis_cpu_us_per_call']:.1f} |"
                )
    return lines


def markdown(result: dict[str, Any]) -> str:
    p, m, checks = result["parameters"], result["machine"], result["checks"]
    return "\n".join(
        [
            "## Sharded boards: the cost of reads over N = 3 shards",
            "",
            f"{p['players']:,} players (scores 0..{SCORE_MAX:,}, many ties) on a local Redis "
            f"Cluster (3 primaries, 3 replicas), the same board with N = 1 and N = 3; "
            f"`Ranking` reads in process on the API's client. Latency: one caller alone "
            f"({max(p['reads'] // 4, 20):,} calls); calls/s: {p['callers']} callers "
            f"({p['reads']:,} calls); Redis CPU: the primaries' `INFO cpu`, idle taken off. "
            f"floor: ZSCORE + ZCOUNT in one script on the N = 1 board, same client.",
            "",
            *table(result["runs"]),
            "",
            f"Both answer as one board ({checks['sampled']} ranks and windows, top({TOP_LIMIT})): "
            f"{'yes' if checks['ok'] else 'NO: ' + json.dumps(checks['differences'])}.",
            "",
            f"Measured on {m['cpus']} cores ({m['platform']}), Redis {m['redis_version']}, "
            f"Python {m['python']}; load average {m['loadavg_before']:.2f} before, "
            f"{m['loadavg_after']:.2f} after (the measuring process shares the cores with "
            f"the six nodes, and with anything else running). {result['seconds']:.0f} s.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadgen.bench.shards", description=__doc__)
    parser.add_argument("--players", type=int, default=200_000)
    parser.add_argument("--reads", type=int, default=20_000, help="calls per read and N")
    parser.add_argument("--callers", type=int, default=32, help="concurrent callers")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/shards.json"))
    parser.add_argument("--markdown", type=Path, default=Path("benchmarks/shards.md"))
    args = parser.parse_args(argv)
    began, loadavg = time.perf_counter(), os.getloadavg()[0]
    try:
        with devservers.redis_cluster_server() as cluster:
            measured = asyncio.run(run(args, cluster))
    except devservers.ServiceUnavailable as exc:
        print(f"no local Redis Cluster: {exc}", file=sys.stderr)
        return UNAVAILABLE
    result = {
        "parameters": {k: v for k, v in vars(args).items() if k not in ("out", "markdown")},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "redis_version": measured.pop("redis_version"),
            "cluster": cluster.how,
            "loadavg_before": loadavg,
            "loadavg_after": os.getloadavg()[0],
        },
        **measured,
        "seconds": time.perf_counter() - began,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(markdown(result))
    print("\n".join(table(result["runs"])))
    if not result["checks"]["ok"]:
        print(f"check failed: {json.dumps(result['checks']['differences'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
