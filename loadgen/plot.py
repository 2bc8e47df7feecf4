"""A PNG of a run over time: p50, p99 and max latency per second, and the achieved rate.

matplotlib is imported here, inside the function, so that a run without ``--plot`` neither
pays for the import nor needs matplotlib installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from loadgen.runner import LoadResult

if TYPE_CHECKING:  # matplotlib is imported only to draw (write_plot)
    from matplotlib.axes import Axes


def write_plot(result: LoadResult, path: Path) -> None:
    """Write the timeline of ``result`` to ``path`` as a PNG.

    Seconds are counted from the end of the warm-up, by when responses ended; a second in
    which no response ended shows a rate of 0 and no latency point. The rate is drawn for
    the whole seconds of the window; the latency also for the partial second after it.
    """
    # Imported here: matplotlib is slow to import and only plots need it; and the backend must
    # be chosen before pyplot is imported.
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file only
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    fig, (latency, rate) = plt.subplots(2, 1, sharex=True, figsize=(10, 6.5))
    _plot_latency(latency, result)
    # 0.5, 2, 40 rather than powers of ten, on the minor ticks too (a run often spans a decade).
    latency.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    latency.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    _plot_rate(rate, result)
    loop = f"open loop, {result.target_rate:g} req/s" if result.target_rate else "closed loop"
    fig.suptitle(f"ranker loadgen: {result.workload} ({loop})")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def _plot_latency(axes: Axes, result: LoadResult) -> None:
    seconds = [row["t"] for row in result.timeline]
    for key, style in (("max", ":"), ("p99", "-"), ("p50", "--")):
        # Empty seconds have no latency: leave a gap instead of plotting a drop to 0.
        values = [row[key] if row["count"] else float("nan") for row in result.timeline]
        axes.plot(seconds, values, style, marker=".", label=key)
    axes.set_yscale("log")
    axes.set_ylabel("latency (ms)")
    axes.legend(loc="upper right")
    axes.grid(True, which="both", alpha=0.3)


def _plot_rate(axes: Axes, result: LoadResult) -> None:
    # Whole seconds of the window only: the partial second after it (the last responses
    # arriving) would look like a collapse of the rate.
    rows = [row for row in result.timeline if row["t"] + 1 <= result.duration_s]
    seconds = [row["t"] for row in rows]
    counts = [row["count"] for row in rows]
    axes.plot(seconds, counts, marker=".", label="achieved")
    if result.target_rate:
        axes.axhline(result.target_rate, color="grey", linestyle="--", label="target")
    axes.set_ylabel("requests / s")
    axes.set_xlabel("second of the run (after warm-up)")
    # Headroom above the highest line, so that a rate right on target is not drawn on the frame.
    axes.set_ylim(0, 1.2 * max([*counts, result.target_rate or 0.0, 1.0]))
    axes.legend(loc="lower right")
    axes.grid(True, alpha=0.3)
