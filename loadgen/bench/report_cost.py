"""What a request and a persisted event cost in CPU time: the table "Cost per request" of
BENCHMARKS.md (this run beside the run before) and the drains' CPU time per event."""

from __future__ import annotations

import statistics
from typing import Any

from loadgen.bench.run import TARGET_RATE

#: The routes of the HTTP phase (``r["http"]``) and of the boards phase (``r["boards"]``), each
#: measured at ``TARGET_RATE``, open loop: one rate for all, so that the figures compare.
HTTP_ROUTES = ("rank", "top", "around", "submit", "mix")
BOARD_ROUTES = ("board-top", "board-player", "board-around", "board-lookup")


def cost_us(r: dict[str, Any]) -> dict[str, list[float]]:
    """Each route's service CPU time per request at ``TARGET_RATE``, in microseconds, one figure
    per run in the order they ran; a route the results lack is left out. Results of a version
    that kept one figure (its median-latency run's) give that one."""
    found: dict[str, list[float]] = {}
    for route in HTTP_ROUTES:
        run = r.get("http", {}).get(route, {}).get(str(TARGET_RATE))
        if run is not None:
            found[route] = _us(run.get("cpu_runs_ms") or [run.get("service_cpu_ms_per_request")])
    for route in BOARD_ROUTES:
        runs = r.get("boards", {}).get(route)
        if runs:
            found[route] = _us([run.get("service_cpu_ms_per_request") for run in runs])
    return {route: runs for route, runs in found.items() if runs}


def _us(values_ms: list[float | None]) -> list[float]:
    return [value * 1000 for value in values_ms if value is not None]


def cost_section(r: dict[str, Any]) -> list[str]:
    """The table "Cost per request": the run before (``r["previous"]``) and this run."""
    now = cost_us(r)
    before = r.get("previous", {}).get("cost_us_per_request", {})
    if not now:
        return []
    lines = [
        "",
        "## Cost per request",
        "",
        f"Service CPU time per request, in microseconds, at {TARGET_RATE:,} req/s (open loop) "
        "for every route the benchmark drives: the API's process and the worker's (the load "
        "generator excluded). The routes of the HTTP section run on `ranker serve --no-worker` "
        "with `ranker worker` beside it; the board reads (global board) on the boards phase's "
        "`ranker serve`, the worker inside it. This run's figure is the median of its runs; "
        "the run before's is from the `results.json` this run replaced.",
        "",
        "| route | run before, us | this run, us | this run's runs, us |",
        "| --- | ---: | ---: | --- |",
    ]
    for route in (*HTTP_ROUTES, *BOARD_ROUTES):
        runs = now.get(route, [])
        old = before.get(route, [])
        lines.append(
            f"| {route} | {_median(old)} | {_median(runs)} | "
            f"{', '.join(f'{x:,.0f}' for x in runs)} |"
        )
    return lines


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f}" if values else "-"


def drain_cpu_line(rounds: list[dict[str, Any]]) -> list[str]:
    """The line of a drain's CPU time per persisted event, per round (none for results made
    before it was measured)."""
    if not rounds or "worker_cpu_us_per_event" not in rounds[0]:
        return []
    postgres = [round_["postgres_cpu_us_per_event"] for round_ in rounds]
    worker = [round_["worker_cpu_us_per_event"] for round_ in rounds]
    server = (
        "not measured (no PostgreSQL process of this machine)"
        if all(x is None for x in postgres)
        else _per_event(postgres)
    )
    return [
        "- CPU time per persisted event, per round, from the worker's first read to the empty "
        f"backlog: PostgreSQL (the postmaster and every process it started) {server}; the "
        f"worker {_per_event(worker)}"
    ]


def _per_event(values: list[float | None]) -> str:
    return ", ".join("-" if x is None else f"{x:.1f}" for x in values) + " us"
