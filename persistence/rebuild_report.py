"""What a rebuild reports, and the refusal of one while another runs (``persistence.rebuild``)."""

from __future__ import annotations

from dataclasses import dataclass

from ranker.errors import RankerError


class RebuildBusy(RankerError):
    """Another rebuild of the namespace holds the flag."""

    status = 409
    title = "Rebuild in progress"


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild did."""

    members: int
    stream_added: int
    stream_subtracted: int
    sessions_restored: int
    attempts: int
    duration_s: float
    #: How many board periods were loaded.
    periods: int = 0

    #: What a rebuild of every board shard adds up over the shards.
    SUMMED = ("members", "stream_added", "stream_subtracted", "sessions_restored", "duration_s")
