"""Redis faults under load (docs/design.md I1, I4): Redis restarted empty, and Redis out of reach
for a few seconds (the connection cut, or the server paused). While Redis is away the API answers
503 problem+json with Retry-After, quickly and never hanging; it recovers by itself; and it loses
nothing it promised to keep.

Each test prints the figures a reliability document quotes (run pytest with ``-s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis as sync_redis
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.stream import unpersisted
from persistence.verify import wait_drained
from ranker.dev import servers as devservers
from ranker.keys import Keys
from ranker.settings import Settings
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.ranker import (
    DEFINED_FIVE,
    FIVE_BOARDS,
    Processes,
    auth_headers,
    boards_counted,
    stored_sessions,
    wait_for,
)

#: The flow: submissions (unique session ids) and reads, paced over several connections.
RATE_PER_S = 250
CONNECTIONS = 8
#: Connections that only read (the top, or the rank of a player); the others only submit. Each
#: keeps one request in flight, so every outage overlaps a read as surely as a submission.
READERS = 2
PLAYERS = 500
PROBE_INTERVAL_S = 0.02  # how often the flow asks /readyz
#: A request still unanswered after this long hangs: the test fails on it.
CLIENT_TIMEOUT_S = 10.0
#: Submissions accepted before a fault is injected, and again after recovery.
WARM_UP = 300
PROBLEM = "application/problem+json"

#: Redis restarted empty: how long it stays down, and the service's Redis timeout.
DOWN_S = 1.0
RESTART_REDIS_TIMEOUT_S = 1.0
#: How long CLIENT PAUSE holds the dying Redis's writes at most (it is killed long before).
FREEZE_MS = 30_000

#: Redis out of reach: how long, the service's Redis timeout, and the bound of a failing
#: request: the timeout plus a generous margin (a connect and a command may each wait for it).
OUTAGE_S = 3.0
REDIS_TIMEOUT_S = 0.5
FAST_FAIL_S = 3.0


# -- the flow of requests ------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One request of the flow and what came back (``status`` 0: no HTTP answer at all)."""

    kind: str  # "submit", "top", "rank" or "readyz"
    sent: float  # time.monotonic() when sent
    done: float  # ... when answered, or given up
    status: int
    content_type: str = ""
    retry_after: str | None = None
    body: Any = None  # the JSON answer
    request: dict[str, Any] | None = None  # the JSON sent
    error: str = ""

    @property
    def latency_s(self) -> float:
        return self.done - self.sent

    @property
    def session_id(self) -> str:
        assert self.request is not None
        return str(self.request["session_id"])

    def overlaps(self, start: float, end: float) -> bool:
        """Whether the request was in flight at some moment of ``start .. end``."""
        return self.sent < end and self.done > start


class Flow:
    """A steady flow over HTTP: submissions with unique session ids and reads, paced to
    ``rate_per_s`` over ``connections`` connections, plus a probe of ``/readyz``; every outcome
    is recorded. Runs from ``async with`` entry to exit."""

    def __init__(self, url: str, prefix: str, rate_per_s: float = RATE_PER_S) -> None:
        self.url = url
        self.prefix = prefix
        self.interval_s = CONNECTIONS / rate_per_s
        self.outcomes: list[Outcome] = []  # submissions and reads
        self.readiness: list[Outcome] = []  # the /readyz probe
        self.players: list[int] = []  # players with an accepted submission (for rank reads)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Flow:
        self._http = aiohttp.ClientSession(
            self.url,
            connector=aiohttp.TCPConnector(limit=CONNECTIONS + 4),
            headers=auth_headers(),
            timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
        )
        self._tasks = [asyncio.create_task(self._connection(n)) for n in range(CONNECTIONS)]
        self._tasks.append(asyncio.create_task(self._probe()))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            assert self._http is not None
            await self._http.close()

    async def request(
        self, kind: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> Outcome:
        """Send one request; its outcome (not recorded: the caller decides)."""
        assert self._http is not None
        sent = time.monotonic()
        try:
            async with self._http.request(method, path, json=body) as response:
                payload = await response.read()
                status, headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            return Outcome(kind, sent, time.monotonic(), 0, request=body, error=error)
        done = time.monotonic()
        content_type = headers.get("Content-Type", "").split(";")[0].strip()
        try:
            data = json.loads(payload)
        except ValueError:
            data = payload.decode(errors="replace")
        return Outcome(
            kind, sent, done, status, content_type, headers.get("Retry-After"), data, body
        )

    def accepted(self, sent_after: float = 0.0) -> dict[str, str]:
        """``{session_id: event_id}`` of the submissions sent after ``sent_after`` and
        answered 200."""
        return {
            o.session_id: o.body["event_id"]
            for o in self.outcomes
            if o.kind == "submit" and o.status == 200 and o.sent >= sent_after
        }

    def first(self, kinds: Iterable[str], status: int, sent_after: float) -> Outcome | None:
        """The first request of one of ``kinds`` sent after ``sent_after`` answered ``status``."""
        found = [
            o
            for o in (self.readiness if "readyz" in kinds else self.outcomes)
            if o.kind in kinds and o.status == status and o.sent >= sent_after
        ]
        return min(found, key=lambda o: o.sent, default=None)

    async def _connection(self, index: int) -> None:
        rng = random.Random(index)
        next_at = time.monotonic()
        for n in itertools.count():
            if self._stop.is_set():
                return
            if index < READERS:
                outcome = await self._read(rng)
            else:
                outcome = await self._submit(rng, f"{self.prefix}-{index}-{n}")
            self.outcomes.append(outcome)
            # Pacing, not synchronisation; after a slow answer no burst catches up.
            next_at = max(next_at + self.interval_s, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())

    async def _submit(self, rng: random.Random, session_id: str) -> Outcome:
        body = {
            "user_id": rng.randint(1, PLAYERS),
            "score": rng.randint(1, 100),
            "game_mode": rng.choice(("solo", "team")),
            "session_id": session_id,
        }
        outcome = await self.request("submit", "POST", "/api/leaderboard/submit", body)
        if outcome.status == 200:
            self.players.append(body["user_id"])
        return outcome

    async def _read(self, rng: random.Random) -> Outcome:
        if self.players and rng.random() < 0.5:
            player = rng.choice(self.players)
            return await self.request("rank", "GET", f"/api/leaderboard/rank/{player}")
        return await self.request("top", "GET", "/api/leaderboard/top?limit=10")

    async def _probe(self) -> None:
        while not self._stop.is_set():
            self.readiness.append(await self.request("readyz", "GET", "/readyz"))
            await asyncio.sleep(PROBE_INTERVAL_S)


def check_answers(flow: Flow, *, absent_players: bool) -> None:
    """Every request had an HTTP answer; each that was not 200 is a 503 problem+json with
    Retry-After (never another 5xx, never a hang). With ``absent_players`` a rank read may also
    find its player gone (404 problem), as after Redis lost submissions."""
    for o in flow.outcomes:
        assert o.status != 0, f"{o.kind} got no answer within {CLIENT_TIMEOUT_S} s: {o.error}"
        if o.status == 200:
            continue
        absent = absent_players and o.kind == "rank" and o.status == 404
        assert o.status == 503 or absent, f"{o.kind} answered {o.status}: {o.body}"
        assert o.content_type == PROBLEM, f"{o.kind} {o.status} as {o.content_type}: {o.body}"
        assert o.body["status"] == o.status, o.body
        if o.status == 503:
            assert o.retry_after is not None and o.retry_after.isdigit(), o
    for o in flow.readiness:
        assert o.status in (200, 503), f"/readyz answered {o.status}: {o.error or o.body}"
        assert o.body["ready"] is (o.status == 200), o.body


def report(name: str, figures: dict[str, object]) -> None:
    """Print a test's figures, one per line (visible with ``pytest -s``)."""
    print()
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else value
        print(f"[{name}] {key}: {shown}")


# -- servers and state ---------------------------------------------------------------------------


class OwnRedis:
    """A Redis server of the test's own on a port that stays the same across restarts (so the
    service keeps one URL for it); it keeps nothing on disk, so a restart starts it empty."""

    def __init__(self) -> None:
        self.port = devservers.free_port()
        self.pid = 0
        self.paused = False
        self._running: contextlib.ExitStack | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start an empty server on the port."""
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(devservers.redis_server(port=self.port))
            if server.how == "testcontainers":
                pytest.skip("these faults are signals to a local Redis process")
            with sync_redis.Redis.from_url(server.url) as client:
                self.pid = int(client.info("server")["process_id"])
            self._running = stack.pop_all()

    def crash(self) -> None:
        """SIGKILL the server (no shutdown at all), then reap it."""
        os.kill(self.pid, signal.SIGKILL)
        self.stop()

    def pause(self) -> None:
        """SIGSTOP: connections stay open and new ones are accepted, but nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            os.kill(self.pid, signal.SIGCONT)
            self.paused = False

    def stop(self) -> None:
        self.resume()
        if self._running is not None:
            self._running.close()
            self._running = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    """A Redis of the test's own (not started yet), stopped afterwards even if paused."""
    server = OwnRedis()
    try:
        yield server
    finally:
        server.stop()


async def is_ready(url: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as response:
        return response.status == 200


async def sessions_by_id(pool: AsyncConnectionPool) -> dict[str, list[str]]:
    """``{session_id: [event_id, ...]}`` of every session in PostgreSQL."""
    async with pool.connection() as conn:
        rows = await stored_sessions(conn)
    stored: dict[str, list[str]] = defaultdict(list)
    for session_id, event_id in rows:
        stored[session_id].append(event_id)
    return stored


async def freeze_stream(url: str, keys: Keys) -> tuple[float, set[str], int]:
    """Hold every write of the Redis at ``url`` (CLIENT PAUSE WRITE: submissions, and the
    worker's reads and acknowledgements, wait); return when that took effect (monotonic time),
    the event ids its stream holds then, and how many of them await PostgreSQL: all that a
    crash can take with it."""
    async with Redis.from_url(url) as client:
        await client.client_pause(FREEZE_MS, all=False)
        frozen_at = time.monotonic()
        entries = await client.xrange(keys.events)
        backlog = await unpersisted(client, keys)
    return frozen_at, {fields[b"e"].decode() for _, fields in entries}, backlog


async def drain_and_verify(
    processes: Processes, settings: Settings, pool: AsyncConnectionPool
) -> dict[str, list[str]]:
    """Wait for the service's worker to persist everything, check that ``ranker verify
    --deep`` agrees, and return the stored sessions."""
    async with Redis.from_url(settings.redis_url) as client:
        await wait_drained(client, Keys(settings.namespace), 60)
    verify = functools.partial(processes.run, "verify", "--wait-s", "60", "--deep")
    result = await asyncio.to_thread(verify, settings=settings)
    assert result.returncode == 0, result.stdout + result.stderr
    async with pool.connection() as conn:
        assert DEFINED_FIVE <= await boards_counted(conn)  # the five boards counted
    return await sessions_by_id(pool)


def check_log(processes: Processes, service: subprocess.Popen[bytes]) -> None:
    """The service met the fault without a traceback: every Redis error was translated, and
    no background job had to be restarted by its supervisor (the recovery is by design)."""
    log = processes.log_files[service.pid].read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:3000]


def check_stored_once(stored: dict[str, list[str]], accepted: dict[str, str]) -> None:
    """No session is stored twice, and an accepted one is stored as the event it was
    accepted as."""
    twice = {s: events for s, events in stored.items() if len(events) > 1}
    assert not twice, f"{len(twice)} sessions stored more than once: {list(twice.items())[:5]}"
    other = {s: (e, stored[s][0]) for s, e in accepted.items() if s in stored and stored[s] != [e]}
    assert not other, f"stored as another event than accepted: {list(other.items())[:5]}"


# -- the tests -----------------------------------------------------------------------------------


async def test_redis_restarted_empty_under_load(
    make_settings: Callable[..., Settings],
    processes: Processes,
    pool: AsyncConnectionPool,
    own_redis: OwnRedis,
) -> None:
    """Redis is killed under load and a new, empty one starts on the same port: the service is
    not ready until its watchdog has rebuilt the boards from SQL, then serves again by itself.

    What is promised (docs/design.md): a 200 means "in Redis" (I4: "acknowledged means in Redis");
    PostgreSQL holds what the worker has persisted, and the events not yet persisted are the
    measured backlog. I1 names the faults it covers (retries, worker crashes, PostgreSQL down,
    rebuilds); the loss of Redis's data is not one of them. With a Redis that keeps nothing
    (no AOF) the stream dies with it, so a crash loses at most that backlog. The test asserts
    exactly that, and measures the loss:
    - every accepted submission persisted before the crash is still in PostgreSQL, once, and
      counted in the rebuilt boards (``verify --deep``: Redis == SQL totals == sum of sessions);
    - an accepted submission is missing from PostgreSQL only if it was in the dying Redis's
      stream (frozen with CLIENT PAUSE WRITE just before the SIGKILL, so that the test can read
      what it held); the worker never acknowledged an event it had not committed;
    - every submission accepted by the new Redis, during the rebuild as after it, is persisted.
    """
    own_redis.start()
    settings = make_settings(
        redis_url=own_redis.url, redis_timeout_s=RESTART_REDIS_TIMEOUT_S, boards_file=FIVE_BOARDS
    )
    keys = Keys(settings.namespace)
    url, service = await processes.serve(settings=settings)
    await wait_for(functools.partial(is_ready, url), 30, "the service to load its boards")

    async with Flow(url, "restart") as flow:

        async def warmed_up() -> bool:
            return len(flow.accepted()) >= WARM_UP and bool(await sessions_by_id(pool))

        await wait_for(warmed_up, 30, "submissions to be accepted and persisted")
        frozen_at, at_risk, backlog = await freeze_stream(own_redis.url, keys)
        crashed_at = time.monotonic()
        await asyncio.to_thread(own_redis.crash)
        persisted_before = {e for events in (await sessions_by_id(pool)).values() for e in events}
        await asyncio.sleep(DOWN_S)  # Redis stays down a while: the outage the clients see
        # A new Redis listens, empty, from some moment during start(): from restart_at on,
        # any acceptance is the new Redis's.
        restart_at = time.monotonic()
        await asyncio.to_thread(own_redis.start)

        async def rebuilt() -> bool:
            return flow.first(["readyz"], 200, restart_at) is not None

        await wait_for(rebuilt, 30, "the watchdog to rebuild the boards from SQL")
        ready = flow.first(["readyz"], 200, restart_at)
        assert ready is not None
        ready_at = ready.sent

        async def accepting() -> bool:
            return len(flow.accepted(ready_at)) >= WARM_UP

        await wait_for(accepting, 30, "submissions to be accepted after the rebuild")
    assert service.poll() is None, "the service did not survive the restart of Redis"
    check_log(processes, service)

    stored = await drain_and_verify(processes, settings, pool)
    accepted = flow.accepted()
    check_answers(flow, absent_players=True)
    check_stored_once(stored, accepted)
    stored_events = {e for events in stored.values() for e in events}

    # Down, then up but not loaded: /readyz says so, with reasons.
    down = [o for o in flow.readiness if crashed_at < o.sent < restart_at and o.status == 503]
    assert any(o.body.get("redis") == "unreachable" for o in down), "no 503 while Redis was down"
    rebuilding = [o for o in flow.readiness if restart_at <= o.sent < ready_at and o.status == 503]
    assert any(o.body.get("boards_loaded") is False for o in rebuilding), (
        "/readyz was never 503 'boards not loaded' between the restart and the rebuild"
    )
    # Persisted before the crash: kept. Lost: only what the dying stream held.
    assert persisted_before <= stored_events, "a persisted submission vanished"
    lost = {s: e for s, e in accepted.items() if s not in stored}
    assert set(lost.values()) <= at_risk, "lost an accepted submission that had been persisted"
    assert len(lost) <= backlog, "lost more than the backlog of unpersisted events"
    # The old Redis accepted nothing after the freeze: any acceptance since is the new one's.
    missing_new = {s for s in flow.accepted(frozen_at) if s not in stored}
    assert not missing_new, f"accepted by the new Redis but never persisted: {missing_new}"

    outage = [o for o in flow.outcomes if o.overlaps(crashed_at, ready_at)]
    first_accepted = flow.first(["submit"], 200, crashed_at)
    statuses = Counter(o.status for o in flow.outcomes)
    report(
        "redis restarted empty",
        {
            "requests sent": len(flow.outcomes),
            "answered 200": statuses[200],
            "answered 503": statuses[503],
            "answered 404 (rank of a player lost with Redis)": statuses[404],
            "other answers or no answer": sum(
                n for status, n in statuses.items() if status not in (200, 503, 404)
            ),
            "accepted submissions": len(accepted),
            "persisted before the crash": len(persisted_before),
            "backlog in the dying stream (unpersisted)": backlog,
            "events in the dying stream": len(at_risk),
            "accepted submissions lost (were in that backlog)": len(lost),
            "accepted while the boards were rebuilt (rank null)": sum(
                1
                for o in flow.outcomes
                if o.kind == "submit" and o.status == 200 and o.body["rank"] is None
            ),
            "max latency during the outage (s)": max(o.latency_s for o in outage),
            "Redis down (s)": restart_at - crashed_at,
            "restart -> /readyz 200 (rebuilt by the watchdog) (s)": ready_at - restart_at,
            "restart -> first accepted submission (s)": (
                first_accepted.done - restart_at if first_accepted else "none"
            ),
            "crash -> /readyz 200 (s)": ready_at - crashed_at,
        },
    )


@pytest.mark.parametrize("fault", ["cut-refuse", "cut-stall", "paused"])
async def test_redis_out_of_reach_for_a_few_seconds(
    fault: str,
    make_settings: Callable[..., Settings],
    processes: Processes,
    pool: AsyncConnectionPool,
    own_redis: OwnRedis,
) -> None:
    """The service loses Redis for OUTAGE_S under a flow of submissions and reads: every
    connection cut and new ones refused (``cut-refuse``) or black-holed (``cut-stall``), or the
    Redis process stopped (``paused``, SIGSTOP: nothing answers, nothing is closed).

    While it lasts, requests fail fast (503 problem+json within the Redis timeout plus a margin;
    none hangs); once Redis is back they succeed again by themselves, in the same process. No
    accepted submission is lost, and a 503'd one retried with its session id is counted once:
    a 503 does not say that the submission was not counted (Redis may have run it and the answer
    got lost), the idempotency key makes the retry safe.
    """
    own_redis.start()
    with contextlib.ExitStack() as stack:
        if fault == "paused":
            service_redis_url = own_redis.url
            inject, heal = own_redis.pause, own_redis.resume
        else:
            proxy = stack.enter_context(TcpProxy("127.0.0.1", own_redis.port))
            service_redis_url = f"redis://127.0.0.1:{proxy.port}/0"
            inject = functools.partial(proxy.cut, "stall" if fault == "cut-stall" else "refuse")
            heal = proxy.restore
        settings = make_settings(
            redis_url=service_redis_url, redis_timeout_s=REDIS_TIMEOUT_S, boards_file=FIVE_BOARDS
        )
        url, service = await processes.serve(settings=settings)
        await wait_for(functools.partial(is_ready, url), 30, "the service to load its boards")

        async with Flow(url, fault) as flow:

            async def warmed_up() -> bool:
                return len(flow.accepted()) >= WARM_UP

            await wait_for(warmed_up, 30, "submissions to be accepted")
            fault_at = time.monotonic()
            await asyncio.to_thread(inject)
            await asyncio.sleep(OUTAGE_S)  # the outage lasts this long: the scenario, not a wait
            await asyncio.to_thread(heal)
            healed_at = time.monotonic()

            async def recovered() -> bool:
                return all(
                    flow.first(kinds, 200, healed_at) for kinds in (["submit"], ["top", "rank"])
                )

            await wait_for(recovered, 30, "submissions and reads to succeed again by themselves")
            firsts = [flow.first(kinds, 200, healed_at) for kinds in (["submit"], ["top", "rank"])]
            recovered_at = max(o.sent for o in firsts if o is not None)
            recovered_in = max(o.done for o in firsts if o is not None) - healed_at

            async def accepting() -> bool:
                return len(flow.accepted(recovered_at)) >= WARM_UP

            await wait_for(accepting, 30, "submissions to keep being accepted")
            # Clients retry their 503'd submissions with the same session id.
            unavailable = [o for o in flow.outcomes if o.kind == "submit" and o.status == 503]
            retries = [
                await flow.request("submit", "POST", "/api/leaderboard/submit", o.request)
                for o in unavailable
            ]
        assert service.poll() is None, "the service did not survive the outage"
        check_log(processes, service)

        direct = make_settings(redis_url=own_redis.url)  # the same namespace, not via a proxy
        stored = await drain_and_verify(processes, direct, pool)

    check_answers(flow, absent_players=False)
    outage = [o for o in flow.outcomes + flow.readiness if o.overlaps(fault_at, healed_at)]
    failed = [o for o in flow.outcomes + flow.readiness if o.status == 503]
    assert any(o.kind == "submit" for o in failed), "the fault made no submission fail"
    assert any(o.kind in ("top", "rank") for o in failed), "the fault made no read fail"
    slowest_failure = max(o.latency_s for o in failed)
    assert slowest_failure < FAST_FAIL_S, f"a failing request took {slowest_failure:.2f} s"
    slowest = max(o.latency_s for o in outage)
    assert slowest < FAST_FAIL_S, f"a request in flight during the outage took {slowest:.2f} s"
    after = [o for o in flow.outcomes if o.sent >= recovered_at and o.status != 200]
    assert not after, f"requests still failing after the recovery: {after[:3]}"

    assert all(o.status == 200 for o in retries), [o.body for o in retries if o.status != 200]
    counted_anyway = [o for o in retries if o.body["duplicate"]]
    accepted = flow.accepted()
    everything = {**accepted, **{o.body["session_id"]: o.body["event_id"] for o in retries}}
    check_stored_once(stored, everything)
    missing = {s for s in accepted if s not in stored}
    assert not missing, f"{len(missing)} accepted submissions were lost: {sorted(missing)[:5]}"
    assert set(stored) == set(everything), "stored sessions differ from those sent"

    statuses = Counter(o.status for o in flow.outcomes)
    report(
        f"redis out of reach ({fault})",
        {
            "requests sent": len(flow.outcomes),
            "answered 200": statuses[200],
            "answered 503": statuses[503],
            "other answers or no answer": sum(
                n for status, n in statuses.items() if status not in (200, 503)
            ),
            "requests in flight during the outage": len(outage),
            "max latency of a failing request (s)": slowest_failure,
            "max latency during the outage (s)": slowest,
            "outage (s)": healed_at - fault_at,
            "Redis back -> first submission and read answered 200 (s)": recovered_in,
            "503'd submissions retried with their session id": len(retries),
            "... of which Redis had counted after all (duplicate)": len(counted_anyway),
            "accepted submissions lost": len(missing),
        },
    )
