"""``python -m loadgen.bench`` (``make bench``): see ``loadgen.bench.run`` for the phases."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loadgen.bench import report
from loadgen.bench.run import BenchConfig, run
from loadgen.bench.stream import STEPS


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its report; 1 when a target was missed."""
    parser = argparse.ArgumentParser(prog="python -m loadgen.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k players / 500k sessions")
    parser.add_argument("--players", type=int)
    parser.add_argument("--sessions", type=int)
    parser.add_argument("--rates", default="500,1000,2000", help="open-loop rates, req/s")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each run")
    parser.add_argument("--connections", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--drain-events", type=int, default=200_000)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each figure a target reads (median)"
    )
    parser.add_argument(
        "--stream-steps",
        default=",".join(map(str, STEPS)),
        help="live streams per step of the stream phase",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks"))
    parser.add_argument("--markdown", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument(
        "--notes",
        type=Path,
        default=Path("benchmarks/NOTES.md"),
        help="hand-written text appended to the report",
    )
    args = parser.parse_args(argv)
    players = args.players or (100_000 if args.quick else 1_000_000)
    config = BenchConfig(
        players=players,
        sessions=args.sessions or players * 5,
        rates=tuple(int(rate) for rate in args.rates.split(",")),
        duration_s=args.duration,
        warmup_s=args.warmup,
        connections=args.connections,
        open_connections=32,
        drain_events=args.drain_events,
        naive_s=min(10.0, args.duration),
        repeats=args.repeats,
        stream_steps=tuple(int(n) for n in args.stream_steps.split(",")),
    )
    # The run before's figures, read before anything of this run can replace its results.json.
    previous = report.previous_of(args.out)
    results = run(config)
    report.write(results, args.out, args.markdown, args.notes, previous)
    rows = report.verdicts(results)
    for name, value, bound, verdict, _ in rows:
        print(f"{verdict:12}  {name}: {value:,.2f} ({bound})")
    print(f"wrote {args.markdown} and {args.out}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
