"""loadgen against a real ``ranker serve``: every workload runs clean for about a second.

Smoke tests only: they assert that requests were sent, answered without errors and reported;
never how fast the service was, except through ``--slo`` with a bound no run can meet and with
bounds any run meets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from loadgen.plot import write_plot
from loadgen.runner import LoadConfig, LoadResult, run_load
from tests.fixtures.ranker import ROOT, WRITE_KEY, Processes

PLAYERS = 40
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def smoke(url: str, workload: str, rate: float | None = 200.0, connections: int = 0) -> LoadConfig:
    """About a second of ``workload`` (0.2 s of it warm-up) on a small set of players."""
    return LoadConfig(
        url=url,
        workload=workload,
        rate=rate,
        connections=connections,
        duration_s=0.8,
        warmup_s=0.2,
        players=PLAYERS,
        seed=3,
        api_key=WRITE_KEY,
    )


def assert_clean(result: LoadResult) -> None:
    assert result.count > 0, result
    assert result.errors == {} and result.dropped == 0, result
    assert result.achieved_rate > 0
    assert result.latency_ms["max"] > 0


async def test_every_workload_runs_clean_against_ranker(
    processes: Processes, loaded: None, tmp_path: Path
) -> None:
    url, _ = await processes.serve()
    # Scores first, so that rank and around mostly find their players (a 404 is fine too).
    seeded = await run_load(smoke(url, "submit"))
    assert_clean(seeded)
    assert seeded.ok == seeded.count

    results = {name: await run_load(smoke(url, name)) for name in ("rank", "top", "around")}
    results["mix"] = await run_load(smoke(url, "mix"))
    results["closed"] = await run_load(smoke(url, "submit", rate=None, connections=4))

    for result in results.values():
        assert_clean(result)
    assert results["rank"].ok > 0 and results["around"].ok > 0
    assert set(results["mix"].kind_counts) == {"submit", "top", "rank"}
    assert results["closed"].mode == "closed" and results["closed"].send_lag_ms == {}
    out = tmp_path / "mix.json"
    out.write_text(json.dumps(results["mix"].to_dict()))
    assert json.loads(out.read_text())["count"] == results["mix"].count
    write_plot(results["mix"], tmp_path / "mix.png")
    assert (tmp_path / "mix.png").read_bytes().startswith(PNG_MAGIC)


def loadgen(url: str, *argv: str, key: str | None = WRITE_KEY) -> subprocess.CompletedProcess[str]:
    """``python -m loadgen`` on the mix for a second against ``url``, with ``key`` in the
    environment, as an operator would pass it.

    The service is another process: blocking the test's event loop while it runs stalls nothing.
    """
    env = {name: value for name, value in os.environ.items() if name != "RANKER_API_KEY"}
    if key is not None:
        env["RANKER_API_KEY"] = key
    pace = ["--workload", "mix", "--rate", "200", "--duration", "1", "--warmup", "0.2"]
    return subprocess.run(
        [sys.executable, "-m", "loadgen", "--url", url, *pace, "--players", str(PLAYERS), *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_command_reports_and_exits_0_against_ranker(
    processes: Processes, loaded: None, tmp_path: Path
) -> None:
    url, _ = await processes.serve()
    out, png = tmp_path / "result.json", tmp_path / "result.png"

    done = loadgen(url, "--json", str(out), "--plot", str(png))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "loadgen: mix, open loop at 200 req/s" in done.stdout
    result = json.loads(out.read_text())
    assert result["count"] > 0 and result["errors"] == {} and result["achieved_rate"] > 0
    assert png.stat().st_size > 0 and png.read_bytes().startswith(PNG_MAGIC)


def slo_lines(stdout: str) -> list[list[str]]:
    """The objective and its verdict of each ``slo`` line."""
    return [line.split()[1:3] for line in stdout.splitlines() if line.startswith("slo ")]


async def test_an_slo_no_run_can_meet_exits_3_and_a_lenient_one_exits_0(
    processes: Processes, loaded: None
) -> None:
    url, _ = await processes.serve()

    # Nothing is faster than a microsecond, the histogram's floor; a minute, no request takes.
    missed = loadgen(url, "--slo", "p99<0.001ms,errors<=0%")
    met = loadgen(url, "--slo", "p99<60s,submit.p99<60s,errors<50%,rate>1")

    assert missed.returncode == 3, missed.stdout + missed.stderr
    assert slo_lines(missed.stdout) == [["p99<0.001ms", "MISSED"], ["errors<=0%", "met"]]
    assert met.returncode == 0, met.stdout + met.stderr
    assert [verdict for _, verdict in slo_lines(met.stdout)] == ["met"] * 4
    assert "loadgen: mix, open loop at 200 req/s" in met.stdout  # the report comes first


async def test_without_a_key_the_command_says_once_why_submits_fail(
    processes: Processes, loaded: None
) -> None:
    url, _ = await processes.serve()

    done = loadgen(url, key=None)

    assert done.returncode == 1, done.stdout + done.stderr
    (hint,) = [line for line in done.stderr.splitlines() if "refused" in line]  # said once
    assert hint.startswith("loadgen: submit refused 401 (this request needs an API key")
    assert hint.endswith("pass --api-key or set RANKER_API_KEY (`make run` prints a key)")
    assert "errors     401: " in done.stdout
