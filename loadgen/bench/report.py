"""BENCHMARKS.md, the JSON of every figure, and the plots, from the figures of one run."""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadgen.bench.profiling import section as profile_section
from loadgen.bench.report_boards import BOARD_TARGETS, boards_section
from loadgen.bench.report_cost import cost_section, cost_us, drain_cpu_line
from loadgen.bench.run import TARGET_RATE, WORKLOADS
from loadgen.bench.stream import section as stream_section
from loadgen.bench.targets import Target, fmt


def _at_target_rate(workload: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda r: r["http"][workload][str(TARGET_RATE)]


def _p99_target(workload: str, label: str) -> Target:
    run = _at_target_rate(workload)
    return Target(
        f"{label} p99 at {TARGET_RATE:,} req/s",
        "ms",
        lambda r: run(r)["latency_ms"]["p99"],
        "<=",
        10 if workload == "submit" else 5,
        lambda r: run(r)["runs"],
    )


#: The workloads the floor app serves too, in the order of the throughput table.
FLOOR_SHOWN = ("rank", "top", "around")


def _floor_target(workload: str) -> Target:
    return Target(
        f"{workload} max throughput / floor app's",
        "x",
        lambda r: statistics.median(r["floor"][workload]["ratios"]),
        ">=",
        1.0,  # at or above a bare app making one Redis call per request (issue 13)
        lambda r: r["floor"][workload]["ratios"],
    )


TARGETS: list[Target] = [
    _p99_target("rank", "rank"),
    _p99_target("top", "top"),
    _p99_target("around", "around"),
    _floor_target("rank"),
    _floor_target("top"),
    _floor_target("around"),
    Target("rank max throughput / naive design's", "x", lambda r: _naive(r, "rank"), ">=", 1000),
    Target("top max throughput / naive rank's", "x", lambda r: _naive(r, "top"), ">=", 1000),
    _p99_target("submit", "submit (worker in its own process)"),
    Target(
        f"worker lag p99 while submit runs at {TARGET_RATE:,} req/s",
        "s",
        lambda r: _at_target_rate("submit")(r)["worker_lag_s"]["p99"],
        "<=",
        1,
    ),
    Target(
        "write-behind drain",
        "events/s",
        lambda r: r["drain"]["rate"],
        ">=",
        20_000,
        lambda r: r["drain"]["runs"],
    ),
    Target(
        "rebuild / its floor",
        "x",
        lambda r: r["rebuild"]["duration_s"] / r["rebuild_floor"]["floor_s"],
        "<=",
        1.5,
    ),
    Target("seed of the data set (SQL)", "s", lambda r: r["seed"]["generate_s"], "<=", 60),
    Target("Redis bytes per player per board", "B", lambda r: _bytes_per_member(r), "<=", 100),
]


TARGETS += BOARD_TARGETS


def _naive(r: dict[str, Any], workload: str) -> float:
    return float(r["http"][workload]["max"]["achieved_rate"] / r["naive"]["rate"])


def _bytes_per_member(r: dict[str, Any]) -> float:
    boards = r["memory"]["boards"].values()
    return float(sum(b["bytes"] for b in boards) / max(1, sum(b["members"] for b in boards)))


def verdicts(results: dict[str, Any]) -> list[tuple[str, float, str, str, list[float]]]:
    """(target, measured, bound as text, met/missed, every run's figure) for every target."""
    rows: list[tuple[str, float, str, str, list[float]]] = []
    for target in TARGETS:
        bound = f"{target.op} {target.bound:,} {target.unit}"
        try:
            value = target.read(results)
            runs = target.runs(results) if target.runs else []
        except (KeyError, ZeroDivisionError):
            # A run with other rates (--rates) or a tiny smoke run has no such figure.
            rows.append((target.name, math.nan, bound, "not measured", []))
            continue
        rows.append((target.name, value, bound, "met" if target.met(value) else "MISSED", runs))
    return rows


def previous_of(out: Path) -> dict[str, Any] | None:
    """What the report shows of the run before (its ``results.json`` in ``out``, if any): the
    maximum rank and submit throughput, and the cost per request of every route."""
    path = out / "results.json"
    if not path.exists():
        return None
    old = json.loads(path.read_text())
    return {**_headline(old), "cost_us_per_request": cost_us(old)}


def write(
    results: dict[str, Any],
    out: Path,
    markdown: Path,
    notes: Path | None,
    previous: dict[str, Any] | None = None,
) -> None:
    """Write ``results.json``, the plots and a small raw profile into ``out`` and the report to
    ``markdown``. ``previous`` is ``previous_of(out)`` read before the run (read here when not
    given): the run before, for the columns "before"."""
    out.mkdir(parents=True, exist_ok=True)
    if "previous" not in results and (previous := previous or previous_of(out)) is not None:
        results["previous"] = previous
    profile = results.get("profile", {})
    raw_file = out / "profile-submit.txt"
    if (raw := profile.pop("raw", None)) is not None:
        raw_file.write_text(raw)
        profile["raw_file"] = os.path.relpath(raw_file, markdown.parent)
    else:
        raw_file.unlink(missing_ok=True)  # an earlier run's: not this run's stacks
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    plots = _plots(results, out)
    text = _markdown(results, [p.relative_to(markdown.parent) for p in plots])
    if notes and notes.exists():
        text += "\n" + notes.read_text()
    markdown.write_text(text)


def _markdown(r: dict[str, Any], plots: list[Path]) -> str:
    c = r["config"]
    lines = [
        "# ranker benchmarks",
        "",
        f"Generated by `make bench` ({c['players']:,} players, {c['sessions']:,} sessions) on "
        f"{r['machine']['cpus']} CPUs, {r['machine']['platform']}, Python "
        f"{r['machine']['python']}, {r['machine']['redis_server']}. The load generator runs on "
        "the same machine and is included in every figure. Every baseline was measured in the "
        "same run. Raw figures: `results.json` beside the plots.",
        "",
        "## Targets",
        "",
        f"Figures marked with their runs are the median of {c.get('repeats', 1)} runs; the "
        "runs are listed in the order they ran.",
        "",
        "| target | measured | bound | | runs |",
        "| --- | ---: | --- | --- | --- |",
    ]
    lines += [
        f"| {n} | {'-' if math.isnan(v) else fmt(v)} | {b} | {m} | "
        f"{', '.join(fmt(x) for x in runs)} |"
        for n, v, b, m, runs in verdicts(r)
    ]
    lines += _seed_section(r) + _http_section(r) + cost_section(r) + profile_section(r)
    lines += _edge_section(r) + _drain_section(r)
    lines += boards_section(r) + stream_section(r)
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p})" for p in plots]
    lines += ["", f"Consistency after the run: `ranker verify` said `{r['verify']}`.", ""]
    return "\n".join(lines)


def _seed_section(r: dict[str, Any]) -> list[str]:
    s, rb, fl = r["seed"], r["rebuild"], r["rebuild_floor"]
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in s["phases_s"].items())
    mem = r["memory"]["boards"]
    return [
        "",
        "## Seed, rebuild, memory",
        "",
        f"- seed (SQL, server-side): {s['generate_s']:.1f} s ({phases}); the whole `ranker seed` "
        f"including its rebuild: {s['total_s']:.1f} s",
        f"- rebuild of {rb['members']:,} members (all boards): {rb['duration_s']:.2f} s; its "
        f"floor, each half alone: reading the totals {fl['read_s']:.2f} s + loading the members "
        f"{fl['load_s']:.2f} s = {fl['floor_s']:.2f} s "
        f"(ratio {rb['duration_s'] / fl['floor_s']:.2f})",
        "- Redis memory per member: "
        + ", ".join(
            f"{board} {m['bytes_per_member']:.1f} B ({m['members']:,} members)"
            for board, m in mem.items()
        ),
    ]


def _http_section(r: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## HTTP: latency at fixed rates (open loop) and maximum throughput (closed loop)",
        "",
        "Open loop: requests leave on schedule whatever the service does, and latency counts "
        "from the scheduled time (no coordinated omission). The service is `ranker serve "
        "--no-worker` with one `ranker worker` process beside it; `cpu/req` is the CPU time of "
        "both per request. `around` runs at one rate only, for its cost per request.",
        "",
        "| workload | load | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
        "| errors | cpu/req ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workload, by_load in r["http"].items():
        for load, run in by_load.items():
            lat = run["latency_ms"]
            label = "closed loop, max" if load == "max" else f"{int(load):,} req/s"
            cpu = run.get("service_cpu_ms_per_request") or 0.0
            lines.append(
                f"| {workload} | {label} | {run['achieved_rate']:,.0f} | {lat['p50']:.2f} | "
                f"{lat['p90']:.2f} | {lat['p99']:.2f} | {lat['p99.9']:.2f} | {lat['max']:.2f} | "
                f"{sum(run['errors'].values())} | {cpu:.3f} |"
            )
    naive = r["naive"]
    lines += [
        "",
        "| maximum throughput | rank req/s | top req/s | around req/s |",
        "| --- | ---: | ---: | ---: |",
        "| ranker (one API process, median run) | "
        + " | ".join(f"{r['http'][w]['max']['achieved_rate']:,.0f}" for w in FLOOR_SHOWN)
        + " |",
        "| floor app on ranker's server (one Redis call per request, median run) | "
        + " | ".join(f"{r['floor'][w]['achieved_rate']:,.0f}" for w in FLOOR_SHOWN)
        + " |",
        "| floor app on stock uvicorn (median run) | "
        + " | ".join(f"{r['floor'][w]['stock']['achieved_rate']:,.0f}" for w in FLOOR_SHOWN)
        + " |",
        f"| naive design (`RANK() OVER` per lookup, PostgreSQL alone) | {naive['rate']:,.2f} | | |",
        "",
        f"The naive lookup took {naive['p50_ms']:,.0f} ms (median of {naive['lookups']}).",
    ]
    return lines


def _headline(r: dict[str, Any]) -> dict[str, float]:
    """A run's maximum rank and submit throughput (one ``ranker serve``, the http phase)."""
    try:
        return {w: float(r["http"][w]["max"]["achieved_rate"]) for w in ("rank", "submit")}
    except KeyError:
        return {}


def _edge_section(r: dict[str, Any]) -> list[str]:
    if "edge" not in r:
        return []
    lines = [
        "",
        "## The edge: HTTP stacks and abuse limits",
        "",
        "Maximum throughput (closed loop) of each variant, in rounds alternating the variants "
        "(`loadgen/bench/edge.py`); median round, every round listed. The ranker variants run "
        "without the worker; the figures of the HTTP section above with `ranker worker` in its "
        "own process beside the API.",
        "",
        "| variant | rank req/s | rounds | submit req/s | rounds |",
        "| --- | ---: | --- | ---: | --- |",
    ]
    for name, by_workload in r["edge"].items():
        cells = []
        for workload in ("rank", "submit"):
            run = by_workload.get(workload)
            if run is None:
                cells += ["", ""]
                continue
            rounds = ", ".join(f"{x:,.0f}" for x in run["runs"])
            cells += [f"{run['achieved_rate']:,.0f}", rounds]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    lines += _access_log_cost(r["edge"])
    if previous := r.get("previous"):
        lines += [
            "",
            f"The run before this one (the HTTP section's maximum, `ranker serve` and its "
            f"worker): rank {previous.get('rank', math.nan):,.0f} req/s, submit "
            f"{previous.get('submit', math.nan):,.0f} req/s; this run: rank "
            f"{_headline(r).get('rank', math.nan):,.0f}, submit "
            f"{_headline(r).get('submit', math.nan):,.0f}.",
        ]
    return lines


def _access_log_cost(edge: dict[str, Any]) -> list[str]:
    """The request log's cost: rank throughput with it on (as deployed) and off."""
    on = edge.get("ranker, guarded edge (`ranker serve`)", {}).get("rank")
    off = edge.get("ranker, guarded edge, request log off", {}).get("rank")
    if not on or not off:
        return []
    ratio = on["achieved_rate"] / off["achieved_rate"]
    cost_us = (on["service_cpu_ms_per_request"] - off["service_cpu_ms_per_request"]) * 1000
    return [
        "",
        f"The request log (one line per request, `RANKER_ACCESS_LOG`): rank "
        f"{on['achieved_rate']:,.0f} req/s with it on, {off['achieved_rate']:,.0f} off "
        f"({ratio:.2f}x); {cost_us:+.1f} us of service CPU per request.",
    ]


def _drain_section(r: dict[str, Any]) -> list[str]:
    d = r["drain"]
    lag = r["http"]["submit"].get(str(TARGET_RATE), {}).get("worker_lag_s")
    lines = [
        "",
        "## Write-behind",
        "",
        f"- drain of a backlog of {d['events']:,} events by one `ranker worker` "
        f"(concurrency {d['concurrency']}, batches of up to {d['batch_size']:,}): "
        f"{d['rate']:,.0f} events/s (median of "
        + ", ".join(f"{rate:,.0f}" for rate in d["runs"])
        + ")",
    ]
    if lag:
        lines.append(
            f"- worker lag while `submit` runs at {TARGET_RATE:,} req/s: p50 {lag['p50']:.3f} s, "
            f"p99 {lag['p99']:.3f} s, max {lag['max']:.3f} s (the worker in its own process)"
        )
    return lines + drain_cpu_line(d.get("rounds", []))


def _plots(r: dict[str, Any], out: Path) -> list[Path]:
    # Imported here: the backend must be chosen before pyplot is imported.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latency = out / "latency-by-rate.png"
    fig, axes = plt.subplots(1, len(WORKLOADS), figsize=(4 * len(WORKLOADS), 3.4), sharey=True)
    for ax, workload in zip(axes, WORKLOADS, strict=True):
        runs = {int(k): v for k, v in r["http"][workload].items() if k != "max"}
        rates = sorted(runs)
        for pct in ("p50", "p99", "p99.9"):
            ax.plot(rates, [runs[x]["latency_ms"][pct] for x in rates], marker="o", label=pct)
        ax.set_title(workload)
        ax.set_xlabel("req/s (open loop)")
    axes[0].set_ylabel("latency, ms")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(latency, dpi=110)
    plt.close(fig)

    throughput = out / "max-throughput.png"
    names = ["ranker rank", "floor rank", "ranker top", "floor top", "naive rank"]
    values = [
        r["http"]["rank"]["max"]["achieved_rate"],
        r["floor"]["rank"]["achieved_rate"],
        r["http"]["top"]["max"]["achieved_rate"],
        r["floor"]["top"]["achieved_rate"],
        r["naive"]["rate"],
    ]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.bar(names, values, color=["C0", "C7", "C0", "C7", "C3"])
    ax.set_yscale("log")
    ax.set_ylabel("requests/s (log)")
    fig.tight_layout()
    fig.savefig(throughput, dpi=110)
    plt.close(fig)

    lag = out / "worker-lag.png"
    run = r["http"]["submit"].get(str(TARGET_RATE), {})
    samples = run.get("worker_lag_s", {}).get("samples", [])
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot([t for t, _ in samples], [v * 1000 for _, v in samples])
    ax.set_xlabel(f"seconds of submit at {TARGET_RATE:,} req/s")
    ax.set_ylabel("worker lag, ms")
    fig.tight_layout()
    fig.savefig(lag, dpi=110)
    plt.close(fig)
    return [latency, throughput, lag]
