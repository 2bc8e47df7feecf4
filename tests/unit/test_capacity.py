"""The capacity model's arithmetic (loadgen/bench/capacity_model.py) and the settings it
recommends (capacity_settings.py), on figures given here, not measured."""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib

import pytest

from loadgen.bench import capacity_model as m
from loadgen.bench.boards import FIVE_BOARDS
from loadgen.bench.capacity_settings import settings_of

FIGURES = m.Figures(
    board_member_bytes=100.0,
    idempotency_key_bytes=200.0,
    stream_entry_bytes=300.0,
    name_bytes=50.0,
    redis_submit_us=100.0,
    redis_read_us={"rank": 10.0, "top": 50.0, "around": 20.0},
    api_submit_us=400.0,
    api_read_us={"rank": 200.0, "top": 300.0, "around": 250.0},
    worker_us=5.0,
    pg_first_us=60.0,
    pg_repeat_us=40.0,
    pg_session_bytes=300.0,
    pg_board_row_bytes=150.0,
    pg_player_bytes=100.0,
    wal_bytes_per_session=1_000.0,
    rebuild_members_per_s=500_000.0,
    rebuild_keys_per_s=100_000.0,
)
#: Board memberships per player, every period kept: global 1, two modes 2, daily 0.2 x 8,
#: weekly 0.35 x 5, monthly 0.5 x 4.
MEMBERS_PER_PLAYER = 1 + 2 + 0.2 * 8 + 0.35 * 5 + 0.5 * 4


def setting(step: m.Step, name: str, figures: m.Figures = FIGURES) -> str | None:
    return next(s.value for s in settings_of(step, figures) if s.name == name)


def test_the_load_is_the_target_at_100m_players() -> None:
    load = m.Load.of(100_000_000)

    assert load.daily_players == pytest.approx(20_000_000)
    assert load.sessions_per_day == pytest.approx(200_000_000)
    assert load.peak_writes_per_s == pytest.approx(200_000_000 / 86_400 * m.PEAK_FACTOR)
    assert sum(load.board_members.values()) == pytest.approx(100_000_000 * MEMBERS_PER_PLAYER)


def test_redis_memory_and_cores_at_1m_players_are_the_figures_times_the_counts() -> None:
    step = m.plan(1_000_000, FIGURES)
    redis = step.redis

    assert redis.gb["boards"] == pytest.approx(1e6 * MEMBERS_PER_PLAYER * 100 / 1e9)
    # The default window (a day) holds a day's sessions: 2M keys.
    assert redis.window_s == m.DEFAULT_WINDOW_S
    assert redis.gb["idempotency"] == pytest.approx(2e6 * 200 / 1e9)
    assert redis.gb["stream_bound"] == pytest.approx(m.DEFAULT_MAX_BACKLOG * 300 / 1e9)
    assert redis.gb["names"] == pytest.approx(1e6 * 50 / 1e9)
    assert redis.shards == 1
    assert redis.largest_primary_gb == pytest.approx(redis.total_gb)
    assert redis.maxmemory_gb == pytest.approx(redis.total_gb / m.WATERMARK)
    peak = 2e6 / 86_400 * m.PEAK_FACTOR
    assert redis.write_cores == pytest.approx(peak * 100e-6)
    reads = 2e5 * m.READS_PER_DAILY_PLAYER / 86_400 * m.PEAK_FACTOR
    assert redis.read_cores_per_shard == pytest.approx(
        reads * (0.5 * 10 + 0.3 * 50 + 0.2 * 20) / 1e6
    )
    api = (peak * 400 + reads * (0.5 * 200 + 0.3 * 300 + 0.2 * 250)) / 1e6
    assert step.api_cores == pytest.approx(api / m.PROCESS_CORE_BUDGET)


def test_postgres_cores_and_disk_at_1m_players() -> None:
    pg = m.plan(1_000_000, FIGURES).postgres
    peak = 2e6 / 86_400 * m.PEAK_FACTOR

    # One session in ten (a daily player's first of the day) opens board rows.
    assert pg.cores == pytest.approx(peak * (0.1 * 60 + 0.9 * 40) / 1e6 / m.PG_CORE_BUDGET)
    assert pg.sessions_gb_per_day == pytest.approx(2e6 * 300 / 1e9)
    rows_a_day = 1e6 * (0.2 / 1 + 0.35 / 7 + 0.5 / 30)
    assert pg.board_gb_per_day == pytest.approx(rows_a_day * 150 * m.BOARD_SCORES_BLOAT / 1e9)
    assert pg.wal_gb_per_day == pytest.approx(2e6 * 1_000 / 1e9)
    assert pg.retention_months is None


STEPS = [1_000_000, 3_000_000, 10_000_000, 30_000_000, 100_000_000, 300_000_000]


def test_every_need_grows_with_the_players() -> None:
    steps = m.plan_all(FIGURES, tuple(STEPS))

    for smaller, larger in itertools.pairwise(steps):
        assert larger.redis.gb["boards"] > smaller.redis.gb["boards"]
        assert larger.redis.shards >= smaller.redis.shards
        assert larger.redis.write_cores > smaller.redis.write_cores
        assert larger.redis.read_cores_per_shard > smaller.redis.read_cores_per_shard
        assert larger.api_cores > smaller.api_cores
        assert larger.postgres.cores > smaller.postgres.cores
        assert larger.postgres.gb_per_month > smaller.postgres.gb_per_month
        assert larger.redis.window_s <= smaller.redis.window_s


def test_every_primary_of_a_plan_fits_and_one_fewer_would_not() -> None:
    for players in STEPS:
        redis = m.plan(players, FIGURES).redis
        assert m.fits(redis)
        assert redis.largest_primary_gb <= m.PRIMARY_DATASET_MAX_GB
        if redis.shards > 1:
            fewer = m.redis_at(m.Load.of(players), FIGURES, redis.window_s, redis.shards - 1)
            assert not m.fits(fewer)


def test_shards_begin_when_one_primary_no_longer_holds_the_members() -> None:
    # No idempotency memory: the window decides nothing; 885 B per player on one primary.
    figures = dataclasses.replace(FIGURES, idempotency_key_bytes=0.0)

    at_20m = m.plan(20_000_000, figures)  # 17.7 GB + a 0.3 GB stream
    at_40m = m.plan(40_000_000, figures)  # 35.4 GB: two primaries of 16.7 GB + 2 GB of names

    assert at_20m.redis.shards == 1
    assert setting(at_20m, "RANKER_BOARD_SHARDS", figures) is None
    assert setting(at_20m, "RANKER_REDIS_URL", figures) == "redis://<the primary>"
    assert at_40m.redis.shards == 2
    assert at_40m.redis.largest_primary_gb == pytest.approx((33.4 + 0.6) / 2 + 2.0)
    assert setting(at_40m, "RANKER_BOARD_SHARDS", figures) == "2"
    assert setting(at_40m, "RANKER_REDIS_URL", figures) == "redis+cluster://<any node>"


def test_shards_begin_when_one_main_thread_no_longer_takes_the_writes() -> None:
    # 2 ms of Redis per submission: 1M players' 69 submissions/s take 14% of a core, 10M's 139%.
    figures = dataclasses.replace(FIGURES, redis_submit_us=2_000.0)

    assert m.plan(1_000_000, figures).redis.shards == 1
    redis = m.plan(10_000_000, figures).redis
    assert redis.shards == math.ceil(694.4 * 2_000e-6 / m.REDIS_CORE_BUDGET)
    assert redis.write_load <= m.REDIS_CORE_BUDGET


def test_the_window_is_shortened_only_where_it_saves_a_primary() -> None:
    small, large = m.plan(1_000_000, FIGURES), m.plan(100_000_000, FIGURES)

    assert small.redis.window_s == m.DEFAULT_WINDOW_S
    assert setting(small, "RANKER_IDEMPOTENCY_TTL_S") is None
    assert large.redis.window_s < m.DEFAULT_WINDOW_S
    assert setting(large, "RANKER_IDEMPOTENCY_TTL_S") == str(large.redis.window_s)
    at_default = m.redis_at(large.load, FIGURES, m.DEFAULT_WINDOW_S, large.redis.shards)
    assert not m.fits(at_default)
    # Never shorter than the shortest the model offers (game servers' retries).
    assert large.redis.window_s >= min(m.WINDOWS_S)


def test_reads_move_to_replicas_exactly_when_a_primary_has_no_room_left_for_them() -> None:
    for players in STEPS:
        redis = m.plan(players, FIGURES).redis
        spare = m.REDIS_CORE_BUDGET - redis.write_load
        assert redis.read_from_replicas == (redis.read_cores_per_shard > spare)
        if redis.read_from_replicas:
            room = redis.replicas_per_primary * spare
            assert room >= redis.read_cores_per_shard > room - spare


def test_replica_reads_flip_on_with_a_costly_read() -> None:
    costly = dataclasses.replace(
        FIGURES, redis_read_us={"rank": 10.0, "top": 2_000.0, "around": 20.0}
    )

    cheap_step, costly_step = m.plan(10_000_000, FIGURES), m.plan(10_000_000, costly)

    assert setting(cheap_step, "RANKER_READ_FROM_REPLICAS") is None
    assert setting(costly_step, "RANKER_READ_FROM_REPLICAS", costly) == "true"
    # 2,778 reads/s x (0.5 x 10 + 0.3 x 2,000 + 0.2 x 20) us = 1.69 cores per shard; a
    # replica applies its primary's 694 submissions/s (0.07 of a core), 0.43 left for reads.
    assert costly_step.redis.read_cores_per_shard == pytest.approx(2_777.8 * 609e-6, rel=1e-4)
    assert costly_step.redis.replicas_per_primary == 4


def test_a_replica_to_fail_over_to_once_a_rebuild_takes_too_long() -> None:
    fast = m.plan(1_000_000, FIGURES)  # 8.35M members / 500k/s + 2M keys / 100k/s = 37 s
    slow_figures = dataclasses.replace(FIGURES, rebuild_keys_per_s=40_000.0)  # 67 s
    slow = m.plan(1_000_000, slow_figures)

    assert fast.redis.rebuild_s == pytest.approx(8.35e6 / 500_000 + 2e6 / 100_000)
    assert slow.redis.rebuild_s > m.REBUILD_OUTAGE_MAX_S
    assert fast.redis.replicas_per_primary == 0
    assert setting(fast, "RANKER_REDIS_MIN_REPLICAS_ACK") is None
    assert slow.redis.replicas_per_primary == 1
    assert setting(slow, "RANKER_REDIS_MIN_REPLICAS_ACK", slow_figures) == "1"


def test_the_backlog_grows_past_its_default_when_it_no_longer_rides_out_an_outage() -> None:
    small = m.plan(1_000_000, FIGURES)
    figures = dataclasses.replace(FIGURES, idempotency_key_bytes=0.0, board_member_bytes=1.0)
    # 6,944 submissions/s: 0.69 of a core on one primary, so two shards of 3,472/s.
    large = m.plan(100_000_000, figures)

    assert setting(small, "RANKER_MAX_BACKLOG") is None
    assert large.redis.shards == 2
    assert large.redis.max_backlog == 2_100_000  # 3,472/s x 600 s, rounded up
    assert setting(large, "RANKER_MAX_BACKLOG", figures) == "2100000"


def test_retention_is_set_when_the_sessions_outgrow_the_disk_budget() -> None:
    # Sessions take 18 kB per player a month: 24 months fit 2 TB below 4.6M players.
    assert m.plan(1_000_000, FIGURES).postgres.retention_months is None
    at_10m = m.plan(10_000_000, FIGURES)
    assert at_10m.postgres.retention_months == 11  # 2,000 GB / 180 GB a month
    assert setting(at_10m, "RANKER_SESSIONS_RETENTION_MONTHS") == "11"
    at_100m = m.plan(100_000_000, FIGURES).postgres
    assert at_100m.retention_months == 1 and not at_100m.over_budget
    heavy = dataclasses.replace(FIGURES, pg_session_bytes=1_000.0)
    assert m.plan(100_000_000, heavy).postgres.over_budget


def test_every_step_names_every_setting_the_model_decides() -> None:
    names = {
        "RANKER_REDIS_URL",
        "RANKER_BOARD_SHARDS",
        "RANKER_READ_FROM_REPLICAS",
        "RANKER_REDIS_MIN_REPLICAS_ACK",
        "RANKER_IDEMPOTENCY_TTL_S",
        "RANKER_MAX_BACKLOG",
        "RANKER_SESSIONS_RETENTION_MONTHS",
    }
    for step in m.plan_all(FIGURES):
        found = settings_of(step, FIGURES)
        assert {s.name for s in found} == names
        assert all(s.why for s in found)


def test_the_board_set_is_the_benchmarks_five_boards() -> None:
    defined = {board["id"]: board for board in tomllib.loads(FIVE_BOARDS)["board"]}
    modelled = {b.id: b for b in m.BOARD_SET if b.reset != "never"}

    assert set(defined) == set(modelled)
    for board_id, board in defined.items():
        assert modelled[board_id].reset == board["reset"]
        assert modelled[board_id].retain_periods == board["retain_periods"]
