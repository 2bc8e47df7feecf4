"""loadgen without ranker: the mix, the schedule, the statistics, the verdict, the options, and
runs against a tiny aiohttp server in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from loadgen import cli
from loadgen.report import format_report
from loadgen.runner import LoadConfig, run_load
from loadgen.schedule import Schedule
from loadgen.stats import Latencies, Recorder
from loadgen.verdict import verdict
from loadgen.workload import MixError, Workload, parse_mix
from ranker.models import SubmitRequest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# -- the mix ----------------------------------------------------------------------------------


def test_the_mix_parses_ratios_by_kind() -> None:
    assert parse_mix("submit=1, top=2,rank=7") == {"submit": 1.0, "top": 2.0, "rank": 7.0}
    assert parse_mix("around=0.5,rank=0") == {"around": 0.5, "rank": 0.0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected kind=ratio"),
        ("submit", "expected kind=ratio"),
        ("=3", "expected kind=ratio"),
        ("submit=x", "not a number"),
        ("submit=-1", ">= 0"),
        ("submit=nan", "finite"),
        ("jump=1", "unknown kind 'jump'"),
        ("mix=1", "unknown kind 'mix'"),
        ("rank=1,rank=2", "named twice"),
        ("rank=0,top=0", "no kind with a ratio above 0"),
    ],
)
def test_a_bad_mix_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(MixError, match=message):
        parse_mix(text)


def workload(ratios: dict[str, float], seed: int = 7) -> Workload:
    return Workload(
        "http://svc/",
        ratios,
        players=50,
        limit=10,
        modes=("solo", "team"),
        rng=random.Random(seed),
        run_id="r1",
    )


def test_the_mix_draws_kinds_by_their_ratios_reproducibly() -> None:
    draws = workload({"submit": 1, "rank": 3, "top": 0})
    kinds = [draws.next().kind for _ in range(4000)]
    again = workload({"submit": 1, "rank": 3, "top": 0})

    assert set(kinds) == {"submit", "rank"}
    assert 0.70 < kinds.count("rank") / len(kinds) < 0.80
    assert [again.next().kind for _ in range(4000)] == kinds


def test_requests_hit_the_api_paths_and_submit_bodies_are_valid_and_unique() -> None:
    draws = workload({"rank": 1})
    rank, top = draws.request("rank"), draws.request("top")
    around = draws.request("around")
    submits = [draws.request("submit") for _ in range(3)]

    assert rank.method == "GET" and rank.url.startswith("http://svc/api/leaderboard/rank/")
    assert top.url == "http://svc/api/leaderboard/top?limit=10"
    assert around.url.startswith("http://svc/api/leaderboard/around/") and "?n=5" in around.url
    bodies = [SubmitRequest.model_validate_json(s.body or b"") for s in submits]
    assert all(s.method == "POST" and s.url.endswith("/submit") for s in submits)
    assert all(1 <= b.user_id <= 50 and 1 <= b.score <= 10_000 for b in bodies)
    assert {b.game_mode for b in bodies} <= {"solo", "team"}
    assert len({b.session_id for b in bodies}) == 3
    with pytest.raises(ValueError, match="unknown request kind"):
        draws.request("scan")


# -- the schedule -----------------------------------------------------------------------------


def test_request_i_is_due_at_start_plus_i_over_rate() -> None:
    schedule = Schedule.for_span(rate=200.0, start=10.0, span_s=1.0)

    assert schedule.count == 200
    assert [schedule.due_at(i) for i in (0, 1, 100, 199)] == pytest.approx(
        [10.0, 10.005, 10.5, 10.995]
    )


def test_everything_due_goes_out_in_one_batch_and_nothing_twice() -> None:
    schedule = Schedule(rate=100.0, start=0.0, count=50)

    assert list(schedule.take_due(-0.5)) == []
    assert list(schedule.take_due(0.0)) == [0]
    assert schedule.wait_s(0.0) == pytest.approx(0.01)
    # A wake-up 0.1 s late catches up on the ten requests that fell due meanwhile.
    assert list(schedule.take_due(0.1)) == list(range(1, 11))
    assert list(schedule.take_due(0.1)) == []
    assert list(schedule.take_due(99.0)) == list(range(11, 50))
    assert schedule.finished


@pytest.mark.parametrize(
    ("wait_s", "sleep_s"), [(0.0, 0.001), (0.0004, 0.001), (0.002, 0.002), (0.0023, 0.003)]
)
def test_the_sender_sleeps_whole_timer_ticks_and_never_less_than_one(
    wait_s: float, sleep_s: float
) -> None:
    schedule = Schedule(rate=1.0, start=10.0, count=5)
    schedule.take_due(10.0)  # the next one is due at 11.0

    assert schedule.sleep_s(11.0 - wait_s) == pytest.approx(sleep_s)


def test_a_schedule_needs_a_positive_rate() -> None:
    with pytest.raises(ValueError, match="rate"):
        Schedule(rate=0.0, start=0.0, count=1)


# -- the statistics ---------------------------------------------------------------------------


def test_percentiles_match_the_recorded_values() -> None:
    latencies = Latencies()
    for ms in range(1, 1001):  # 1 ms, 2 ms, ... 1000 ms, once each
        latencies.record(ms / 1000)

    summary = latencies.summary()

    expected = {"p50": 500, "p90": 900, "p95": 950, "p99": 990, "p99.9": 999, "max": 1000}
    assert summary == pytest.approx({**expected, "mean": 500.5}, rel=1e-3)  # 3 significant digits


def test_an_empty_histogram_summarises_to_zeros_and_huge_values_are_clamped() -> None:
    assert set(Latencies().summary().values()) == {0.0}
    latencies = Latencies()
    latencies.record(90.0)  # beyond the 60 s range: counted as 60 s, not lost
    assert latencies.summary()["max"] == pytest.approx(60_000, rel=1e-3)


def test_outcomes_are_classified_and_the_timeline_keeps_empty_seconds() -> None:
    recorder = Recorder(["rank", "top"], window_start=100.0)
    recorder.response("rank", 200, began=100.0, ended=100.010)
    recorder.response("rank", 404, began=100.0, ended=100.020)  # no score yet: expected
    recorder.response("top", 404, began=102.0, ended=102.5)  # top never answers 404
    recorder.response("top", 503, began=102.0, ended=102.5)
    recorder.transport_error(ConnectionResetError(), ended=103.0)

    assert (recorder.ok, recorder.not_found, recorder.count) == (1, 1, 5)
    assert recorder.errors == {"404": 1, "503": 1, "ConnectionResetError": 1}
    timeline = recorder.timeline()
    assert [(row["t"], row["count"]) for row in timeline] == [(0, 2), (1, 0), (2, 2)]
    assert timeline[0]["max"] == pytest.approx(20, rel=1e-3)
    assert timeline[2]["p50"] == pytest.approx(500, rel=1e-3)


# -- the verdict ------------------------------------------------------------------------------


def test_a_loadgen_that_kept_up_gets_no_verdict() -> None:
    assert verdict(cpu_percent=40, send_lag_p99_ms=0.5, dropped=0, max_in_flight=10) is None
    assert verdict(cpu_percent=40, send_lag_p99_ms=None, dropped=0, max_in_flight=10) is None


@pytest.mark.parametrize(
    ("cpu", "lag", "dropped", "says"),
    [
        (97.0, 0.5, 0, "CPU 97% of one core"),
        (97.0, None, 0, "CPU 97% of one core"),  # closed loop: CPU only
        (40.0, 25.0, 0, "send lag p99 25.0 ms"),
        (40.0, 0.5, 3, "3 due requests not sent"),
    ],
)
def test_the_verdict_names_each_reason(
    cpu: float, lag: float | None, dropped: int, says: str
) -> None:
    reasons = verdict(cpu_percent=cpu, send_lag_p99_ms=lag, dropped=dropped, max_in_flight=10)

    assert reasons is not None and says in reasons


def test_all_reasons_are_given_together() -> None:
    reasons = verdict(cpu_percent=99, send_lag_p99_ms=50, dropped=1, max_in_flight=10) or ""

    assert [part.split(" ")[0] for part in reasons.split("; ")] == ["CPU", "behind", "1"]


# -- the options ------------------------------------------------------------------------------


def parse(*argv: str) -> LoadConfig:
    parser = cli.build_parser()
    return cli.config_from_args(parser, parser.parse_args(argv))


def test_the_defaults_describe_a_mix_at_the_given_rate() -> None:
    config = parse("--rate", "500")

    assert (config.url, config.workload, config.rate, config.open_loop) == (
        "http://127.0.0.1:8000",
        "mix",
        500.0,
        True,
    )
    assert (config.duration_s, config.warmup_s, config.players) == (10.0, 1.0, 10_000)
    assert config.mix == {"submit": 2.0, "top": 3.0, "rank": 5.0}
    assert (config.modes, config.max_in_flight, config.connections) == (("solo", "team"), 2000, 0)


def test_connections_alone_is_a_closed_loop_and_with_a_rate_caps_the_pool() -> None:
    closed = parse("--connections", "8", "--workload", "rank")
    capped = parse("--rate", "100", "--connections", "4", "--mix", "top=1,rank=1")

    assert (closed.open_loop, closed.connections, closed.ratios()) == (False, 8, {"rank": 1.0})
    assert (capped.open_loop, capped.rate, capped.connections) == (True, 100.0, 4)
    assert capped.ratios() == {"top": 1.0, "rank": 1.0}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate", "-5"], "--rate: must be > 0, not -5"),
        (["--rate", "0"], "--rate: must be > 0"),
        (["--rate", "fast"], "not a number"),
        (["--connections", "0"], "--connections: must be >= 1"),
        (["--rate", "10", "--duration", "0"], "--duration: must be > 0"),
        (["--rate", "10", "--warmup", "-1"], "--warmup: must be >= 0"),
        (["--rate", "10", "--players", "0"], "--players: must be >= 1"),
        ([], "give --rate R (open loop) or --connections N (closed loop)"),
        (["--rate", "10", "--mix", "rank=1", "--workload", "top"], "--mix applies to"),
        (["--rate", "10", "--mix", "jump=1"], "unknown kind 'jump'"),
        (["--rate", "10", "--modes", "solo,no spaces"], "bad game mode 'no spaces'"),
        (["--rate", "10", "--workload", "scan"], "invalid choice"),
    ],
)
def test_unusable_options_are_refused_with_a_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_programmatic_config_is_validated_too() -> None:
    with pytest.raises(ValueError, match="closed loop"):
        LoadConfig(rate=None, connections=0)
    with pytest.raises(ValueError, match="rate must be"):
        LoadConfig(rate=-1.0)
    with pytest.raises(ValueError, match="unknown workload"):
        LoadConfig(rate=1.0, workload="scan")
    with pytest.raises(ValueError, match="url must start with http"):
        LoadConfig(rate=1.0, url="127.0.0.1:8000")
    with pytest.raises(ValueError, match="duration_s must be > 0"):
        LoadConfig(rate=1.0, duration_s=0)


# -- runs against a fake server ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """``handler`` for every path, on a free port of 127.0.0.1; yields the base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def ranker_like(request: web.Request) -> web.StreamResponse:
    """Answers like ranker: odd players have no score (404), submit bodies are validated."""
    path = request.path.removeprefix("/api/leaderboard")
    if path == "/submit":
        if request.content_type != "application/json":
            return web.json_response({"title": "unsupported"}, status=415)
        body = SubmitRequest.model_validate_json(await request.read())
        return web.json_response({"user_id": body.user_id, "duplicate": False})
    if path.startswith(("/rank/", "/around/")) and int(path.rsplit("/", 1)[1]) % 2:
        return web.json_response({"title": "not found"}, status=404)
    return web.json_response([{"rank": 1, "user_id": 2, "total_score": 3}])


@pytest.fixture
async def fake() -> AsyncIterator[str]:
    async with serve(ranker_like) as url:
        yield url


def config(url: str, **overrides: Any) -> LoadConfig:
    values: dict[str, Any] = {
        "url": url,
        "rate": 200.0,
        "duration_s": 0.5,
        "warmup_s": 0.0,
        "players": 100,
        "seed": 1,
        **overrides,
    }
    return LoadConfig(**values)


async def test_an_open_loop_mix_sends_each_kind_and_counts_404s_apart(fake: str) -> None:
    mix = {"submit": 1.0, "top": 1.0, "rank": 1.0, "around": 1.0}
    result = await run_load(config(fake, workload="mix", mix=mix))

    assert result.mode == "open" and result.errors == {} and result.dropped == 0
    assert result.count == 100 == result.ok + result.not_found
    assert result.not_found > 0  # odd players of rank and around
    assert set(result.kind_counts) == set(result.per_kind) == set(mix)
    assert result.achieved_rate > 0 and result.timeline
    assert result.latency_ms["max"] >= result.latency_ms["p50"] > 0
    json.dumps(result.to_dict())  # JSON-ready
    assert "latency" in format_report(result)


async def test_a_closed_loop_sends_back_to_back(fake: str) -> None:
    result = await run_load(config(fake, rate=None, connections=2, workload="submit"))

    assert (result.mode, result.target_rate, result.send_lag_ms) == ("closed", None, {})
    assert result.count > 0 and result.ok == result.count


async def test_warmup_requests_are_sent_but_not_recorded(fake: str) -> None:
    result = await run_load(config(fake, rate=100.0, duration_s=0.3, warmup_s=0.3))

    assert result.count == 30


@contextlib.asynccontextmanager
async def serialized(stall: Callable[[], Awaitable[None] | None]) -> AsyncIterator[str]:
    """A server answering one request at a time; the 10th request calls ``stall`` first."""
    lock = asyncio.Lock()
    seen = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal seen
        async with lock:
            seen += 1
            if seen == 10 and (pending := stall()) is not None:
                await pending
            return web.json_response([])

    async with serve(handler) as url:
        yield url


async def test_a_server_stall_counts_for_every_request_scheduled_behind_it() -> None:
    # 100 req/s for 1 s; the 10th request takes 200 ms and the server answers one at a time,
    # so about 20 requests due during the stall wait behind it: from 200 ms down to ~0.
    async with serialized(lambda: asyncio.sleep(0.2)) as url:
        result = await run_load(config(url, workload="top", rate=100.0, duration_s=1.0))

    assert result.count == 100 and result.failed == 0
    assert result.latency_ms["max"] >= 180
    assert result.latency_ms["p99"] >= 150
    assert result.latency_ms["p90"] >= 50  # ~20 % of requests were delayed


async def test_a_stall_of_the_loadgen_itself_counts_from_the_due_time() -> None:
    # Blocking the event loop freezes the sender too: the requests due meanwhile leave late,
    # all at once. Timed from their actual send they would look fast; from their due time
    # they carry the stall, and the send lag shows the loadgen fell behind its schedule.
    async with serialized(lambda: time.sleep(0.2)) as url:
        result = await run_load(config(url, workload="top", rate=100.0, duration_s=1.0))

    assert result.latency_ms["p99"] >= 150
    assert result.send_lag_ms["max"] >= 150
    assert result.bottleneck is not None and "behind its schedule" in result.bottleneck


async def test_requests_beyond_max_in_flight_are_dropped_not_queued() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.3)
        return web.json_response([])

    async with serve(slow) as url:
        result = await run_load(config(url, workload="top", max_in_flight=5, duration_s=0.2))

    assert result.dropped > 0 and result.count + result.dropped == 40
    assert result.bottleneck is not None and "not sent" in result.bottleneck


async def test_the_command_writes_json_and_a_plot_and_exits_0(fake: str, tmp_path: Path) -> None:
    argv = ["--url", fake, "--rate", "100", "--duration", "0.5", "--warmup", "0.1"]
    argv += ["--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")]

    # In a thread: the command runs its own event loop, the fake server needs this one.
    status = await asyncio.to_thread(cli.main, argv)

    assert status == 0
    assert json.loads((tmp_path / "r.json").read_text())["mode"] == "open"
    assert (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


async def test_an_unwritable_output_is_a_one_line_failure(
    fake: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--url", fake, "--rate", "20", "--duration", "0.1", "--warmup", "0"]
    argv += ["--json", str(tmp_path / "missing" / "r.json")]

    status = await asyncio.to_thread(cli.main, argv)

    assert status == 2
    assert "loadgen: cannot write" in capsys.readouterr().err


async def test_the_command_exits_1_when_requests_fail(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def failing(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500)

    async with serve(failing) as url:
        argv = ["--url", url, "--workload", "top", "--rate", "50", "--duration", "0.2"]
        status = await asyncio.to_thread(cli.main, [*argv, "--warmup", "0"])

    assert status == 1
    assert "errors     500: 10" in capsys.readouterr().out


async def test_no_answer_at_all_counts_as_transport_errors() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    result = await run_load(config(f"http://127.0.0.1:{port}", workload="top", duration_s=0.1))

    assert result.failed == result.count == 20
    assert list(result.errors) == ["ClientConnectorError"]
