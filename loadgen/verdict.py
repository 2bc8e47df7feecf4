"""Whether the load generator itself was the limit of a run.

A load generator that runs out of CPU, or falls behind its schedule, measures itself rather
than the service: its numbers are then a lower bound on throughput and an upper bound on
latency.
"""

from __future__ import annotations

#: Above this share of one core (the event loop runs on one), the loadgen limits the run.
CPU_LIMIT_PERCENT = 90.0
#: Open loop: a p99 of send lag above this means requests left noticeably after their due time.
SEND_LAG_P99_LIMIT_MS = 10.0


def verdict(
    *,
    cpu_percent: float,
    send_lag_p99_ms: float | None,
    dropped: int,
    max_in_flight: int,
) -> str | None:
    """Why the loadgen may have limited the run, or None when it kept up.

    ``send_lag_p99_ms`` is None for a closed loop, which has no schedule to fall behind. In an
    open loop, dropped requests also make the result incomplete: they were due but never sent.
    """
    reasons = []
    if cpu_percent > CPU_LIMIT_PERCENT:
        reasons.append(f"CPU {cpu_percent:.0f}% of one core (> {CPU_LIMIT_PERCENT:.0f}%)")
    if send_lag_p99_ms is not None and send_lag_p99_ms > SEND_LAG_P99_LIMIT_MS:
        reasons.append(
            f"behind its schedule: send lag p99 {send_lag_p99_ms:.1f} ms "
            f"(> {SEND_LAG_P99_LIMIT_MS:.0f} ms)"
        )
    if dropped > 0:
        reasons.append(
            f"{dropped} due requests not sent: {max_in_flight} already in flight "
            "(--max-in-flight: the service, or the loadgen, fell behind the rate)"
        )
    return "; ".join(reasons) or None
