"""Which of ranker's settings change at each step of the capacity model, and the numbers that
call for each (CAPACITY.md, "Settings at each step").

Issue 14 adds ``RANKER_REDIS_URL=redis+cluster://...``, ``RANKER_READ_FROM_REPLICAS``,
``RANKER_BOARD_SHARDS``, ``RANKER_SESSIONS_RETENTION_MONTHS`` and
``RANKER_REDIS_MIN_REPLICAS_ACK``; ``RANKER_IDEMPOTENCY_TTL_S`` and ``RANKER_MAX_BACKLOG`` exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadgen.bench import capacity_model as m


@dataclass(frozen=True)
class Setting:
    """A setting at one step: its value (``None``: left at its default) and why."""

    name: str
    value: str | None
    why: str


def _gb(value: float) -> str:
    return f"{value:,.1f} GB"


def _share(value: float) -> str:
    return f"{value:.0%}"


def settings_of(step: m.Step, f: m.Figures) -> tuple[Setting, ...]:
    """Every setting the model decides, at ``step``."""
    return (
        _url(step),
        _shards(step, f),
        _replica_reads(step),
        _replica_ack(step),
        _window(step, f),
        _backlog(step, f),
        _retention(step),
    )


def _url(step: m.Step) -> Setting:
    redis = step.redis
    if redis.shards > 1 or redis.read_from_replicas:
        why = "the cluster client finds every primary and replica: "
        why += f"{redis.shards} primaries" if redis.shards > 1 else "one primary"
        why += ", reads on replicas" if redis.read_from_replicas else ""
        return Setting("RANKER_REDIS_URL", "redis+cluster://<any node>", why)
    why = f"one primary holds it all ({_gb(redis.largest_primary_gb)} of used memory)"
    if redis.replicas_per_primary:
        why += "; its replica is there to fail over to (a URL that follows the primary)"
    return Setting("RANKER_REDIS_URL", "redis://<the primary>", why)


def _shards(step: m.Step, f: m.Figures) -> Setting:
    redis = step.redis
    alone = m.redis_at(step.load, f, redis.window_s, 1)
    numbers = (
        f"on one primary: {_gb(alone.largest_primary_gb)} of used memory (at most "
        f"{_gb(m.PRIMARY_DATASET_MAX_GB)}), writes {_share(alone.write_load)} of its main "
        f"thread (at most {_share(m.REDIS_CORE_BUDGET)})"
    )
    if redis.shards == 1:
        return Setting("RANKER_BOARD_SHARDS", None, numbers)
    numbers += f"; over {redis.shards}: {_gb(redis.largest_primary_gb)} and "
    numbers += f"{_share(redis.write_load)} on the largest"
    return Setting("RANKER_BOARD_SHARDS", str(redis.shards), numbers)


def _replica_reads(step: m.Step) -> Setting:
    redis = step.redis
    spare = m.REDIS_CORE_BUDGET - redis.write_load
    numbers = (
        f"reads take {redis.read_cores_per_shard:.2f} of a core on each shard at the peak "
        f"({step.load.peak_reads_per_s:,.0f}/s); a primary has {max(spare, 0):.2f} left "
        "after its writes"
    )
    if not redis.read_from_replicas:
        return Setting("RANKER_READ_FROM_REPLICAS", None, numbers)
    numbers += f": {redis.replicas_per_primary} replica(s) per primary take them"
    return Setting("RANKER_READ_FROM_REPLICAS", "true", numbers)


def _replica_ack(step: m.Step) -> Setting:
    redis = step.redis
    rebuild = f"a rebuild from PostgreSQL after a loss takes {redis.rebuild_s:,.0f} s"
    if not redis.replicas_per_primary:
        why = f"no replica: {rebuild} (at most {m.REBUILD_OUTAGE_MAX_S:.0f} s), the recovery"
        return Setting("RANKER_REDIS_MIN_REPLICAS_ACK", None, why)
    why = (
        f"{rebuild}, so primaries fail over to replicas; a submission answered before a "
        "replica has it would be lost by a failover (the latency this adds is not measured here)"
    )
    return Setting("RANKER_REDIS_MIN_REPLICAS_ACK", "1", why)


def _window(step: m.Step, f: m.Figures) -> Setting:
    redis = step.redis
    default = m.redis_at(step.load, f, m.DEFAULT_WINDOW_S, redis.shards)
    numbers = f"idempotency keys at the default {m.DEFAULT_WINDOW_S:,} s: "
    numbers += _gb(default.gb["idempotency"])
    if redis.window_s == m.DEFAULT_WINDOW_S:
        return Setting(
            "RANKER_IDEMPOTENCY_TTL_S", None, numbers + "; a shorter one saves no primary"
        )
    numbers += f"; at {redis.window_s:,} s {_gb(redis.gb['idempotency'])}, which saves a primary "
    numbers += "(game servers retry within minutes: an hour is the shortest the model sets)"
    return Setting("RANKER_IDEMPOTENCY_TTL_S", str(redis.window_s), numbers)


def _backlog(step: m.Step, f: m.Figures) -> Setting:
    redis = step.redis
    per_stream = step.load.peak_writes_per_s / redis.shards
    ride = m.DEFAULT_MAX_BACKLOG / per_stream
    numbers = f"the default {m.DEFAULT_MAX_BACKLOG:,} entries last {ride:,.0f} s of a "
    numbers += f"PostgreSQL outage at the peak ({per_stream:,.0f} submissions/s per stream)"
    if redis.max_backlog == m.DEFAULT_MAX_BACKLOG:
        return Setting("RANKER_MAX_BACKLOG", None, numbers)
    bound = redis.max_backlog * f.stream_entry_bytes / m.GB
    numbers += (
        f"; {redis.max_backlog:,} last {m.BACKLOG_RIDE_S} s ({_gb(bound)} per stream when full)"
    )
    return Setting("RANKER_MAX_BACKLOG", str(redis.max_backlog), numbers)


def _retention(step: m.Step) -> Setting:
    pg = step.postgres
    month = pg.sessions_gb_per_day * m.DAYS_PER_MONTH
    numbers = f"sessions take {_gb(month)} a month; {m.HORIZON_MONTHS} months: "
    numbers += f"{_gb(month * m.HORIZON_MONTHS)} (the budget: {_gb(m.PG_SESSIONS_DISK_GB)})"
    if pg.retention_months is None:
        return Setting("RANKER_SESSIONS_RETENTION_MONTHS", None, numbers)
    if pg.over_budget:
        numbers += "; one month is over it already: the disk budget is a limit that remains"
    return Setting("RANKER_SESSIONS_RETENTION_MONTHS", str(pg.retention_months), numbers)
