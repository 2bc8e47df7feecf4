"""Periods of daily, weekly and monthly boards (``ranker/periods.py``), in several time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ranker.periods import (
    ALL,
    RESETS,
    Reset,
    month_of,
    months_after,
    period_at,
    period_by_id,
    previous,
    retention_closes,
)

#: UTC, zones with daylight saving both sides of the equator, a change at midnight (Santiago),
#: a quarter-hour offset (Kathmandu) and a day skipped entirely (Apia, 30 December 2011).
ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "America/Santiago",
    "Australia/Sydney",
    "Asia/Kathmandu",
    "Pacific/Apia",
]
RESETTING: list[Reset] = ["daily", "weekly", "monthly"]
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(instant=instants, reset=st.sampled_from(RESETTING), zone=st.sampled_from(ZONES))
def test_a_period_contains_its_instant_and_its_neighbours_touch_it(
    instant: datetime, reset: Reset, zone: str
) -> None:
    period = period_at(reset, zone, instant)
    assert period.starts_at is not None and period.ends_at is not None
    assert period.starts_at <= instant < period.ends_at
    assert period_by_id(reset, zone, period.id) == period
    before = previous(reset, zone, period)
    assert before is not None and before.ends_at == period.starts_at and before.id < period.id
    after = period_at(reset, zone, period.ends_at)
    assert after.starts_at == period.ends_at and after.id > period.id


@pytest.mark.parametrize(
    ("reset", "last", "first"),
    [
        ("daily", "2026-12-31", "2027-01-01"),
        ("weekly", "2026-W53", "2027-W01"),  # 2026 has 53 ISO weeks
        ("monthly", "2026-12", "2027-01"),
    ],
)
def test_the_year_boundary(reset: Reset, last: str, first: str) -> None:
    midnight = datetime(2027, 1, 1, tzinfo=UTC)
    assert period_at(reset, "UTC", midnight - timedelta(microseconds=1)).id == last
    if reset == "weekly":  # the ISO week goes on into January: it ends on Monday 4 January
        assert period_at(reset, "UTC", midnight).id == last
        midnight = datetime(2027, 1, 4, tzinfo=UTC)
    assert period_at(reset, "UTC", midnight).id == first


def test_a_week_runs_from_monday_in_the_boards_time_zone() -> None:
    # Sunday 6 December 2026, 23:30 in Paris is Sunday 22:30 UTC; Monday 00:30 Paris is Sunday
    # 23:30 UTC: a UTC week and a Paris week disagree for that hour.
    sunday, monday = (
        datetime(2026, 12, 6, 22, 30, tzinfo=UTC),
        datetime(2026, 12, 6, 23, 30, tzinfo=UTC),
    )
    assert period_at("weekly", "Europe/Paris", sunday).id == "2026-W49"
    assert period_at("weekly", "Europe/Paris", monday).id == "2026-W50"
    assert period_at("weekly", "UTC", monday).id == "2026-W49"
    week = period_by_id("weekly", "Europe/Paris", "2026-W50")
    assert week.starts_at == datetime(2026, 12, 6, 23, 0, tzinfo=UTC)


def test_a_midnight_skipped_by_daylight_saving_starts_the_day_at_the_change() -> None:
    day = period_by_id("daily", "America/Santiago", "2026-09-06")
    assert day.starts_at == datetime(2026, 9, 6, 4, 0, tzinfo=UTC)
    assert day.ends_at is not None and day.ends_at - day.starts_at == timedelta(hours=23)


def test_a_board_that_never_resets_has_one_period() -> None:
    period = period_at("never", "UTC", datetime(2026, 12, 1, tzinfo=UTC))
    assert (
        period.id == ALL and period.starts_at is None and previous("never", "UTC", period) is None
    )
    assert period_by_id("never", "UTC", ALL) == period


@pytest.mark.parametrize(
    ("reset", "period_id"),
    [
        ("daily", "2026-13-01"),
        ("daily", "2026-02-30"),
        ("daily", "2026-1-01"),
        ("daily", "all"),
        ("weekly", "2026-W54"),
        ("weekly", "2027-W53"),  # 2027 has 52 ISO weeks
        ("weekly", "2026-W00"),
        ("monthly", "2026-00"),
        ("monthly", "2026-12-01"),
        ("never", "2026-12"),
    ],
)
def test_ids_that_name_no_period_are_refused(reset: Reset, period_id: str) -> None:
    with pytest.raises(ValueError, match="period id"):
        period_by_id(reset, "UTC", period_id)


def test_every_reset_is_covered() -> None:
    assert set(RESETS) == {"never", *RESETTING}


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_at("daily", "UTC", datetime(2026, 12, 1))


def test_the_month_of_the_session_log_is_the_utc_month() -> None:
    # 23:30 on 31 January in New York is already February in UTC.
    instant = datetime(2026, 2, 1, 4, 30, tzinfo=UTC)

    assert month_of(instant) == datetime(2026, 2, 1, tzinfo=UTC)
    assert month_of(datetime(2026, 2, 1, tzinfo=UTC) - timedelta(microseconds=1)) == datetime(
        2026, 1, 1, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="aware"):
        month_of(datetime(2026, 2, 1))


@given(instant=instants, months=st.integers(-30, 30))
def test_months_after_counts_calendar_months_across_years(instant: datetime, months: int) -> None:
    later = months_after(instant, months)
    first = month_of(instant)

    assert later.day == 1 and later.hour == 0 and later.tzinfo == UTC
    assert (later.year - first.year) * 12 + later.month - first.month == months
    assert months_after(later, -months) == first


def test_a_month_closes_its_retention_whole_months_after_it_ends() -> None:
    march = datetime(2026, 3, 17, 12, tzinfo=UTC)

    # Kept through April (one whole month after March ended), closed from May on.
    assert retention_closes(march, 1) == datetime(2026, 5, 1, tzinfo=UTC)
    assert retention_closes(datetime(2026, 11, 30, tzinfo=UTC), 3) == datetime(
        2027, 3, 1, tzinfo=UTC
    )
