"""The ``ranker`` commands as a person runs them: exit status and one-line reasons."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ranker.dev import servers as devservers
from ranker.settings import Settings
from tests.fixtures.ranker import Processes, auth_headers, wait_for


def test_migrate_applies_the_schema_once_then_reports_it_up_to_date(
    make_settings: Callable[..., Settings],
    processes: Processes,
    make_database: Callable[..., str],
) -> None:
    settings = make_settings(database_url=make_database(migrated=False))
    first = processes.run("migrate", settings=settings)
    second = processes.run("migrate", settings=settings)

    assert (first.returncode, first.stdout.strip()) == (0, "applied migrations [1, 2, 3, 4, 5]")
    assert (second.returncode, second.stdout.strip()) == (0, "database schema is up to date")


def test_seed_then_verify_then_seed_if_empty_does_nothing(processes: Processes) -> None:
    seeded = processes.run("seed", "--players", "300", "--sessions", "1500")
    verified = processes.run("verify", "--deep")
    again = processes.run("seed", "--players", "300", "--sessions", "1500", "--if-empty")

    assert seeded.returncode == 0, seeded.stderr
    assert "seeded 300 players, 1500 sessions" in seeded.stdout
    assert verified.returncode == 0 and verified.stdout.startswith("ok: ")
    assert (again.returncode, again.stdout.strip()) == (0, "boards are not empty: not seeding")


def test_a_second_seed_adds_to_the_totals_of_the_first(processes: Processes) -> None:
    first = processes.run("seed", "--players", "200", "--sessions", "1000")
    second = processes.run("seed", "--players", "300", "--sessions", "1000")
    verified = processes.run("verify", "--deep")

    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_worker_burst_persists_the_backlog_and_exits(
    client: httpx.AsyncClient, processes: Processes
) -> None:
    for user_id in (1, 2, 3):
        await client.post("/api/leaderboard/submit", json={"user_id": user_id, "score": 4})

    result = processes.run("worker", "--burst")

    assert (result.returncode, result.stdout.strip()) == (0, "persisted 3 events")
    assert processes.run("verify", "--wait-s", "0").returncode == 0


def test_an_unreachable_database_is_a_one_line_failure(
    make_settings: Callable[..., Settings], processes: Processes
) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{devservers.free_port()}/ranker"
    settings = make_settings(database_url=closed)

    for command in ("migrate", "verify", "rebuild"):
        result = processes.run(command, settings=settings)
        assert result.returncode == 1, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"ranker {command}: PostgreSQL failed")


def test_invalid_settings_are_a_one_line_failure(settings: Settings, processes: Processes) -> None:
    bad = settings.model_copy(update={"game_modes": ("solo", "Not A Mode")})

    result = processes.run("verify", settings=bad)

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("ranker: invalid settings:")


async def test_serve_with_two_api_processes_adds_up_their_metrics(
    processes: Processes, loaded: None
) -> None:
    url, _ = await processes.serve("--workers", "2", "--no-worker")
    # A new connection per request: the kernel hands them to either process.
    async with httpx.AsyncClient(
        base_url=url, headers={"Connection": "close", **auth_headers()}
    ) as http:
        for n in range(20):
            body = {"user_id": 1 + n % 3, "score": 1, "session_id": f"mp-{n}"}
            assert (await http.post("/api/leaderboard/submit", json=body)).status_code == 200
        text = (await http.get("/metrics")).text

    accepted = [
        line
        for line in text.splitlines()
        if line.startswith('ranker_submissions_total{outcome="accepted"}')
    ]
    assert accepted and float(accepted[0].split()[-1]) == 20


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_metrics_can_move_to_a_port_of_their_own(
    make_settings: Callable[..., Settings], processes: Processes, loaded: None, workers: str
) -> None:
    """``RANKER_METRICS_PORT``: ``/metrics`` leaves the API's port (404 there) for its own,
    where every API process's figures are added up; the runtime's version is on neither."""
    metrics_port = devservers.free_port()
    settings = make_settings(metrics_port=metrics_port)
    url, _ = await processes.serve("--workers", workers, "--no-worker", settings=settings)
    async with httpx.AsyncClient(headers={"Connection": "close", **auth_headers()}) as http:
        for n in range(6):
            body = {"user_id": 1, "score": 1, "session_id": f"port-{workers}-{n}"}
            assert (await http.post(f"{url}/api/leaderboard/submit", json=body)).is_success
        assert (await http.get(f"{url}/metrics")).status_code == 404
        text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text

    accepted = [
        line
        for line in text.splitlines()
        if line.startswith('ranker_submissions_total{outcome="accepted"}')
    ]
    assert accepted and float(accepted[0].split()[-1]) == 6
    assert "python_info" not in text


async def test_healthcheck_follows_the_worker_heartbeat_and_the_api(
    make_settings: Callable[..., Settings], processes: Processes, tmp_path: Path, loaded: None
) -> None:
    beat = tmp_path / "alive"
    settings = make_settings(heartbeat_file=beat)
    worker = processes.start("worker", settings=settings)

    async def beating() -> bool:
        return beat.exists() and processes.run("healthcheck", settings=settings).returncode == 0

    await wait_for(beating, 30, "the worker's heartbeat")
    os.kill(worker.pid, signal.SIGSTOP)  # hung: its event loop no longer runs
    try:

        async def stale() -> bool:
            check = processes.run("healthcheck", "--max-age-s", "1", settings=settings)
            return check.returncode == 1 and "heartbeat" in check.stderr

        await wait_for(stale, 30, "healthcheck to see a stale heartbeat")
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    await wait_for(beating, 30, "the heartbeat to come back")

    url, _ = await processes.serve("--no-worker", settings=settings)
    alive = processes.run("healthcheck", "--url", f"{url}/healthz", settings=settings)
    closed = f"http://127.0.0.1:{devservers.free_port()}/healthz"
    dead = processes.run("healthcheck", "--url", closed, settings=settings)

    assert alive.returncode == 0, alive.stderr
    assert dead.returncode == 1
    assert dead.stderr.count("\n") == 1 and dead.stderr.startswith("ranker healthcheck: ")
