"""CAPACITY.md, rendered from the figures of ``loadgen.bench.capacity`` and the model of
``capacity_model``: nothing in it is typed by hand but the words around the numbers."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loadgen.bench import capacity_model as m
from loadgen.bench.capacity_measure import AROUND_SIDE, TOP_LIMIT
from loadgen.bench.report_cost import cost_us

#: The model's assumptions as the document lists them: the constant, and what it stands for.
ASSUMPTIONS = (
    ("DAILY_SHARE", "players with a session on a given day (20M of 100M)"),
    ("WEEKLY_SHARE", "players with a session in a given week: the weekly board's members"),
    ("MONTHLY_SHARE", "players with a session in a given month: the monthly board's members"),
    ("SESSIONS_PER_DAILY_PLAYER", "sessions a daily player plays (200M a day / 20M)"),
    ("PEAK_FACTOR", "the busiest hour's rate over the day's mean"),
    ("READS_PER_DAILY_PLAYER", "reads (rank, top, around) a daily player makes a day"),
    ("READ_MIX", "the reads' kinds, by share"),
    ("NAMED_SHARE", "players with a display name"),
    ("DEFAULT_WINDOW_S", "the idempotency window, `RANKER_IDEMPOTENCY_TTL_S`'s default"),
    ("WINDOWS_S", "the windows the model may set, longest first (never under an hour)"),
    ("DEFAULT_MAX_BACKLOG", "`RANKER_MAX_BACKLOG`'s default (entries per stream)"),
    ("BACKLOG_RIDE_S", "a PostgreSQL outage the backlog must absorb at the peak"),
    ("WATERMARK", "`RANKER_REDIS_MEMORY_WATERMARK`'s default: used memory over maxmemory"),
    ("PRIMARY_DATASET_MAX_GB", "used memory one primary may hold (restart, resync, failover)"),
    ("REDIS_CORE_BUDGET", "share of a node's main thread its commands may take at the peak"),
    ("NODE_RAM_PER_MAXMEMORY", "RAM per byte of maxmemory (fork copy-on-write, buffers)"),
    ("REBUILD_OUTAGE_MAX_S", "the longest rebuild from PostgreSQL accepted as recovery"),
    ("PROCESS_CORE_BUDGET", "share of a core an API or worker process may use at the peak"),
    ("PG_CORE_BUDGET", "share of PostgreSQL's cores the write-behind may use at the peak"),
    ("PG_SESSIONS_DISK_GB", "disk the sessions table of one PostgreSQL primary may take"),
    ("HORIZON_MONTHS", "how long sessions would be kept with no retention"),
    ("BOARD_SCORES_BLOAT", "board_scores' dead rows between autovacuums (scale factor 0.2)"),
)


def bench_figures(path: Path, previous: Any) -> Any:
    """``make bench``'s figures this document cites beside its own (cost per request, the
    five-board drain, the rebuild), from its ``results.json``; ``previous`` when it is gone."""
    if not path.exists():
        return previous
    r = json.loads(path.read_text())
    drains = [run["postgres_cpu_us_per_event"] for run in r.get("boards", {}).get("drain", [])]
    return {
        "source": str(path),
        "players": r["config"]["players"],
        "cost_us": {route: statistics.median(runs) for route, runs in cost_us(r).items()},
        "drain_five_boards_postgres_us": statistics.median(drains) if drains else None,
        "drain_five_boards_rate": statistics.median(d["rate"] for d in r["boards"]["drain"])
        if drains
        else None,
    }


def num(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def _evalsha_us(span: Mapping[str, Any]) -> float:
    return float(span["commands"].get("evalsha", {}).get("usec_per_call", 0.0))


def redis_rows(r: Mapping[str, Any], f: m.Figures) -> list[list[str]]:
    """The Redis rows of "Measured figures": what, how much, how it was measured."""
    first, repeat = r["writes"]["first"], r["writes"]["repeat"]
    boards = first["redis"]["boards"]
    members = sum(b["members"] for b in boards.values())
    encodings = ", ".join(sorted({b["encoding"] for b in boards.values()}))
    key, names = repeat["idempotency_key"], first["redis"]["names"]
    submit = repeat["redis_cpu"]
    rows = [
        [
            "Redis bytes per board member",
            num(f.board_member_bytes),
            f"MEMORY USAGE of the {len(boards)} board keys / their {members:,} members "
            f"({encodings}; a sorted set is a listpack only up to "
            f"{first['redis']['zset_max_listpack_entries']} members)",
        ],
        [
            "Redis bytes per idempotency key",
            num(f.idempotency_key_bytes),
            f"used_memory after {submit['ops']:,} sessions and their drain / sessions; one key: "
            f"MEMORY USAGE {key['memory_usage']} B, name {key['key_bytes']} B, value "
            f"{key['value_bytes']} B, TTL {key['ttl_s']:,} s",
        ],
        [
            "Redis bytes per stream entry",
            num(f.stream_entry_bytes),
            f"the higher of MEMORY USAGE / entries ({num(repeat['stream']['bytes_per_item'])}) and "
            f"used_memory before and after the drain / entries "
            f"({num(repeat['used_memory_per_stream_entry'])}): five boards' placements, a UUID "
            "session id, a request id",
        ],
        [
            "Redis bytes per display name",
            num(f.name_bytes),
            f"MEMORY USAGE of the names hash / its {names['items']:,} names (`player_<id>`, "
            f"{names['encoding']})",
        ],
        [
            "Redis bytes of a player's first session",
            num(first["used_memory_per_player"]),
            "used_memory before and after the first sessions / players: five boards' members, a "
            "name, an idempotency key, a stream entry",
        ],
        [
            "Redis CPU per submission, us",
            num(submit["main_thread_us_per_op"]),
            f"INFO cpu (main thread) over {submit['ops']:,} `Ranking.submit` / submissions; "
            f"EVALSHA of submit.lua {num(_evalsha_us(submit))} us per call (INFO commandstats); "
            f"through HTTP: {num(r['http']['submit']['redis']['main_thread_us_per_op'])} us",
        ],
        [
            "Redis CPU per persisted submission, us",
            num(repeat["drain"]["redis"]["main_thread_us_per_op"]),
            "INFO cpu during the worker's drain / events (XREADGROUP; ack.lua: XACK, XDEL)",
        ],
    ]
    shape = {"top": f", a page of {TOP_LIMIT} with names", "around": f", {AROUND_SIDE} a side"}
    for kind in m.READ_MIX:
        read, http = r["reads"][kind], r["http"][kind]["redis"]
        rows.append(
            [
                f"Redis CPU per {kind} read{shape.get(kind, '')}, us",
                num(read["main_thread_us_per_op"]),
                f"INFO cpu over {read['ops']:,} reads ({num(read['rate'], 0)}/s, coalesced); "
                f"EVALSHA {num(_evalsha_us(read))} us per call; through HTTP: "
                f"{num(http['main_thread_us_per_op'])} us",
            ]
        )
    return rows


def postgres_rows(r: Mapping[str, Any], f: m.Figures) -> list[list[str]]:
    """The PostgreSQL, worker and rebuild rows of "Measured figures"."""
    first, repeat = r["writes"]["first"], r["writes"]["repeat"]
    grown_first, grown = first["postgres"], repeat["postgres"]
    rebuild = r["rebuild"]
    alone = rebuild["members_only"]
    return [
        [
            "PostgreSQL CPU per session: a player's first, us",
            num(f.pg_first_us),
            f"CPU time of every PostgreSQL process while one `ranker worker` drained "
            f"{first['drain']['events']:,} first sessions ({num(first['drain']['rate'], 0)} "
            "events/s) / events: five board rows and a player row each",
        ],
        [
            "PostgreSQL CPU per session: a returning player's, us",
            num(f.pg_repeat_us),
            f"the same over {repeat['drain']['events']:,} sessions of players already on their "
            f"boards ({num(repeat['drain']['rate'], 0)} events/s)",
        ],
        [
            "worker CPU per persisted session, us",
            num(f.worker_us),
            "the `ranker worker` process over the same drain / events",
        ],
        [
            "PostgreSQL bytes per session",
            num(f.pg_session_bytes),
            "game_sessions with its 4 indexes: pg_total_relation_size after VACUUM, growth / "
            f"{grown['sessions']['rows']:,} rows",
        ],
        [
            "PostgreSQL bytes per board_scores row",
            num(f.pg_board_row_bytes),
            f"the same over {grown_first['board_scores']['rows']:,} rows of first sessions "
            "(returning players' updates, HOT in the fillfactor's room, grew it "
            f"{num(grown['board_scores']['bytes_per_event'])} B per session)",
        ],
        [
            "PostgreSQL bytes per player",
            num(f.pg_player_bytes),
            f"the same over {grown_first['players']['rows']:,} players rows",
        ],
        [
            "WAL bytes per session",
            num(f.wal_bytes_per_session),
            "pg_current_wal_lsn around the drain / sessions, from a CHECKPOINT: every page's "
            "first change writes its full image, an upper bound",
        ],
        [
            "rebuild: board members per second",
            num(f.rebuild_members_per_s, 0),
            f"FLUSHALL, then `ranker rebuild` with a window of 1 s (no key to restore): "
            f"{alone['members']:,} members (and names, definitions) in "
            f"{num(alone['duration_s'], 2)} s",
        ],
        [
            "rebuild: idempotency keys per second",
            num(f.rebuild_keys_per_s, 0),
            f"FLUSHALL, then `ranker rebuild` as deployed: {rebuild['sessions_restored']:,} keys "
            f"more, in {num(rebuild['duration_s'], 2)} s in all",
        ],
    ]


def api_rows(r: Mapping[str, Any]) -> list[list[str]]:
    """The API rows of "Measured figures", beside ``make bench``'s figures."""
    cost = (r.get("bench") or {}).get("cost_us", {})
    config = r["config"]
    rows = []
    for kind in (*m.READ_MIX, "submit"):
        run = r["http"][kind]
        cited = ""
        if kind in cost:
            cited = f"; `make bench`: {num(cost[kind], 0)} us (its worker process included)"
        rows.append(
            [
                f"API CPU per {kind} request, us",
                num(run["api_cpu_us_per_request"], 0),
                f"`ranker serve --no-worker` at {config['http_rate']:,} req/s, open loop, "
                f"{config['http_s']:g} s: {run['requests']:,} requests, "
                f"p99 {num(run['p99_ms'], 2)} ms, "
                f"{sum(run['errors'].values()) if run['errors'] else 0} errors{cited}",
            ]
        )
    return rows


def model_rows(steps: Sequence[m.Step]) -> list[list[str]]:
    """The table "The model": one column per step."""
    quantities: list[tuple[str, Any]] = [
        ("daily players", lambda s: num(s.load.daily_players, 0)),
        ("sessions a day", lambda s: num(s.load.sessions_per_day, 0)),
        ("submissions/s at the peak", lambda s: num(s.load.peak_writes_per_s, 0)),
        ("reads/s at the peak", lambda s: num(s.load.peak_reads_per_s, 0)),
        ("board members, every period kept", lambda s: num(sum(s.load.board_members.values()), 0)),
        ("Redis boards, GB", lambda s: num(s.redis.gb["boards"])),
        (
            "Redis idempotency keys, GB (window)",
            lambda s: f"{num(s.redis.gb['idempotency'])} ({s.redis.window_s:,} s)",
        ),
        (
            "Redis streams when full, GB (entries)",
            lambda s: (
                f"{num(s.redis.gb['stream_bound'])} ({s.redis.shards} x {s.redis.max_backlog:,})"
            ),
        ),
        ("Redis names, GB", lambda s: num(s.redis.gb["names"])),
        ("Redis used memory in all, GB", lambda s: num(s.redis.total_gb)),
        ("primaries (board shards)", lambda s: str(s.redis.shards)),
        ("replicas per primary", lambda s: str(s.redis.replicas_per_primary)),
        ("Redis nodes", lambda s: str(s.redis.shards * (1 + s.redis.replicas_per_primary))),
        ("largest primary's used memory, GB", lambda s: num(s.redis.largest_primary_gb)),
        (
            "per node: maxmemory / RAM, GB",
            lambda s: f"{num(s.redis.maxmemory_gb)} / {num(s.redis.node_ram_gb)}",
        ),
        ("Redis cores on writes, all primaries", lambda s: num(s.redis.write_cores, 2)),
        ("one primary's main thread on writes", lambda s: f"{s.redis.write_load:.1%}"),
        ("Redis cores on reads, per shard", lambda s: num(s.redis.read_cores_per_shard, 2)),
        ("rebuild after losing Redis, s", lambda s: num(s.redis.rebuild_s, 0)),
        ("API cores", lambda s: num(s.api_cores)),
        ("worker cores", lambda s: num(s.worker_cores, 2)),
        ("PostgreSQL cores (one primary)", lambda s: num(s.postgres.cores, 2)),
        (
            "PostgreSQL disk a day, GB: sessions + board rows",
            lambda s: (
                f"{num(s.postgres.sessions_gb_per_day)} + {num(s.postgres.board_gb_per_day, 2)}"
            ),
        ),
        ("PostgreSQL disk a month, GB", lambda s: num(s.postgres.gb_per_month)),
        ("WAL a day, GB (replicated, archived)", lambda s: num(s.postgres.wal_gb_per_day)),
        ("sessions kept", lambda s: _kept(s.postgres.retention_months)),
        (
            f"PostgreSQL disk over {m.HORIZON_MONTHS} months, GB",
            lambda s: num(s.postgres.retained_gb),
        ),
    ]
    return [[name, *(value(step) for step in steps)] for name, value in quantities]


def _kept(months: int | None) -> str:
    return f"all ({m.HORIZON_MONTHS} months)" if months is None else f"{months} month(s)"


def label(step: m.Step) -> str:
    return f"{step.load.players / 1e6:g}M players"
