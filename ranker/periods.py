"""Periods of a board: which one an instant falls in, and the ones before it.

A board resets ``never``, ``daily``, ``weekly`` (ISO weeks, from Monday 00:00) or ``monthly``,
in an IANA time zone. A period is named by its id (``2026-12-01``, ``2026-W49``, ``2026-12``;
``all`` for a board that never resets) and spans ``[starts_at, ends_at)``. Nothing runs at a
boundary: the period of a session is computed from the instant it was accepted, so a service
that was down across a boundary neither loses a period nor resets one late.

Local midnights are resolved by ``zoneinfo``: where a time-zone change skips midnight, the
period starts at the change.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Reset = Literal["never", "daily", "weekly", "monthly"]
RESETS: tuple[Reset, ...] = ("never", "daily", "weekly", "monthly")
#: The one period of a board that never resets.
ALL = "all"
#: What a read may name as its period: a keyword, or an id of any reset.
PERIOD_PATTERN = r"^(current|previous|all|\d{4}-\d{2}-\d{2}|\d{4}-W\d{2}|\d{4}-\d{2})$"

_PATTERNS: dict[Reset, re.Pattern[str]] = {
    "never": re.compile(rf"^{ALL}$"),
    "daily": re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"),
    "weekly": re.compile(r"^(\d{4})-W(\d{2})$"),
    "monthly": re.compile(r"^(\d{4})-(\d{2})$"),
}


@dataclasses.dataclass(frozen=True, order=True)
class Period:
    """One period of a reset in a time zone: its id and its bounds (UTC; ``None``: unbounded)."""

    starts_at: datetime | None
    ends_at: datetime | None
    id: str


def period_at(reset: Reset, timezone: str, instant: datetime) -> Period:
    """The period containing ``instant`` (an aware datetime)."""
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    if reset == "never":
        return Period(None, None, ALL)
    local = instant.astimezone(ZoneInfo(timezone)).date()
    return _period_of_day(reset, timezone, local)


def period_by_id(reset: Reset, timezone: str, period_id: str) -> Period:
    """The period named ``period_id``; ``ValueError`` when it is not one of this reset."""
    match = _PATTERNS[reset].match(period_id)
    if match is None:
        raise ValueError(f"{period_id!r} is not a {reset} period id")
    if reset == "never":
        return Period(None, None, ALL)
    numbers = [int(part) for part in match.groups()]
    try:
        if reset == "daily":
            day = date(*numbers)
        elif reset == "weekly":
            day = date.fromisocalendar(numbers[0], numbers[1], 1)
        else:
            day = date(numbers[0], numbers[1], 1)
    except ValueError:
        raise ValueError(f"{period_id!r} is not a {reset} period id") from None
    period = _period_of_day(reset, timezone, day)
    if period.id != period_id:  # e.g. a zero-less or out-of-range spelling
        raise ValueError(f"{period_id!r} is not a {reset} period id")
    return period


def previous(reset: Reset, timezone: str, period: Period) -> Period | None:
    """The period before ``period`` (``None`` for a board that never resets)."""
    if period.starts_at is None:
        return None
    return period_at(reset, timezone, period.starts_at - timedelta(microseconds=1))


def _period_of_day(reset: Reset, timezone: str, day: date) -> Period:
    if reset == "daily":
        first, after = day, day + timedelta(days=1)
        name = first.isoformat()
    elif reset == "weekly":
        first = day - timedelta(days=day.weekday())
        after = first + timedelta(days=7)
        year, week, _ = first.isocalendar()
        name = f"{year}-W{week:02d}"
    else:
        first = day.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
        name = f"{first.year}-{first.month:02d}"
    zone = ZoneInfo(timezone)
    return Period(_midnight(first, zone), _midnight(after, zone), name)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``zone``, in UTC. A midnight a time-zone change skips
    is read with the offset before the change (PEP 495, ``fold=0``): the instant of the change,
    which is where that day begins."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


# -- The UTC months of the session log (game_sessions' partitions, retention) -------------------


def month_of(instant: datetime) -> datetime:
    """The first instant (UTC) of the UTC month that holds ``instant`` (an aware datetime)."""
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    return instant.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def months_after(month: datetime, months: int) -> datetime:
    """The first instant of the UTC month ``months`` after the one holding ``month`` (before
    it, for a negative number)."""
    first = month_of(month)
    index = first.year * 12 + first.month - 1 + months
    return first.replace(year=index // 12, month=index % 12 + 1)


def retention_closes(month: datetime, retention_months: int) -> datetime:
    """When the sessions of the UTC month holding ``month`` leave a retention of
    ``retention_months``: that many whole months after the month ends. From then on a session
    of it can no longer be voided alone, and its partition may be dropped (docs/design.md,
    "Partitions and retention")."""
    return months_after(month, 1 + retention_months)
