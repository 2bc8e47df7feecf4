"""The human report of a run, and the verdict on whether the loadgen itself was the limit.

A load generator that runs out of CPU, or falls behind its schedule, measures itself rather
than the service: its numbers are then a lower bound on throughput and an upper bound on
latency, and the report says so in one line that starts with "loadgen was the bottleneck".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loadgen.runner import LoadResult

#: Above this share of one core (the event loop runs on one), the loadgen limits the run.
CPU_LIMIT_PERCENT = 90.0
#: Open loop: a p99 of send lag above this means requests left noticeably after their due time.
SEND_LAG_P99_LIMIT_MS = 10.0
LATENCY_KEYS = ("p50", "p90", "p99", "p99.9", "max", "mean")


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


def latency_line(summary: dict[str, float]) -> str:
    """``p50 1.02  p90 2.31 ... mean 1.30 ms`` for a latency summary."""
    return "  ".join(f"{key} {summary[key]:.2f}" for key in LATENCY_KEYS) + " ms"


def _headline(result: LoadResult) -> str:
    if result.mode == "open":
        cap = f", {result.connections} connections" if result.connections else ""
        how = f"open loop at {result.target_rate:g} req/s{cap}"
    else:
        how = f"closed loop on {result.connections} connections"
    return f"loadgen: {result.workload}, {how}, {result.duration_s:g} s measured"


def format_report(result: LoadResult) -> str:
    """The run as a person reads it: rates, outcomes, latency (ms), CPU, and the verdict."""
    target = f"{result.target_rate:g} req/s" if result.target_rate else "none (closed loop)"
    lines = [
        _headline(result),
        f"rate       target {target}, achieved {result.achieved_rate:.1f} req/s",
        f"requests   {result.count}: ok {result.ok}, not found {result.not_found} "
        f"(player without a score: expected), failed {result.failed}, dropped {result.dropped}",
    ]
    if result.errors:
        errors = ", ".join(f"{name}: {n}" for name, n in sorted(result.errors.items()))
        lines.append(f"errors     {errors}")
    lines.append(f"latency    {latency_line(result.latency_ms)}")
    if len(result.per_kind) > 1:
        for kind, summary in result.per_kind.items():
            count = result.kind_counts.get(kind, 0)
            lines.append(f"  {kind:<8} {latency_line(summary)}  ({count} requests)")
    if result.send_lag_ms:
        lag = result.send_lag_ms
        lines.append(
            f"send lag   p50 {lag['p50']:.2f}  p99 {lag['p99']:.2f}  max {lag['max']:.2f} ms "
            "(how late requests left after their due time)"
        )
    lines.append(f"loadgen    CPU {result.cpu_percent:.1f}% of one core")
    if result.bottleneck:
        lines.append(f"loadgen was the bottleneck: {result.bottleneck}")
    return "\n".join(lines)
