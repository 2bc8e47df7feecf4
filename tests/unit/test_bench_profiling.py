"""The profile phase's reading of py-spy's collapsed stacks (``loadgen.bench.profiling``) and the
cost per request read from results (``loadgen.bench.report_cost``)."""

from __future__ import annotations

from loadgen.bench.profiling import OTHER, RANKER_OWN, area_of, frames_of, summarise
from loadgen.bench.report_cost import cost_section, cost_us, drain_cpu_line

ROOT = (
    "<module> (ranker/__main__.py:7);serve (ranker/cli/commands.py:186);"
    "Server.run (uvicorn/server.py:86);Runner.run (asyncio/runners.py:118)"
)
ROUTE = ROOT + ";Route.handle (starlette/routing.py:289)"
HANDLER = ROUTE + ";guarded.<locals>.decorate.<locals>.wrapper (ranker/api/guards.py:130)"


def test_a_frame_is_its_function_and_file_without_the_line() -> None:
    assert frames_of("f (a/b.py:3);Class.g (<string>:1);odd") == [
        ("f", "a/b.py"),
        ("Class.g", "<string>"),
        ("odd", ""),
    ]


def test_the_innermost_frame_with_an_area_decides() -> None:
    redis = HANDLER + ";Ranking.submit (ranker/ranking.py:9);execute (redis/asyncio/client.py:1)"
    # The standard library passes to its caller: asyncio's streams under redis-py are Redis.
    writes = redis + ";StreamWriter.writelines (asyncio/streams.py:346)"

    assert area_of(frames_of(redis)) == "the Redis call (redis-py)"
    assert area_of(frames_of(writes)) == "the Redis call (redis-py)"
    assert area_of(frames_of(ROOT)) == "event loop (asyncio, uvloop)"
    assert area_of(frames_of(ROUTE)) == "Starlette routing and middleware"
    assert area_of(frames_of(HANDLER)) == "auth + limits"


def test_ranker_code_in_no_area_keeps_what_it_calls_from_its_wrappers() -> None:
    uuid = HANDLER + ";Ranking.submit (ranker/ranking.py:9);uuid4 (uuid.py:723)"

    assert area_of(frames_of(uuid)) == RANKER_OWN
    assert area_of(frames_of("thread_main (threading.py:1)")) == OTHER


def test_area_by_function_tells_encoding_from_validation_in_pydantic() -> None:
    dump = HANDLER + ";BaseModel.model_dump (pydantic/main.py:4)"
    check = HANDLER + ";BaseModel.__init__ (pydantic/main.py:2)"
    timing = ROUTE + ";observed.<locals>.decorate.<locals>.wrapper (ranker/api/guards.py:31)"

    assert area_of(frames_of(dump)) == "response encoding"
    assert area_of(frames_of(check)) == "input validation (pydantic, ranker/api/inputs.py, models)"
    assert area_of(frames_of(timing)) == "metrics (prometheus_client)"


def test_summarise_adds_counts_by_area_and_self_time_by_function() -> None:
    lines = [
        f"{ROOT} 6",
        f"{ROUTE} 3",
        f"{ROUTE.replace(':289)', ':300)')} 1",  # another line of the same function
        "",
        "not a sample",
    ]

    summary = summarise(lines)

    assert summary["samples"] == 10
    assert summary["areas"][0] == {
        "name": "event loop (asyncio, uvloop)",
        "samples": 6,
        "share": 0.6,
    }
    assert summary["top_self"][1] == {
        "name": "Route.handle (starlette/routing.py)",
        "samples": 4,
        "share": 0.4,
    }


def test_cost_per_request_reads_every_run_and_an_older_results_single_figure() -> None:
    results = {
        "http": {
            "rank": {"1000": {"cpu_runs_ms": [0.3, 0.2, 0.4], "service_cpu_ms_per_request": 0.2}},
            "top": {"1000": {"service_cpu_ms_per_request": 0.5}},  # before every run was kept
            "mix": {"500": {"service_cpu_ms_per_request": 0.5}},  # not at the target rate
        },
        "boards": {"board-top": [{"service_cpu_ms_per_request": 0.25}]},
        "previous": {"cost_us_per_request": {"rank": [310.0]}},
    }

    assert cost_us(results) == {"rank": [300.0, 200.0, 400.0], "top": [500.0], "board-top": [250.0]}
    table = "\n".join(cost_section(results))
    assert "| rank | 310 | 300 | 300, 200, 400 |" in table
    assert "| mix | - | - |  |" in table


def test_a_drain_without_postgres_processes_says_so() -> None:
    rounds = [{"worker_cpu_us_per_event": 9.5, "postgres_cpu_us_per_event": None}]

    (line,) = drain_cpu_line(rounds)

    assert "not measured" in line and "worker 9.5 us" in line
    assert drain_cpu_line([{"rate": 1.0}]) == []
