"""I1 through crashes of every process: two API processes (``ranker serve --no-worker``) and the
standalone worker are SIGKILLed again and again at random moments while clients submit and read.

Clients behave like game servers: a submission whose connection failed is sent again, with the
SAME session id, to the other API process until it gets an answer; one session in ten is sent
again after its answer (a client that timed out), and must get ``duplicate: true`` with the
event id of the first acceptance. Killed API processes come back on the same port. After the
load a worker drains the stream: every accepted session is then in PostgreSQL exactly once,
as the event id the API returned, and ``ranker verify --deep`` agrees.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.verify import wait_drained
from ranker.keys import Keys
from ranker.settings import Settings
from tests.fixtures.ranker import (
    DEFINED_FIVE,
    FIVE_BOARDS,
    Processes,
    auth_headers,
    boards_counted,
    seeded_random,
    stored_sessions,
)

#: The core tests run on the single server and on the local Redis Cluster.
pytestmark = pytest.mark.cluster

API_PROCESSES = 2
SUBMITTERS = 8
READERS = 4
PACE_S = 0.03  # each client's pause between two requests: keeps the 2-core machine responsive
RESEND_EVERY = 10  # one session in ten is sent again after it was answered
SESSION_DEADLINE_S = 60.0  # a session still unanswered after this is a failure (a hang)
SUBMIT = "/api/leaderboard/submit"


@dataclass
class Tally:
    """What the clients sent and got."""

    sent: set[str] = field(default_factory=set)  # session ids
    accepted: dict[str, str] = field(default_factory=dict)  # session id -> event id
    requests: int = 0
    retries: int = 0  # submissions sent again after a failed attempt
    retried_sessions: int = 0
    lost_answers: int = 0  # retries answered duplicate: the first attempt had been accepted
    resends: int = 0  # deliberate resends of an answered session
    submit_503: int = 0
    submit_connection_errors: int = 0
    reads: Counter[int] = field(default_factory=Counter)  # by status
    read_connection_errors: int = 0
    timeouts: int = 0  # no answer within the client timeout: a hang
    violations: list[str] = field(default_factory=list)


@dataclass
class Cluster:
    """The processes under test: API processes on fixed ports, and the current worker."""

    processes: Processes
    ports: list[int]
    apis: list[subprocess.Popen[bytes]]
    worker: subprocess.Popen[bytes]

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    async def kill_api(self, index: int) -> None:
        """SIGKILL one API process and start it again on its port (back when /healthz is)."""
        await kill(self.apis[index])
        _, self.apis[index] = await self.processes.serve("--no-worker", port=self.ports[index])

    async def kill_worker(self) -> None:
        """SIGKILL the worker and start a new one (its entries are claimed once idle)."""
        await kill(self.worker)
        self.worker = self.processes.start("worker")


async def kill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    await asyncio.to_thread(process.wait)


async def kill_repeatedly(
    cluster: Cluster, rng: random.Random, duration_s: float, min_kills: int
) -> Counter[str]:
    """Kill an API process or the worker at random moments for ``duration_s`` (longer if
    either kind has fewer than ``min_kills``, within a bound); returns the kills of each."""
    kills: Counter[str] = Counter()
    started = time.monotonic()
    while time.monotonic() - started < duration_s or min(kills["api"], kills["worker"]) < min_kills:
        if time.monotonic() - started > 2 * duration_s:
            break  # the test then fails on the count
        await asyncio.sleep(rng.uniform(0.3, 1.5))  # a random moment, not a wait
        if rng.random() < 0.5:
            await cluster.kill_api(rng.randrange(len(cluster.apis)))
            kills["api"] += 1
        else:
            await cluster.kill_worker()
            kills["worker"] += 1
    return kills


async def submit_until_answered(
    http: aiohttp.ClientSession, urls: list[str], first: int, body: dict[str, Any], tally: Tally
) -> tuple[dict[str, Any] | None, int]:
    """Send ``body`` until an API process answers, trying the next one after a failed
    connection; returns the answer of a 200 (None for another status) and the failures."""
    deadline = time.monotonic() + SESSION_DEADLINE_S
    failures = 0
    while True:
        tally.requests += 1
        try:
            url = urls[(first + failures) % len(urls)] + SUBMIT
            async with http.post(url, json=body, headers=auth_headers()) as response:
                if response.status == 200:
                    return await response.json(), failures
                if response.status != 503:
                    text = await response.text()
                    tally.violations.append(f"submit {body} answered {response.status}: {text}")
                    return None, failures
                tally.submit_503 += 1
        except TimeoutError:
            tally.timeouts += 1
        except aiohttp.ClientError:
            tally.submit_connection_errors += 1
        failures += 1
        tally.retries += 1
        if time.monotonic() > deadline:
            tally.violations.append(f"submit {body} got no answer in {SESSION_DEADLINE_S} s")
            return None, failures
        await asyncio.sleep(0.05)  # a client's backoff before it tries again


async def submitter(
    index: int,
    http: aiohttp.ClientSession,
    urls: list[str],
    rng: random.Random,
    tally: Tally,
    done: asyncio.Event,
) -> None:
    """Submit sessions of its own until ``done``; each until answered."""
    n = 0
    while not done.is_set():
        n += 1
        session_id = f"c{index}-{n}"
        body = {
            "user_id": rng.randint(1, 300),
            "score": rng.randint(1, 100),
            "session_id": session_id,
            "game_mode": rng.choice(["solo", "team"]),
        }
        tally.sent.add(session_id)
        outcome, failures = await submit_until_answered(http, urls, n, body, tally)
        if outcome is None:
            continue
        tally.retried_sessions += int(failures > 0)
        tally.lost_answers += int(failures > 0 and outcome["duplicate"])
        if failures == 0 and outcome["duplicate"]:
            tally.violations.append(f"{session_id}: first attempt answered duplicate")
        tally.accepted[session_id] = outcome["event_id"]
        if n % RESEND_EVERY == 0:
            tally.resends += 1
            again, _ = await submit_until_answered(http, urls, n + 1, body, tally)
            seen = (again or {}).get("duplicate"), (again or {}).get("event_id")
            if seen != (True, outcome["event_id"]):
                tally.violations.append(f"{session_id}: resend answered {again}, first {outcome}")
        await asyncio.sleep(PACE_S)


async def reader(
    http: aiohttp.ClientSession,
    urls: list[str],
    rng: random.Random,
    tally: Tally,
    done: asyncio.Event,
) -> None:
    """Read the top of a board or a player's rank until ``done``; count the answers."""
    while not done.is_set():
        mode = rng.choice(["", "?mode=solo", "?mode=team"])
        path = rng.choice(["/api/leaderboard/top", f"/api/leaderboard/rank/{rng.randint(1, 300)}"])
        try:
            async with http.get(rng.choice(urls) + path + mode) as response:
                await response.read()
                tally.reads[response.status] += 1
        except TimeoutError:
            tally.timeouts += 1
        except aiohttp.ClientError:
            tally.read_connection_errors += 1
        await asyncio.sleep(PACE_S)


def reclaimed_entries(processes: Processes) -> int:
    """Entries the workers took over from killed ones, as their logs tell."""
    found = (
        re.findall(r"claimed (\d+) entries", path.read_text(errors="replace"))
        for path in processes.log_files.values()
        if path.name.endswith("-worker.log")
    )
    return sum(int(count) for counts in found for count in counts)


async def run_load(
    cluster: Cluster, rng: random.Random, duration_s: float, min_kills: int, tally: Tally
) -> Counter[str]:
    """The mixed load under the killer; returns the kills once every client has stopped."""
    done = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=15)
    connector = aiohttp.TCPConnector(limit=SUBMITTERS + READERS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        clients = [
            *(
                submitter(i, http, cluster.urls, random.Random(rng.random()), tally, done)
                for i in range(SUBMITTERS)
            ),
            *(
                reader(http, cluster.urls, random.Random(rng.random()), tally, done)
                for _ in range(READERS)
            ),
        ]
        running = [asyncio.create_task(client) for client in clients]
        try:
            kills = await kill_repeatedly(cluster, rng, duration_s, min_kills)
        finally:
            # Every API process runs again now: each client finishes its session and stops.
            done.set()
            await asyncio.gather(*running)
    return kills


@pytest.mark.parametrize(
    ("duration_s", "min_kills"),
    [
        (35.0, 3),
        pytest.param(300.0, 20, marks=[pytest.mark.slow, pytest.mark.timeout(900)], id="long"),
    ],
)
async def test_api_and_worker_killed_again_and_again_lose_nothing(
    duration_s: float,
    min_kills: int,
    make_settings: Callable[..., Settings],
    processes: Processes,
    redis: Redis,
    pool: AsyncConnectionPool,
    loaded: None,
) -> None:
    rng = seeded_random()
    settings = make_settings(worker_batch_size=200, boards_file=FIVE_BOARDS)
    processes.settings = settings
    started = [await processes.serve("--no-worker") for _ in range(API_PROCESSES)]
    ports = [int(url.rpartition(":")[2]) for url, _ in started]
    cluster = Cluster(processes, ports, [proc for _, proc in started], processes.start("worker"))
    tally = Tally()
    began = time.monotonic()
    kills = await run_load(cluster, rng, duration_s, min_kills, tally)
    elapsed = time.monotonic() - began

    await wait_drained(redis, Keys(settings.namespace), 120)
    async with pool.connection() as conn:
        stored = await stored_sessions(conn)
        counted = await boards_counted(conn)
    verify = await asyncio.to_thread(processes.run, "verify", "--wait-s", "60", "--deep")

    print(
        f"\n{elapsed:.0f} s with {API_PROCESSES} API processes and a worker: "
        f"kills api {kills['api']} worker {kills['worker']}; sessions sent {len(tally.sent)}, "
        f"accepted {len(tally.accepted)}, submit requests {tally.requests}, retries after a "
        f"failure {tally.retries} ({tally.retried_sessions} sessions, {tally.lost_answers} of "
        f"them already accepted: answer lost in a kill), deliberate resends {tally.resends}, "
        f"submit 503 {tally.submit_503}, submit connection errors "
        f"{tally.submit_connection_errors}; reads {sum(tally.reads.values())} "
        f"{dict(sorted(tally.reads.items()))}, read connection errors "
        f"{tally.read_connection_errors}; timeouts {tally.timeouts}; entries reclaimed from "
        f"killed workers {reclaimed_entries(processes)}"
    )
    assert not tally.violations, tally.violations[:5]
    assert tally.timeouts == 0, "a request hung"
    assert kills["api"] >= min_kills and kills["worker"] >= min_kills, kills
    assert tally.retried_sessions > 0, "no submission ever met a dead API process"
    assert set(tally.reads) <= {200, 404, 503}, tally.reads
    assert tally.reads[200] > 0
    assert DEFINED_FIVE <= counted, counted  # every session counted on five boards
    # I1: every accepted session once, as the event id the API returned; nothing else.
    sessions = [session_id for session_id, _ in stored]
    assert len(sessions) == len(set(sessions)), "a session is stored twice"
    assert set(sessions) <= tally.sent, "PostgreSQL holds a session no client sent"
    assert dict(stored) == tally.accepted
    assert tally.accepted.keys() == tally.sent, "a session was never accepted"
    assert verify.returncode == 0, verify.stdout + verify.stderr
