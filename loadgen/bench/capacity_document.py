"""CAPACITY.md as a whole (``render``) and the script's printed output (``printed``): the
tables of ``capacity_report``, the settings of ``capacity_settings`` at each step, and the
limits that remain, with the model's numbers in them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loadgen.bench import capacity_model as m
from loadgen.bench import capacity_report as t
from loadgen.bench.capacity_measure import TOP_LIMIT
from loadgen.bench.capacity_settings import settings_of

HEAD = """# ranker capacity

What 1M, 10M and 100M players need (the target: 100M players, 20M of them playing on a given
day, 200M sessions a day), computed from figures measured on ranker's own code. Generated
by `make capacity` (`python -m loadgen.bench.capacity`): the script starts a fresh local Redis
and PostgreSQL, measures (below), writes `benchmarks/capacity.json` and renders this file from
it, model included; to change an assumption, change its constant in
`loadgen/bench/capacity_model.py` and run `python -m loadgen.bench.capacity --render-only`.
"""


def _machine(r: Mapping[str, Any]) -> str:
    machine, config = r["machine"], r["config"]
    before = machine.get("load_average_before", [0.0])[0]
    after = machine.get("load_average_after", [0.0])[0]
    return (
        f"Measured on {machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}, "
        f"{machine['redis_server'].split(' sha=')[0]} (AOF on, everysec, as `compose.yaml` runs "
        "it) and PostgreSQL at `wal_level=replica` with fsync off (a throwaway cluster: CPU "
        "without the waits for the disk; sizes are unaffected), the five-board set of `make "
        f"bench` defined; {config['players']:,} players, then {config['sessions']:,} more "
        f"sessions, {config['reads']:,} reads of each kind. **CPU figures were measured on a "
        "shared 2-core machine** (other work ran beside it: load average "
        f"{before:.2f} before, {after:.2f} after), with the measuring process on the same "
        "cores: they are CPU time per operation, which sharing inflates less than throughput, "
        "but a dedicated server's may be lower. Redis's idle CPU "
        f"({r.get('redis_idle_cpu_per_s', 0.0) * 1e3:.2f} ms a second, with the API process "
        "up and nothing sent) is taken off every Redis figure. The model takes Redis's CPU from "
        "the runs of ranker's code called directly, at throughput (Redis busy, as at a peak); "
        "through HTTP, at one rate on these two shared cores, each call finds Redis idle and "
        "its caches cold, and costs more: shown beside, not used. The API's "
        "CPU is the HTTP runs' at that rate, more per request than a busy API process spends "
        "(`make bench`'s closed-loop figures are lower).\n"
    )


def _assumptions() -> list[str]:
    rows = [[f"`{name}`", f"`{getattr(m, name)}`", why] for name, why in t.ASSUMPTIONS]
    boards = ", ".join(
        f"{b.id} ({b.reset}, {b.retain_periods} past periods kept"
        + (f", {b.per_player:g} per player" if b.per_player != 1 else "")
        + ")"
        for b in m.BOARD_SET
    )
    return [
        "## The assumptions",
        "",
        "Each is a named constant of `loadgen/bench/capacity_model.py`. The load scales with "
        "the players: at 1M players, 200k daily players and 2M sessions a day. The boards are "
        f"the five-board set: {boards}; a period's board holds every player active in it, and "
        "a kept period as many as the current one at its end.",
        "",
        *t.table(("constant", "value", "stands for"), rows),
    ]


def _settings(steps: Sequence[m.Step], f: m.Figures) -> list[str]:
    lines = [
        "## Settings at each step",
        "",
        "A setting the model leaves at its default says so, with the numbers that let it. "
        "Replica reads and board shards come with the cluster client (`redis+cluster://`); the "
        "model counts a submission's keys (its idempotency key, the player's members, its "
        "stream entry) on its player's shard, and the namespace's other keys (names among "
        "them) on one primary: the larger figure, since names and moderation states now live "
        'on each player\'s shard too (docs/design.md, "Sharded boards").',
        "",
    ]
    for step in steps:
        rows = [
            [f"`{s.name}`", f"`{s.value}`" if s.value else "default", s.why]
            for s in settings_of(step, f)
        ]
        lines += [f"### {t.label(step)}", "", *t.table(("setting", "value", "why"), rows)]
    return lines


def _limits(steps: Sequence[m.Step], f: m.Figures, r: Mapping[str, Any]) -> list[str]:
    big = steps[-1]
    redis, pg, load = big.redis, big.postgres, big.load
    members = sum(load.board_members.values())
    kept = sum(
        load.players * m.ACTIVE_SHARE[b.reset] * b.per_player * b.retain_periods
        for b in m.BOARD_SET
    )
    drain = r["writes"]["repeat"]["drain"]["rate"]
    per_stream = load.peak_writes_per_s / redis.shards
    where = t.label(big)
    return [
        "## The limits that remain",
        "",
        "1. **Shard 0 keeps what is not a player's.** Board shards spread the members, the "
        "idempotency keys, the streams, the names and the moderation states (each shard has "
        "its own marker and pages version); the definitions and the rate-limit budgets stay on "
        "shard 0, and a submission on another shard charges its caller's budgets there in a "
        f"round trip of its own: at {t.num(load.peak_writes_per_s, 0)} submissions/s that is "
        "one primary's small scripts at the peak. The model still counts the names on one "
        f"primary ({t.num(redis.gb['names'])} GB at {where}, its largest): an upper bound.",
        "2. **A read reaches every shard.** A rank is 1 + the sum of the shards' counts ahead "
        f"(a call per shard), a top page merges each shard's top {TOP_LIMIT} in the API, around "
        "needs the rank first. Shards add memory and write capacity, not read capacity: each "
        f"does about one read's work per read ({t.num(redis.read_cores_per_shard, 2)} of a core "
        f"per shard at the peak at {where}), and the API's merge grows with their number "
        f"({redis.shards} pages of {TOP_LIMIT} for one page); the read waits for the slowest "
        "shard. Replicas are what scale reads.",
        f"3. **PostgreSQL is one primary.** At {where} it takes {t.num(load.peak_writes_per_s, 0)} "
        f"sessions/s at the peak ({t.num(pg.cores, 2)} cores at the budget; one worker drained "
        f"{t.num(drain, 0)} events/s here), {t.num(pg.wal_gb_per_day)} GB of WAL and "
        f"{t.num(pg.sessions_gb_per_day + pg.board_gb_per_day)} GB of disk a day. Retention "
        "drops months of `game_sessions`, not the `board_scores` rows of past periods "
        f"({t.num(pg.board_gb_per_day * m.DAYS_PER_MONTH)} GB a month, kept over the horizon "
        "here), and it bounds what the session log can redo: a board created with backfill, "
        "`verify --deep` and a void reach only the months kept. Past one primary's disk or "
        "write rate there is no second database for a namespace (one namespace, one "
        "database: I6)."
        + (" One month of sessions is over the disk budget." if pg.over_budget else ""),
        "4. **The stream per shard.** Each stream's backlog is bounded by `RANKER_MAX_BACKLOG` "
        f"({redis.max_backlog:,} entries at {where}: {t.num(redis.max_backlog / per_stream, 0)} "
        f"s of a PostgreSQL outage at {t.num(per_stream, 0)} submissions/s per stream); past "
        "it, that shard's submissions answer 503. Each stream is drained by the workers' "
        "group on it, each batch one transaction on the one database.",
        "5. **Recovery.** A primary lost with no replica is reloaded from PostgreSQL: "
        f"{t.num(redis.rebuild_s, 0)} s at {where} at the rate measured here "
        f"({t.num(f.rebuild_members_per_s, 0)} members and {t.num(f.rebuild_keys_per_s, 0)} "
        "idempotency keys a second, one process). With "
        "replicas but without `RANKER_REDIS_MIN_REPLICAS_ACK`, a failover loses the "
        "submissions the replica had not received: answered, yet in no stream.",
        f"6. **Kept periods are most of the boards' memory.** Of {t.num(members, 0)} members "
        f"at {where}, the past periods the boards keep are {kept / members:.0%}. A "
        "board's `retain_periods` (its definition, not an environment setting) is the lever: "
        "an older period is reloaded from PostgreSQL on its first read.",
        "7. **What the figures are.** One run, on a shared 2-core machine, client and servers "
        "on one host (a network adds no Redis CPU but adds waiting to the API), at "
        f"{r['config']['players']:,} players: Redis's bytes per member do not change with a "
        "board's size past the listpack threshold, a sorted set's CPU per call grows with log "
        "n, and PostgreSQL's indexes gain depth; the peak factor and the read mix are "
        "assumptions, not measurements.",
        "",
    ]


def render(r: Mapping[str, Any], f: m.Figures, steps: Sequence[m.Step]) -> str:
    """The whole of CAPACITY.md."""
    measured = [*t.redis_rows(r, f), *t.postgres_rows(r, f), *t.api_rows(r)]
    bench = r.get("bench") or {}
    cited = ""
    if bench:
        cited = (
            f"`make bench`'s figures beside them are from `{bench['source']}` "
            f"({bench['players']:,} players; its cost per request counts the API and its "
            "worker process together, at 1,000 req/s)."
        )
    lines = [
        HEAD,
        _machine(r),
        "## Measured figures",
        "",
        "Every submission went through `Ranking.submit` (submit.lua) or `POST "
        "/api/leaderboard/submit`, every read through ranker's read scripts, every drain "
        f"through `ranker worker`. {cited}",
        "",
        *t.table(("figure", "measured", "how"), measured),
        *_assumptions(),
        "## The model",
        "",
        "Cores are at the peak hour, each divided by its budget (the headroom is in the "
        "budget); Redis memory counts the streams full, as maxmemory must.",
        "",
        *t.table(("", *(t.label(s) for s in steps)), t.model_rows(steps)),
        *_settings(steps, f),
        *_limits(steps, f, r),
    ]
    return "\n".join(lines)


def printed(r: Mapping[str, Any], f: m.Figures, steps: Sequence[m.Step]) -> list[str]:
    """Every figure and the model, as lines for the terminal."""
    lines = ["measured:"]
    measured = [*t.redis_rows(r, f), *t.postgres_rows(r, f), *t.api_rows(r)]
    lines += [f"  {name}: {value}" for name, value, _ in measured]
    lines.append("model: " + " | ".join(t.label(s) for s in steps))
    lines += [f"  {name}: {' | '.join(values)}" for name, *values in t.model_rows(steps)]
    for step in steps:
        lines.append(f"settings at {t.label(step)}:")
        lines += [f"  {s.name}={s.value or '(default)'}" for s in settings_of(step, f)]
    return lines
