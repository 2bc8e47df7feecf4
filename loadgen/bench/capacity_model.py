"""The capacity model of CAPACITY.md: from the figures ``make capacity`` measured
(``Figures``) and the assumptions below (named constants, each with its reason), what 1M, 10M
and 100M players need: Redis memory, cores, primaries and replicas; API, worker and PostgreSQL
cores; PostgreSQL disk (``capacity_settings``: which setting changes at each step, and why).

Pure arithmetic: the unit tests give it figures of their own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ranker.settings import Settings

# -- The load: the target's 100M players / 20M daily / 200M sessions a day, scaled linearly.
PLAYER_STEPS = (1_000_000, 10_000_000, 100_000_000)
DAILY_SHARE = 0.20  # players with a session on a given day
WEEKLY_SHARE = 0.35  # ... in a given week (an assumption: a weekly board's members)
MONTHLY_SHARE = 0.50  # ... in a given month
SESSIONS_PER_DAILY_PLAYER = 10  # 200M sessions / 20M daily players
PEAK_FACTOR = 3.0  # the busiest hour's rate over the day's mean rate
READS_PER_DAILY_PLAYER = 40  # rank, top and around reads a daily player makes in a day
READ_MIX = {"rank": 0.5, "top": 0.3, "around": 0.2}
NAMED_SHARE = 1.0  # players with a display name: every one, the upper bound
DAY_S = 86_400
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class BoardShape:
    """One board of the five-board set (``loadgen.bench.boards.FIVE_BOARDS`` and the two
    built-in boards): its reset, the past periods Redis keeps, and how many of its keys a
    player is on per period (the mode boards: each player on every mode's, the upper bound)."""

    id: str
    reset: str
    retain_periods: int
    per_player: float = 1.0


BOARD_SET = (
    BoardShape("global", "never", 0),
    BoardShape("mode-<mode>", "never", 0, per_player=2.0),  # two modes, solo and team
    BoardShape("daily-best", "daily", 7),
    BoardShape("weekly-sum", "weekly", 4),
    BoardShape("monthly-best", "monthly", 3),
)
ACTIVE_SHARE = {
    "never": 1.0,
    "daily": DAILY_SHARE,
    "weekly": WEEKLY_SHARE,
    "monthly": MONTHLY_SHARE,
}
PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": DAYS_PER_MONTH}

# -- The settings' defaults, read from ranker's own Settings (not copied).
_FIELDS = Settings.model_fields
DEFAULT_WINDOW_S: int = _FIELDS["idempotency_ttl_s"].default
DEFAULT_MAX_BACKLOG: int = _FIELDS["max_backlog"].default
WATERMARK: float = _FIELDS["redis_memory_watermark"].default

# -- Redis.
#: used_memory one primary may hold: a restart from its AOF, or a replica's full sync, stays
#: in minutes, and a failover moves a size a machine of common size holds twice over.
PRIMARY_DATASET_MAX_GB = 25.0
#: Share of its main thread (one core) a node's commands may take at the peak: the rest is
#: for bursts above the peak hour's mean, forks (AOF rewrite, a replica's sync) and latency.
REDIS_CORE_BUDGET = 0.5
#: RAM per byte of maxmemory: a fork copies the pages written while it runs; output buffers.
NODE_RAM_PER_MAXMEMORY = 1.5
#: Idempotency windows the model may choose, longest first; none shorter than an hour, since
#: game servers retry a session within minutes (and the window must outlast their retries).
WINDOWS_S = (DEFAULT_WINDOW_S, 6 * 3_600, 3_600)
#: A PostgreSQL outage the backlog must absorb at the peak before submit answers 503.
BACKLOG_RIDE_S = 600
BACKLOG_STEP = 100_000  # a recommended max_backlog is rounded up to this
#: The longest rebuild from PostgreSQL accepted as the recovery of a lost Redis; above it,
#: every primary gets a replica to fail over to.
REBUILD_OUTAGE_MAX_S = 60.0
MAX_SHARDS = 256

# -- Processes and PostgreSQL.
PROCESS_CORE_BUDGET = 0.6  # share of a core an API or worker process may use at the peak
PG_CORE_BUDGET = 0.5  # share of PostgreSQL's cores its write-behind load may use at the peak
#: Bytes on disk the sessions table of one PostgreSQL primary may take.
PG_SESSIONS_DISK_GB = 2_000.0
#: How long sessions would be kept with no retention (the model's horizon for disk too).
HORIZON_MONTHS = 24
#: board_scores is updated in place (HOT); autovacuum's default scale factor lets a fifth of
#: a table be dead rows before it runs.
BOARD_SCORES_BLOAT = 1.2
GB = 1e9


@dataclass(frozen=True)
class Figures:
    """The measured inputs of the model (``from_results``: out of ``capacity.json``)."""

    board_member_bytes: float
    idempotency_key_bytes: float
    stream_entry_bytes: float
    name_bytes: float
    redis_submit_us: (
        float  # Redis main thread per submission: the script and its share of the drain
    )
    redis_read_us: Mapping[str, float]  # ... per read of each kind
    api_submit_us: float  # API process per request
    api_read_us: Mapping[str, float]
    worker_us: float  # the worker process per persisted session
    pg_first_us: float  # PostgreSQL per session that opens a player's board rows
    pg_repeat_us: float  # ... per session of a player already on them
    pg_session_bytes: float  # game_sessions (heap and indexes) per session
    pg_board_row_bytes: float  # board_scores per row
    pg_player_bytes: float
    wal_bytes_per_session: float
    rebuild_members_per_s: float  # board members reloaded from PostgreSQL per second
    rebuild_keys_per_s: float  # ... idempotency keys restored per second

    @classmethod
    def from_results(cls, r: Mapping[str, Any]) -> Figures:
        """The model's inputs out of the measured figures. Redis's CPU is the direct runs'
        (ranker's code at throughput: Redis busy, as at a peak), not the HTTP runs' at a low
        rate on shared cores, where each call finds Redis idle and cold; the API's CPU is the
        HTTP runs' (at that rate: more per request than a busy API process spends)."""
        first, repeat = r["writes"]["first"], r["writes"]["repeat"]
        boards = first["redis"]["boards"].values()
        members = sum(b["members"] for b in boards)
        http = r["http"]
        rebuild = r["rebuild"]
        members_only = rebuild["members_only"]
        return cls(
            board_member_bytes=sum(b["bytes"] for b in boards) / members,
            idempotency_key_bytes=repeat["used_memory_per_idempotency_key"],
            stream_entry_bytes=max(
                repeat["stream"]["bytes_per_item"], repeat["used_memory_per_stream_entry"]
            ),
            name_bytes=first["redis"]["names"]["bytes_per_item"],
            redis_submit_us=repeat["redis_cpu"]["main_thread_us_per_op"]
            + repeat["drain"]["redis"]["main_thread_us_per_op"],
            redis_read_us={k: r["reads"][k]["main_thread_us_per_op"] for k in READ_MIX},
            api_submit_us=http["submit"]["api_cpu_us_per_request"],
            api_read_us={kind: http[kind]["api_cpu_us_per_request"] for kind in READ_MIX},
            worker_us=repeat["drain"]["worker_cpu_us_per_event"],
            pg_first_us=first["drain"]["postgres_cpu_us_per_event"],
            pg_repeat_us=repeat["drain"]["postgres_cpu_us_per_event"],
            pg_session_bytes=repeat["postgres"]["sessions"]["bytes_per_row"],
            pg_board_row_bytes=first["postgres"]["board_scores"]["bytes_per_row"],
            pg_player_bytes=first["postgres"]["players"]["bytes_per_row"],
            wal_bytes_per_session=repeat["postgres"]["wal_bytes_per_event"],
            rebuild_members_per_s=members_only["members"] / members_only["duration_s"],
            # The keys' time is what the rebuild that restored them took beyond the other.
            rebuild_keys_per_s=rebuild["sessions_restored"]
            / max(rebuild["duration_s"] - members_only["duration_s"], 1e-3),
        )


@dataclass(frozen=True)
class Load:
    """What the players ask of the service at one step."""

    players: int
    daily_players: float
    sessions_per_day: float
    peak_writes_per_s: float
    peak_reads_per_s: float
    board_members: Mapping[str, float]

    @classmethod
    def of(cls, players: int) -> Load:
        daily = players * DAILY_SHARE
        sessions = daily * SESSIONS_PER_DAILY_PLAYER
        members = {
            b.id: players * ACTIVE_SHARE[b.reset] * b.per_player * (1 + b.retain_periods)
            for b in BOARD_SET
        }
        return cls(
            players=players,
            daily_players=daily,
            sessions_per_day=sessions,
            peak_writes_per_s=sessions / DAY_S * PEAK_FACTOR,
            peak_reads_per_s=daily * READS_PER_DAILY_PLAYER / DAY_S * PEAK_FACTOR,
            board_members=members,
        )

    def idempotency_keys(self, window_s: int) -> float:
        """Keys alive at once: a window's sessions at the peak rate, never more than the
        sessions of the window's days."""
        return min(
            self.peak_writes_per_s * window_s, self.sessions_per_day * max(1.0, window_s / DAY_S)
        )


@dataclass(frozen=True)
class Redis:
    """Redis at one step. Per primary: its share of the board members and idempotency keys
    (a submission's keys live on its player's shard), a stream bounded by ``max_backlog``, and
    on the namespace's own primary the names hash (the largest primary is that one)."""

    window_s: int
    max_backlog: int
    shards: int
    gb: Mapping[str, float]  # boards, idempotency, stream bound (all streams), names
    largest_primary_gb: float
    maxmemory_gb: float  # of the largest primary: its used memory at the watermark
    node_ram_gb: float
    write_cores: float  # all primaries together, at the peak
    write_load: float  # of one primary's main thread
    read_cores_per_shard: float
    read_from_replicas: bool
    replicas_per_primary: int
    rebuild_s: float  # reloading it all from PostgreSQL after a loss

    @property
    def total_gb(self) -> float:
        return sum(self.gb.values())


def redis_at(load: Load, f: Figures, window_s: int, shards: int) -> Redis:
    """Redis at ``load`` with idempotency window ``window_s`` over ``shards`` primaries."""
    per_stream = load.peak_writes_per_s / shards * BACKLOG_RIDE_S
    backlog = max(DEFAULT_MAX_BACKLOG, math.ceil(per_stream / BACKLOG_STEP) * BACKLOG_STEP)
    members = sum(load.board_members.values())
    keys = load.idempotency_keys(window_s)
    gb = {
        "boards": members * f.board_member_bytes / GB,
        "idempotency": keys * f.idempotency_key_bytes / GB,
        "stream_bound": shards * backlog * f.stream_entry_bytes / GB,
        "names": load.players * NAMED_SHARE * f.name_bytes / GB,
    }
    largest = (gb["boards"] + gb["idempotency"] + gb["stream_bound"]) / shards + gb["names"]
    write_cores = load.peak_writes_per_s * f.redis_submit_us / 1e6
    read_us = sum(share * f.redis_read_us[kind] for kind, share in READ_MIX.items())
    # A read reaches every shard (a rank sums the shards' counts ahead, a top page merges
    # theirs): each shard does about one unsharded read's work per read, whatever their number.
    read_cores = load.peak_reads_per_s * read_us / 1e6
    write_load = write_cores / shards
    # A replica applies its primary's writes too: what is left of its budget takes reads.
    spare = REDIS_CORE_BUDGET - write_load
    on_replicas = read_cores > spare
    replicas = math.ceil(read_cores / max(spare, 0.01)) if on_replicas else 0
    rebuild_s = members / f.rebuild_members_per_s + keys / f.rebuild_keys_per_s
    if rebuild_s > REBUILD_OUTAGE_MAX_S or on_replicas:
        replicas = max(replicas, 1)
    maxmemory = largest / WATERMARK
    return Redis(
        window_s=window_s,
        max_backlog=backlog,
        shards=shards,
        gb=gb,
        largest_primary_gb=largest,
        maxmemory_gb=maxmemory,
        node_ram_gb=maxmemory * NODE_RAM_PER_MAXMEMORY,
        write_cores=write_cores,
        write_load=write_load,
        read_cores_per_shard=read_cores,
        read_from_replicas=on_replicas,
        replicas_per_primary=replicas,
        rebuild_s=rebuild_s,
    )


def fits(redis: Redis) -> bool:
    """Whether every primary stays within its memory and its main thread's budget."""
    return (
        redis.largest_primary_gb <= PRIMARY_DATASET_MAX_GB and redis.write_load <= REDIS_CORE_BUDGET
    )


def plan_redis(load: Load, f: Figures) -> Redis:
    """The fewest primaries that hold the step; then the longest idempotency window that
    needs no more of them (a shorter window is chosen only when it saves a primary)."""
    plans = []
    for window_s in WINDOWS_S:
        found = next(
            (p for s in range(1, MAX_SHARDS + 1) if fits(p := redis_at(load, f, window_s, s))),
            None,
        )
        if found is not None:
            plans.append(found)
    if not plans:
        raise ValueError(f"{load.players:,} players fit no {MAX_SHARDS} primaries")
    fewest = min(plan.shards for plan in plans)
    return next(plan for plan in plans if plan.shards == fewest)


@dataclass(frozen=True)
class Postgres:
    """PostgreSQL at one step (one primary: the write-behind's one database)."""

    cores: float
    sessions_gb_per_day: float
    board_gb_per_day: float
    standing_gb: float  # players and the never-reset boards' rows
    wal_gb_per_day: float
    retention_months: int | None  # None: keep every session (within the horizon)
    retained_gb: float  # sessions kept, board rows and standing tables over the horizon
    over_budget: bool  # even one month of sessions exceeds the disk budget

    @property
    def gb_per_month(self) -> float:
        return (self.sessions_gb_per_day + self.board_gb_per_day) * DAYS_PER_MONTH


def plan_postgres(load: Load, f: Figures) -> Postgres:
    """Cores at the peak and disk by day, by month and with retention."""
    # A player's first session in a period opens a board row: one session in
    # SESSIONS_PER_DAILY_PLAYER opens the day's (and, now and then, the week's or month's).
    first_share = load.daily_players / load.sessions_per_day
    pg_us = first_share * f.pg_first_us + (1 - first_share) * f.pg_repeat_us
    rows_per_day = sum(
        load.players * ACTIVE_SHARE[b.reset] * b.per_player / PERIOD_DAYS[b.reset]
        for b in BOARD_SET
        if b.reset != "never"
    )
    row_bytes = f.pg_board_row_bytes * BOARD_SCORES_BLOAT
    standing_rows = sum(load.players * b.per_player for b in BOARD_SET if b.reset == "never")
    standing = (standing_rows * row_bytes + load.players * f.pg_player_bytes) / GB
    sessions_day = load.sessions_per_day * f.pg_session_bytes / GB
    sessions_month = sessions_day * DAYS_PER_MONTH
    months: int | None = None
    if sessions_month * HORIZON_MONTHS > PG_SESSIONS_DISK_GB:
        months = max(1, math.floor(PG_SESSIONS_DISK_GB / sessions_month))
    board_day = rows_per_day * row_bytes / GB
    kept = HORIZON_MONTHS if months is None else months
    return Postgres(
        cores=load.peak_writes_per_s * pg_us / 1e6 / PG_CORE_BUDGET,
        sessions_gb_per_day=sessions_day,
        board_gb_per_day=board_day,
        standing_gb=standing,
        wal_gb_per_day=load.sessions_per_day * f.wal_bytes_per_session / GB,
        retention_months=months,
        retained_gb=kept * sessions_month + HORIZON_MONTHS * DAYS_PER_MONTH * board_day + standing,
        over_budget=sessions_month > PG_SESSIONS_DISK_GB,
    )


@dataclass(frozen=True)
class Step:
    """Everything the model says about one number of players."""

    load: Load
    redis: Redis
    api_cores: float
    worker_cores: float
    postgres: Postgres


def plan(players: int, f: Figures) -> Step:
    """The model at ``players``."""
    load = Load.of(players)
    redis = plan_redis(load, f)
    read_us = sum(share * f.api_read_us[kind] for kind, share in READ_MIX.items())
    api = (load.peak_writes_per_s * f.api_submit_us + load.peak_reads_per_s * read_us) / 1e6
    return Step(
        load=load,
        redis=redis,
        api_cores=api / PROCESS_CORE_BUDGET,
        worker_cores=load.peak_writes_per_s * f.worker_us / 1e6 / PROCESS_CORE_BUDGET,
        postgres=plan_postgres(load, f),
    )


def plan_all(f: Figures, steps: tuple[int, ...] = PLAYER_STEPS) -> list[Step]:
    """The model at each number of players."""
    return [plan(players, f) for players in steps]


def as_dict(step: Step) -> dict[str, Any]:
    """A step as JSON can hold it (properties included)."""
    found = dataclasses.asdict(step)
    found["redis"]["total_gb"] = step.redis.total_gb
    found["postgres"]["gb_per_month"] = step.postgres.gb_per_month
    return found
