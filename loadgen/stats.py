"""What a run measured: latency histograms (total, per kind, per second), outcomes, send lag,
and the snapshot of all that a progress display shows while the run goes.

Latencies are recorded in HdrHistograms in microseconds, from 1 us to 60 s with 3 significant
digits: percentiles are within 0.1 %, and memory stays fixed however long a run lasts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]  # ships no type hints

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}
#: A 404 of these kinds means "this player has no score yet": an answer, not a failure.
EXPECTED_404_KINDS = frozenset({"rank", "around"})


class Histogram(Protocol):
    """The part of ``hdrh.histogram.HdrHistogram`` used here."""

    def record_value(self, value: int) -> bool: ...
    def get_percentile_to_value_dict(self, percentiles: list[float]) -> dict[float, int]: ...
    def get_max_value(self) -> int: ...


def new_histogram() -> Histogram:
    """An empty latency histogram (microseconds, 1 us .. 60 s, 3 significant digits)."""
    histogram: Histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
    return histogram


class Latencies:
    """Durations in an HdrHistogram, plus their exact sum for the mean.

    The sum is kept because hdrh computes a mean by walking every bucket in Python (tens of
    ms per histogram), which a timeline of one histogram per second cannot afford.
    """

    def __init__(self) -> None:
        self.histogram = new_histogram()
        self.count = 0
        self.sum_us = 0

    def record(self, seconds: float) -> None:
        """Record a duration given in seconds.

        Values outside the histogram's range are clamped rather than dropped (hdrh would
        silently ignore them): a 90 s stall counts as 60 s, never as nothing.
        """
        value_us = min(HIGHEST_US, max(LOWEST_US, round(seconds * 1e6)))
        self.histogram.record_value(value_us)
        self.count += 1
        self.sum_us += value_us

    def summary(self) -> dict[str, float]:
        """p50, p90, p95, p99, p99.9, max and mean in milliseconds; all 0 when nothing was
        recorded."""
        if self.count == 0:
            return {name: 0.0 for name in [*PERCENTILES, "max", "mean"]}
        # One pass over the buckets for all percentiles (hdrh walks them in Python per query).
        values = self.histogram.get_percentile_to_value_dict(list(PERCENTILES.values()))
        summary = {name: values[percentile] / 1000 for name, percentile in PERCENTILES.items()}
        summary["max"] = self.histogram.get_max_value() / 1000
        summary["mean"] = round(self.sum_us / self.count / 1000, 3)
        return summary


class Recorder:
    """Collects the outcome of every request due inside the measurement window.

    ``window_start`` (a ``time.perf_counter`` value) is the end of the warm-up; the per-second
    timeline counts each response in the second, from there, in which it ended, so that a
    stall shows as a dip in the count followed by a second of high latency. Responses are
    recorded in the order they end, so a second is summarised into its row, and its histogram
    let go, as soon as the next one begins: an hour-long run keeps one histogram, not 3,600.
    """

    def __init__(self, kinds: Iterable[str], window_start: float) -> None:
        self.window_start = window_start
        self.total = Latencies()
        self.by_kind = {kind: Latencies() for kind in kinds}
        self.second = 0
        self.this_second = Latencies()
        self.rows: list[dict[str, float]] = []
        self.send_lag = Latencies()
        self.ok = 0
        self.not_found = 0
        self.errors: Counter[str] = Counter()
        self.dropped = 0
        self.last_end = window_start

    def response(self, kind: str, status: int, began: float, ended: float) -> None:
        """A response of ``status`` to a request due at ``began`` that ended at ``ended``."""
        if 200 <= status < 300:
            self.ok += 1
        elif status == 404 and kind in EXPECTED_404_KINDS:
            self.not_found += 1
        else:
            self.errors[str(status)] += 1
        latency_s = ended - began
        self.total.record(latency_s)
        self.by_kind[kind].record(latency_s)
        second = int(ended - self.window_start)
        if second > self.second:
            self._close_seconds(until=second)
        self.this_second.record(latency_s)
        self.last_end = max(self.last_end, ended)

    def _close_seconds(self, until: int) -> None:
        # A second with no response at all gets its row of zeros: a total stall stays visible.
        while self.second < until:
            self.rows.append(_row(self.second, self.this_second))
            self.second += 1
            self.this_second = Latencies()

    def transport_error(self, exc: BaseException, ended: float) -> None:
        """A request that got no HTTP response at all: counted by exception type."""
        self.errors[type(exc).__name__] += 1
        self.last_end = max(self.last_end, ended)

    @property
    def count(self) -> int:
        """Every request that ended: answered (any status) or failed in transport."""
        return self.ok + self.not_found + sum(self.errors.values())

    def snapshot(
        self,
        elapsed_s: float,
        refused: Mapping[tuple[str, int], str] | None = None,
        final: bool = False,
    ) -> Snapshot:
        """The window so far, ``elapsed_s`` after the run began (warm-up included), with the
        run's ``refused`` requests (they are not the recorder's: it sees no warm-up).

        The p99 comes from the same histogram as the final report's, so the two cannot disagree;
        summarising it walks its buckets once (about a millisecond), which is why a display
        takes a snapshot a few times a second, never per request.
        """
        return Snapshot(
            elapsed_s=elapsed_s,
            count=self.count,
            failed=sum(self.errors.values()),
            dropped=self.dropped,
            p99_ms=self.total.summary()["p99"],
            refused=dict(refused or {}),
            final=final,
        )

    def timeline(self) -> list[dict[str, float]]:
        """One row per second of the window: ``t``, ``count``, ``p50``, ``p99``, ``max`` (ms).

        Seconds in which no response ended get a row of zeros; the second in progress (the
        last one, usually partial) is included once something ended in it.
        """
        current = [_row(self.second, self.this_second)] if self.this_second.count else []
        return [*self.rows, *current]


@dataclass(frozen=True)
class Snapshot:
    """A run so far, as a progress display shows it: the counts of the report's requests line
    and the p99 of its latency line, over the part of the window that has passed."""

    elapsed_s: float  # since the run began, warm-up included
    count: int  # requests of the window that ended
    failed: int  # of them, the report's "failed": error statuses and transport errors
    dropped: int  # open loop: due while max_in_flight were outstanding, never sent
    p99_ms: float  # of the answers so far; 0 before the first
    #: (kind, 401, 403 or 429) -> the service's reason, of each refusal seen so far, warm-up
    #: included: the run's first requests are the ones that find a missing key.
    refused: Mapping[tuple[str, int], str]
    final: bool = False  # the last snapshot: the run has ended


def _row(second: int, latencies: Latencies) -> dict[str, float]:
    summary = latencies.summary()
    return {
        "t": second,
        "count": latencies.count,
        "p50": summary["p50"],
        "p99": summary["p99"],
        "max": summary["max"],
    }
