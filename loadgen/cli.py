"""``python -m loadgen``: options, the run and its progress, the human report, ``--slo``,
``--json`` and ``--plot``.

``--rate R`` runs an open loop at R requests/s. ``--connections N`` without ``--rate`` runs a
closed loop of N back-to-back senders (maximum throughput). Both together run the open loop
with at most N TCP connections: requests due while all N are busy wait for one, and since the
latency runs from the due time, that wait is counted (it models a client with a fixed pool).

Progress goes to stderr (``loadgen.progress``): a live bar on a terminal, a plain line every few
seconds elsewhere; stdout has the report, then with ``--slo`` one line per objective
(``loadgen.slo``).

Exit status: 0; 1 when any request failed (a non-2xx answer other than the expected 404 of
rank/around for a player without a score, or no answer at all), unless an ``errors`` objective
says how many may; 2 for unusable options (a malformed ``--slo`` too) or an output file that
cannot be written; 3 when an objective of ``--slo`` was missed (before 1: it says more); 130
when interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from loadgen.plot import write_plot  # cheap: it imports matplotlib only to draw
from loadgen.progress import MODES, Display
from loadgen.report import format_report
from loadgen.runner import LoadConfig, LoadResult, run
from loadgen.slo import (
    Objective,
    Outcome,
    SloError,
    check_kinds,
    evaluate,
    format_outcomes,
    parse_slo,
)
from loadgen.workload import DEFAULT_MIX, WORKLOADS, MixError, parse_mix

#: The exit status of a run that missed an objective of ``--slo``.
EXIT_MISSED = 3


def _number(kind: type[float] | type[int], minimum: float, strict: bool) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` above ``minimum`` (or at least, if not strict)."""
    relation = ">" if strict else ">="

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, not {text}")
        return value

    return parse


POSITIVE = _number(float, 0, True)
NON_NEGATIVE = _number(float, 0, False)
COUNT = _number(int, 1, False)


def _mix(text: str) -> dict[str, float]:
    try:
        return parse_mix(text)
    except MixError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _slo(text: str) -> tuple[Objective, ...]:
    try:
        return parse_slo(text)
    except SloError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _modes(text: str) -> tuple[str, ...]:
    modes = tuple(mode.strip() for mode in text.split(",") if mode.strip())
    if not modes:
        raise argparse.ArgumentTypeError("name at least one game mode, e.g. solo,team")
    return modes


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m loadgen``."""
    parser = argparse.ArgumentParser(
        prog="python -m loadgen",
        description="Open-loop (--rate) or closed-loop (--connections) HTTP load for ranker.",
    )
    _add_pace_options(parser.add_argument_group("pace").add_argument)
    add = parser.add_argument_group("requests").add_argument
    add("--url", default="http://127.0.0.1:8000", help="the service [%(default)s]")
    add("--workload", choices=WORKLOADS, default="mix", help="what to send [%(default)s]")
    add("--players", type=COUNT, default=10_000, metavar="N", help="user ids 1..N [%(default)s]")
    default_mix = ",".join(f"{kind}={ratio:g}" for kind, ratio in DEFAULT_MIX.items())
    add("--mix", type=_mix, metavar="KIND=RATIO,...", help=f"mix ratios [{default_mix}]")
    add("--limit", type=COUNT, default=10, metavar="L", help="top's limit [%(default)s]")
    add("--modes", type=_modes, default="solo,team", help="submissions' game modes [%(default)s]")
    add("--seed", type=int, help="seed of the workload's random draws")
    add(
        "--api-key",
        default=os.environ.get("RANKER_API_KEY"),
        help="sent as 'Authorization: Bearer <key>' [$RANKER_API_KEY]",
    )
    add = parser.add_argument_group("output").add_argument
    add(
        "--slo",
        type=_slo,
        default=(),
        metavar="OBJECTIVES",
        help="e.g. 'p99<50ms,errors<0.1%%,rate>900,submit.p99<20ms': each met or MISSED, "
        f"exit {EXIT_MISSED} when one is missed",
    )
    add(
        "--progress",
        choices=MODES,
        default="auto",
        help="on stderr: a live bar (on a terminal), a line every 5 s (elsewhere), or none "
        "[%(default)s]",
    )
    add("--json", type=Path, metavar="PATH", help="write the result (and --slo's) as JSON")
    add("--plot", type=Path, metavar="PATH", help="write latency and rate per second as a PNG")
    return parser


def _add_pace_options(add: Callable[..., argparse.Action]) -> None:
    add("--rate", type=POSITIVE, metavar="R", help="requests/s on a fixed schedule (open loop)")
    add(
        "--connections",
        type=COUNT,
        metavar="N",
        help="without --rate: N back-to-back senders (closed loop); with it: a TCP pool cap",
    )
    add("--duration", type=POSITIVE, default=10.0, metavar="S", help="seconds measured [10]")
    add("--warmup", type=NON_NEGATIVE, default=1.0, metavar="S", help="seconds unrecorded [1]")
    add(
        "--max-in-flight",
        type=COUNT,
        default=2000,
        metavar="N",
        help="open loop: a request due while N are outstanding is dropped [%(default)s]",
    )


def config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> LoadConfig:
    """The run the parsed options describe; exits through ``parser.error`` when it cannot be."""
    if args.rate is None and args.connections is None:
        parser.error("give --rate R (open loop) or --connections N (closed loop)")
    if args.mix is not None and args.workload != "mix":
        parser.error(f"--mix applies to --workload mix, not {args.workload}")
    try:
        config = LoadConfig(
            url=args.url,
            workload=args.workload,
            rate=args.rate,
            connections=args.connections or 0,
            duration_s=args.duration,
            warmup_s=args.warmup,
            players=args.players,
            mix=args.mix or dict(DEFAULT_MIX),
            limit=args.limit,
            modes=args.modes,
            max_in_flight=args.max_in_flight,
            seed=args.seed,
            api_key=args.api_key,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        check_kinds(args.slo, [kind for kind, ratio in config.ratios().items() if ratio > 0])
    except SloError as exc:
        parser.error(f"argument --slo: {exc}")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load the options describe, print the report, write the files; the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(parser, args)
    display = Display(
        Console(stderr=True),
        args.progress,
        warmup_s=config.warmup_s,
        duration_s=config.duration_s,
        has_key=bool(config.api_key),
    )
    try:
        with display:
            result = run(config, watch=display)
    except KeyboardInterrupt:
        print("loadgen: interrupted", file=sys.stderr)
        return 130
    print(format_report(result))
    outcomes = evaluate(args.slo, result)
    if outcomes:
        print(format_outcomes(outcomes, result.bottleneck))
    try:
        if args.json is not None:
            data = result.to_dict()
            if outcomes:
                data["slo"] = [outcome.to_dict() for outcome in outcomes]
            args.json.write_text(json.dumps(data, indent=2) + "\n")
        if args.plot is not None:
            write_plot(result, args.plot)
    except OSError as exc:
        print(f"loadgen: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return exit_status(result, outcomes)


def exit_status(result: LoadResult, outcomes: Sequence[Outcome]) -> int:
    """3 when an objective was missed; else 1 when requests failed and no ``errors`` objective
    said how many may; else 0."""
    if any(not outcome.met for outcome in outcomes):
        return EXIT_MISSED
    judged = any(outcome.objective.measure == "errors" for outcome in outcomes)
    return 1 if result.failed and not judged else 0
