"""The human report of a run. When the loadgen itself was the limit (``verdict``), it says so in
one line that starts with "loadgen was the bottleneck"."""

from __future__ import annotations

from loadgen.runner import LoadResult

LATENCY_KEYS = ("p50", "p90", "p99", "p99.9", "max", "mean")


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
