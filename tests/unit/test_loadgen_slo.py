"""loadgen's ``--slo``: the objectives parsed, refused with a reason, judged against a result, and
the command's lines and exit status against a tiny aiohttp server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from loadgen import cli
from loadgen.runner import LoadResult
from loadgen.slo import SloError, check_kinds, evaluate, format_outcomes, parse_slo
from tests.unit.test_loadgen import parse, serve

# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "op", "bound"),
    [
        ("p99<50ms", "p99", "<", 50.0),
        ("p99.9 <= 0.2 s", "p99.9", "<=", 200.0),
        ("P95<500US", "p95", "<", 0.5),
        ("p50<1.5ms", "p50", "<", 1.5),
        ("max<2s", "max", "<", 2000.0),
        ("mean<3ms", "mean", "<", 3.0),
        ("errors<0.1%", "errors", "<", 0.1),
        ("errors<=0%", "errors", "<=", 0.0),  # no error at all
        ("rate>900", "rate", ">", 900.0),
        ("rate>=1e3/s", "rate", ">=", 1000.0),
        ("submit.p99<20ms", "submit.p99", "<", 20.0),
        ("board-top.p99.9<1s", "board-top.p99.9", "<", 1000.0),
    ],
)
def test_an_objective_parses_into_its_measure_bound_and_unit(
    text: str, name: str, op: str, bound: float
) -> None:
    (objective,) = parse_slo(text)

    assert (objective.name, objective.op) == (name, op)
    assert objective.bound == pytest.approx(bound)


def test_objectives_are_separated_by_commas_and_keep_their_order() -> None:
    objectives = parse_slo("p99<50ms, errors<0.1% ,rate>900,submit.p99<20ms")

    assert [o.text for o in objectives] == [
        "p99<50ms",
        "errors<0.1%",
        "rate>900",
        "submit.p99<20ms",
    ]
    assert [o.kind for o in objectives] == [None, None, None, "submit"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty objective"),
        ("p99<50ms,", "empty objective"),
        ("p99", "expected measure<value"),
        ("p99=50ms", "expected measure<value"),
        ("p99<50", "give a unit: us, ms or s"),
        ("p99<50m", "unknown unit 'm'"),
        ("p99<fast", "'fast' is not a number"),
        ("p99<-1ms", "finite number >= 0"),
        ("p99<1e999ms", "finite number >= 0"),
        ("p99<0ms", "can never be met"),
        ("p99>5ms", "p99 is an upper bound"),
        ("p75<5ms", "unknown measure 'p75'"),
        ("latency<5ms", "unknown measure 'latency'"),
        ("errors<1", "errors are a share in %"),
        ("errors<0%", "can never be met"),
        ("errors<101%", "at most 100%"),
        ("errors>1%", "errors is an upper bound"),
        ("rate<900", "the rate is a lower bound"),
        ("rate>9 rps", "a rate is in requests/s"),
        ("jump.p99<5ms", "unknown kind 'jump'"),
        ("submit.errors<1%", "only latencies may be given per kind"),
        ("p99<50ms,p99<=60ms", "'p99' is bounded twice"),
    ],
)
def test_a_malformed_objective_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(SloError, match=message):
        parse_slo(text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--slo", "p99<50"], "argument --slo: bad objective 'p99<50': give a unit"),
        (["--slo", "errors<1"], "argument --slo: bad objective 'errors<1': errors are a share"),
        (["--workload", "rank", "--slo", "submit.p99<5ms"], "this run sends no submit requests"),
        (["--mix", "submit=0,rank=1", "--slo", "submit.p99<5ms"], "sends no submit requests"),
    ],
)
def test_a_malformed_slo_is_a_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("--rate", "10", *argv)

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_per_kind_objective_is_checked_against_the_kinds_sent() -> None:
    objectives = parse_slo("submit.p99<20ms,p99<50ms")

    check_kinds(objectives, ["submit", "rank"])
    with pytest.raises(SloError, match="sends no submit requests"):
        check_kinds(objectives, ["rank"])


# -- evaluation -------------------------------------------------------------------------------


def latency(p99: float) -> dict[str, float]:
    return {"p50": p99 / 4, "p90": p99 / 2, "p95": p99 * 0.8, "p99": p99, "p99.9": p99 * 2}


def result(**overrides: Any) -> LoadResult:
    """A result of 1,000 answered requests: submit p99 20 ms, rank p99 2 ms, all 5 ms."""
    values: dict[str, Any] = {
        "workload": "mix",
        "mode": "open",
        "target_rate": 1000.0,
        "achieved_rate": 990.0,
        "duration_s": 1.0,
        "connections": 0,
        "max_in_flight": 2000,
        "count": 1000,
        "ok": 1000,
        "not_found": 0,
        "errors": {},
        "dropped": 0,
        "latency_ms": {**latency(5.0), "max": 30.0, "mean": 2.0},
        "per_kind": {
            "submit": {**latency(20.0), "max": 30.0, "mean": 6.0},
            "rank": {**latency(2.0), "max": 4.0, "mean": 1.0},
        },
        "kind_counts": {"submit": 200, "rank": 800},
        "send_lag_ms": {},
        "cpu_percent": 30.0,
        "bottleneck": None,
        **overrides,
    }
    return LoadResult(**values)


def judge(text: str, run: LoadResult) -> list[tuple[str, float | None, bool]]:
    return [(o.objective.text, o.measured, o.met) for o in evaluate(parse_slo(text), run)]


def test_latencies_are_judged_on_the_reports_own_percentiles() -> None:
    outcomes = judge("p99<6ms,p99.9<10ms,max<=30ms,submit.p99<20ms,rank.p99<0.01s", result())

    assert outcomes == [
        ("p99<6ms", 5.0, True),
        ("p99.9<10ms", 10.0, False),  # strictly below: equal misses
        ("max<=30ms", 30.0, True),
        ("submit.p99<20ms", 20.0, False),
        ("rank.p99<0.01s", 2.0, True),
    ]


def test_the_rate_is_the_achieved_rate() -> None:
    assert judge("rate>900", result()) == [("rate>900", 990.0, True)]
    assert judge("rate>=1000", result()) == [("rate>=1000", 990.0, False)]


def test_errors_are_the_failed_and_the_dropped_among_all_requests_due() -> None:
    # 990 answered (8 of them 503), 2 with no answer at all, 10 due and never sent: 20 of 1,010.
    run = result(count=1000, ok=980, not_found=10, errors={"503": 8, "TimeoutError": 2}, dropped=10)

    (outcome,) = evaluate(parse_slo("errors<2%"), run)

    assert outcome.measured == pytest.approx(100 * 20 / 1010)
    assert outcome.met
    assert outcome.shown == "1.98% (20 of 1010 requests, 10 of them dropped)"
    assert judge("errors<1.5%", run)[0][2] is False


def test_the_expected_404_is_no_error() -> None:
    run = result(ok=600, not_found=400)

    assert judge("errors<=0%", run) == [("errors<=0%", 0.0, True)]


def test_an_objective_measured_on_nothing_is_missed() -> None:
    nothing = result(count=5, ok=0, errors={"ClientConnectorError": 5}, kind_counts={}, per_kind={})
    empty = result(count=0, ok=0, kind_counts={}, per_kind={}, achieved_rate=0.0)

    assert judge("p99<1s,submit.p99<1s", nothing) == [
        ("p99<1s", None, False),  # transport errors have no latency: not a fast p99
        ("submit.p99<1s", None, False),
    ]
    assert judge("errors<100%,rate>=0", empty) == [
        ("errors<100%", None, False),
        ("rate>=0", 0.0, True),
    ]


def test_each_objective_gets_a_line_with_met_or_missed_and_the_value() -> None:
    outcomes = evaluate(parse_slo("p99<50ms,errors<0.1%,submit.p99<10ms"), result())

    assert format_outcomes(outcomes).splitlines() == [
        "slo        p99<50ms         met     5.00 ms",
        "slo        errors<0.1%      met     0% (0 of 1000 requests)",
        "slo        submit.p99<10ms  MISSED  20.00 ms",
    ]
    with_verdict = format_outcomes(outcomes, bottleneck="CPU 97% of one core")
    assert with_verdict.splitlines()[2].endswith("MISSED  20.00 ms  (loadgen was the bottleneck)")
    assert "bottleneck" not in with_verdict.splitlines()[0]
    # An error is the service's answer, not a slow loadgen's.
    failing = evaluate(parse_slo("errors<1%"), result(ok=900, errors={"503": 100}))
    assert format_outcomes(failing, bottleneck="CPU 97% of one core") == (
        "slo        errors<1%  MISSED  10% (100 of 1000 requests)"
    )


@pytest.mark.parametrize(
    ("text", "errors", "status"),
    [
        ("", {}, 0),
        ("", {"500": 1}, 1),  # no --slo: a failed request fails the run, as before
        ("p99<1s", {"500": 1}, 1),  # no errors objective: still
        ("errors<1%", {"500": 1}, 0),  # the errors objective says how many may fail
        ("errors<0.01%", {"500": 1}, 3),
        ("p99<1ms", {"500": 1}, 3),  # missed comes first: it says more
        ("p99<1ms", {}, 3),
    ],
)
def test_the_exit_status(text: str, errors: dict[str, int], status: int) -> None:
    run = result(errors=errors, ok=1000 - sum(errors.values()))
    objectives = parse_slo(text) if text else ()

    assert cli.exit_status(run, evaluate(objectives, run)) == status


# -- the command ------------------------------------------------------------------------------


async def answer(request: web.Request) -> web.StreamResponse:
    return web.json_response([])


async def test_an_objective_no_run_can_meet_exits_3_with_a_missed_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    async with serve(answer) as url:
        argv = ["--url", url, "--workload", "top", "--rate", "50", "--duration", "0.2"]
        argv += ["--warmup", "0", "--slo", "p99<0.001ms,errors<=0%", "--json", str(out)]
        status = await asyncio.to_thread(cli.main, argv)

    assert status == cli.EXIT_MISSED == 3
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1:3] for line in lines if line.startswith("slo ")] == [
        ["p99<0.001ms", "MISSED"],  # nothing is faster than the histogram's 1 us
        ["errors<=0%", "met"],
    ]
    assert json.loads(out.read_text())["slo"][0] == {
        "objective": "p99<0.001ms",
        "measured": pytest.approx(json.loads(out.read_text())["latency_ms"]["p99"]),
        "met": False,
    }


def report_lines(stdout: str) -> list[str]:
    """What each line of the report is (its first word), the ``slo`` lines left out, and the
    verdict's line too: whether this machine kept the loadgen on schedule is not the test's."""
    lines = [line for line in stdout.splitlines() if not line.startswith(("slo ", "loadgen was"))]
    return [line.split()[0] for line in lines]


async def test_lenient_objectives_exit_0_and_the_report_before_them_is_unchanged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with serve(answer) as url:
        argv = ["--url", url, "--workload", "top", "--rate", "50", "--duration", "0.2"]
        argv += ["--warmup", "0", "--progress", "none"]
        plain = await asyncio.to_thread(cli.main, argv)
        without = capsys.readouterr().out
        judged = await asyncio.to_thread(cli.main, [*argv, "--slo", "p99<60s,top.p50<60s,rate>1"])
        with_slo = capsys.readouterr().out

    assert plain == judged == 0
    assert report_lines(with_slo) == report_lines(without)
    assert [line.split()[2] for line in with_slo.splitlines() if line.startswith("slo ")] == [
        "met"
    ] * 3
