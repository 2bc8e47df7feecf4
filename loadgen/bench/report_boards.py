"""The targets and the section of BENCHMARKS.md of the five-board set (``loadgen.bench.boards``)."""

from __future__ import annotations

import statistics
from typing import Any

from loadgen.bench.boards import FLOOR_PREFIX
from loadgen.bench.report_cost import drain_cpu_line
from loadgen.bench.run import TARGET_RATE
from loadgen.bench.targets import Target, fmt


def _rates(runs: list[dict[str, Any]]) -> list[float]:
    return [float(run["achieved_rate"]) for run in runs]


def _floor_ratios(r: dict[str, Any]) -> list[float]:
    """ranker's five-board submit maximum / the submit floor app's, round by round."""
    five, floor = _rates(r["boards"]["submit_five"]), _rates(r["boards"]["submit_floor"])
    return [ours / theirs for ours, theirs in zip(five, floor, strict=True)]


def _board_p99(kind: str) -> Target:
    return Target(
        f"{kind} p99 at {TARGET_RATE:,} req/s (global board)",
        "ms",
        lambda r: statistics.median(run["latency_ms"]["p99"] for run in r["boards"][kind]),
        "<=",
        5,
        lambda r: [run["latency_ms"]["p99"] for run in r["boards"][kind]],
    )


#: The targets of the five-board set (``loadgen.bench.boards``).
BOARD_TARGETS: list[Target] = [
    Target(
        "submit max throughput, five boards / two",
        "x",
        lambda r: (
            statistics.median(_rates(r["boards"]["submit_five"]))
            / statistics.median(_rates(r["boards"]["submit_two"]))
        ),
        ">=",
        0.7,
        lambda r: [
            five / two
            for five, two in zip(
                _rates(r["boards"]["submit_five"]), _rates(r["boards"]["submit_two"]), strict=True
            )
        ],
    ),
    Target(
        "submit max throughput, five boards / submit floor app",
        "x",
        lambda r: statistics.median(_floor_ratios(r)),
        ">=",
        0.6,
        _floor_ratios,
    ),
    Target(
        "write-behind drain, five boards",
        "events/s",
        lambda r: statistics.median(d["rate"] for d in r["boards"]["drain"]),
        ">=",
        20_000,
        lambda r: [d["rate"] for d in r["boards"]["drain"]],
    ),
    *(_board_p99(kind) for kind in ("board-top", "board-player", "board-around", "board-lookup")),
    Target(
        "a page by cursor near the end / at the top",
        "x",
        lambda r: r["boards"]["walk"]["end_ms"] / r["boards"]["walk"]["top_ms"],
        "<=",
        1.5,
    ),
    Target(
        "Redis bytes per member, five boards",
        "B",
        lambda r: (
            sum(b["bytes"] for b in r["boards"]["memory"].values())
            / max(1, sum(b["members"] for b in r["boards"]["memory"].values()))
        ),
        "<=",
        100,
    ),
]


def boards_section(r: dict[str, Any]) -> list[str]:
    if "boards" not in r:
        return []
    b = r["boards"]
    two, five = _rates(b["submit_two"]), _rates(b["submit_five"])
    lines = [
        "",
        "## Boards: the five-board set",
        "",
        "Every session counts on `global`, its mode's board, a daily best, a weekly sum and a "
        "monthly best (`loadgen/bench/boards.py`), beside the built-in two measured just before "
        "in the same run.",
        "",
        f"- submit at its maximum (closed loop), req/s per round: two boards "
        f"{', '.join(fmt(x) for x in two)}; five boards {', '.join(fmt(x) for x in five)}",
        f"- service CPU per submission, median round: two boards "
        f"{statistics.median(x['service_cpu_ms_per_request'] for x in b['submit_two']):.3f} ms, "
        f"five boards "
        f"{statistics.median(x['service_cpu_ms_per_request'] for x in b['submit_five']):.3f} ms",
        *_floor_lines(b),
        f"- write-behind drain with five boards, events/s per round: "
        f"{', '.join(fmt(d['rate']) for d in b['drain'])}",
        *drain_cpu_line(b["drain"]),
        f"- a page of 100 by cursor: {b['walk']['top_ms']:.2f} ms at the top, "
        f"{b['walk']['end_ms']:.2f} ms at offset {b['walk']['end_offset']:,} of "
        f"{b['walk']['members']:,} (median of the pages walked)",
        "- Redis bytes per member: "
        + ", ".join(
            f"{slot} {m['bytes_per_member']:.1f} B ({m['members']:,} members)"
            for slot, m in b["memory"].items()
        ),
        "",
        f"| board read at {TARGET_RATE:,} req/s | p50 ms | p99 ms (per round) | cpu/req ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind in ("board-top", "board-player", "board-around", "board-lookup"):
        runs = b[kind]
        lines.append(
            f"| {kind} | {statistics.median(x['latency_ms']['p50'] for x in runs):.2f} | "
            f"{', '.join(fmt(x['latency_ms']['p99']) for x in runs)} | "
            f"{statistics.median(x['service_cpu_ms_per_request'] or 0 for x in runs):.3f} |"
        )
    lines += ["", f"After it, `ranker verify --deep` said `{r.get('verify_boards', '')}`."]
    return lines


def _floor_lines(b: dict[str, Any]) -> list[str]:
    """The submit floor app's rounds, beside ranker's five-board ones."""
    if not b.get("submit_floor"):
        return []
    cpu = statistics.median(x["service_cpu_ms_per_request"] for x in b["submit_floor"])
    return [
        "- the submit floor app (`loadgen/bench/floor.py`: the body parsed with orjson, one "
        "EVALSHA doing the Redis work of ranker's submission on the five boards, no auth, no "
        f"validation), on copies of the boards under `{FLOOR_PREFIX}:` with a stream of its "
        "own, in rounds alternating with the five-board rounds above, req/s per round: "
        f"{', '.join(fmt(x) for x in _rates(b['submit_floor']))}; service CPU per submission, "
        f"median round: {cpu:.3f} ms. Its {b.get('floor_keys_dropped', 0):,} keys were "
        "deleted after its last round, so the drain and `verify --deep` below never see them",
    ]
