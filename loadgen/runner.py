"""Running a load: the open and closed loops, and the result (``LoadConfig`` is re-exported).

Open loop (``rate`` set): request i is due at ``start + i / rate``. The sender sleeps until the
next due time, then fires everything due as tasks without waiting for earlier requests, and
each latency runs from the DUE time to the end of the response: a stall of the server or of
this process delays the requests behind it and shows up in their latency (no coordinated
omission). At most ``max_in_flight`` requests are outstanding; one due beyond that is counted
as dropped instead of queued without bound. ``connections`` > 0 caps the TCP connections too:
requests then wait for a free connection, and that wait counts as latency.

Closed loop (``rate`` None): ``connections`` tasks each send back to back; latency runs from
the send to the end of the response. This measures the maximum throughput, not latency under
a given load.

A ``watch`` given to ``run_load`` is called with a ``Snapshot`` every ``WATCH_INTERVAL_S`` and
once more when the run has ended; it runs on the event loop, so it must return quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from loadgen.config import LoadConfig
from loadgen.schedule import Schedule
from loadgen.stats import Recorder, Snapshot
from loadgen.verdict import verdict
from loadgen.workload import JSON_HEADERS, Request, Workload

__all__ = ["LoadConfig", "LoadResult", "Watch", "run", "run_load"]

#: Answers that refuse the caller rather than fail (no key, the wrong key, a spent budget): the
#: first of each kind is kept with the service's reason, so that a person can be told what to do.
REFUSED_STATUSES = frozenset({401, 403, 429})
#: Called with the run so far (a progress display); see ``run_load``.
Watch = Callable[[Snapshot], None]
#: How often a watch gets a snapshot: each costs about a millisecond of the event loop (the p99
#: walks the histogram), so twice a second delays requests by no more than timer noise.
WATCH_INTERVAL_S = 0.5


@dataclass
class LoadResult:
    """What a run measured; ``to_dict`` is JSON-ready. Latencies are in milliseconds."""

    workload: str
    mode: str  # "open" or "closed"
    target_rate: float | None
    achieved_rate: float
    duration_s: float
    connections: int
    max_in_flight: int
    count: int  # requests that ended: ok + not_found + sum(errors)
    ok: int  # 2xx
    not_found: int  # the expected 404 of rank/around for a player without a score
    errors: dict[str, int]  # by status ("503") or by transport exception ("TimeoutError")
    dropped: int  # open loop: due while max_in_flight were outstanding, never sent
    latency_ms: dict[str, float]  # p50, p90, p95, p99, p99.9, max, mean
    per_kind: dict[str, dict[str, float]]
    kind_counts: dict[str, int]
    send_lag_ms: dict[str, float]  # open loop: how late requests were fired after their due time
    cpu_percent: float  # this process's CPU time / wall time, in % of one core
    bottleneck: str | None  # why the loadgen may have limited the result, if it did
    timeline: list[dict[str, float]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Requests that failed: error statuses and transport errors."""
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON types."""
        return asdict(self)


class _Run:
    """The state of one run on one client session."""

    def __init__(self, config: LoadConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session
        ratios = config.ratios()
        self.workload = Workload(
            config.url,
            ratios,
            players=config.players,
            limit=config.limit,
            modes=config.modes,
            rng=random.Random(config.seed),
            run_id=uuid.uuid4().hex[:8],  # not from the seed: ids must differ between runs
        )
        self.start = time.perf_counter()
        self.window_start = self.start + config.warmup_s
        self.window_end = self.window_start + config.duration_s
        self.recorder = Recorder(self.workload.kinds, self.window_start)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.clocks = (time.process_time(), self.window_start)
        self.refused: dict[tuple[str, int], str] = {}  # (kind, status) -> the reason first given

    def _open_window(self) -> None:
        # CPU use is measured over the window only: the warm-up's connection set-up is excluded.
        self.clocks = (time.process_time(), time.perf_counter())

    async def send(self, request: Request, began: float, record: bool) -> None:
        """Send one request and record its outcome (when due inside the window)."""
        headers = JSON_HEADERS if request.body is not None else None
        try:
            async with self.session.request(
                request.method, request.url, data=request.body, headers=headers
            ) as response:
                body = await response.read()  # the whole body: a response ends with its last byte
                # Recorded before the context exits (its release may yield to other requests),
                # so responses are recorded in the order they ended: the timeline relies on it.
                if record:
                    self.recorder.response(
                        request.kind, response.status, began, time.perf_counter()
                    )
                refusal = (request.kind, response.status)
                if response.status in REFUSED_STATUSES and refusal not in self.refused:
                    self.refused[refusal] = _reason(body)  # the first only: a run may get 10,000
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if record:
                self.recorder.transport_error(exc, time.perf_counter())

    def fire(self, tasks: asyncio.TaskGroup, due: float, now: float) -> None:
        """Start the request due at ``due`` without waiting for it, or drop it when full."""
        record = due >= self.window_start
        if len(self.in_flight) >= self.config.max_in_flight:
            if record:
                self.recorder.dropped += 1
            return
        if record:
            self.recorder.send_lag.record(now - due)
        task = tasks.create_task(self.send(self.workload.next(), due, record))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def open_loop(self, rate: float) -> None:
        """Fire every request at its due time; return once all have ended."""
        span_s = self.config.warmup_s + self.config.duration_s
        schedule = Schedule.for_span(rate, self.start, span_s)
        # The TaskGroup's exit waits for the requests still in flight.
        async with asyncio.TaskGroup() as tasks:
            while not schedule.finished:
                now = time.perf_counter()
                # Everything due by now goes out in one batch: after a late wake-up the
                # sender catches up instead of drifting behind its schedule.
                for index in schedule.take_due(now):
                    self.fire(tasks, schedule.due_at(index), now)
                await asyncio.sleep(schedule.sleep_s(time.perf_counter()))

    async def closed_loop(self) -> None:
        """``connections`` senders, each sending back to back until the window ends."""

        async def sender() -> None:
            while (began := time.perf_counter()) < self.window_end:
                await self.send(self.workload.next(), began, began >= self.window_start)

        async with asyncio.TaskGroup() as tasks:
            for _ in range(self.config.connections):
                tasks.create_task(sender())

    async def watched(self, watch: Watch) -> None:
        """Give ``watch`` a snapshot every ``WATCH_INTERVAL_S`` until cancelled."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            watch(self.recorder.snapshot(time.perf_counter() - self.start, self.refused))

    async def execute(self, watch: Watch | None = None) -> LoadResult:
        """Run the configured loop, then summarise; ``watch`` sees the run as it goes."""
        loop = asyncio.get_running_loop()
        loop.call_later(self.config.warmup_s, self._open_window)
        watcher = asyncio.create_task(self.watched(watch)) if watch is not None else None
        try:
            if self.config.rate is not None:
                await self.open_loop(self.config.rate)
            else:
                await self.closed_loop()
        finally:
            if watcher is not None:
                watcher.cancel()
                # Awaited, so that an exception of the watch itself is raised, not lost.
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        if watch is not None:
            watch(
                self.recorder.snapshot(time.perf_counter() - self.start, self.refused, final=True)
            )
        cpu_start, wall_start = self.clocks
        wall_s = time.perf_counter() - wall_start
        cpu_percent = 100 * (time.process_time() - cpu_start) / wall_s if wall_s > 0 else 0.0
        return self.result(round(cpu_percent, 1))

    def result(self, cpu_percent: float) -> LoadResult:
        """The result of the finished run."""
        config, recorder = self.config, self.recorder
        # Responses still arriving after the window count towards the rate over their time.
        elapsed_s = max(config.duration_s, recorder.last_end - self.window_start)
        send_lag = recorder.send_lag.summary()
        return LoadResult(
            workload=config.workload,
            mode="open" if config.open_loop else "closed",
            target_rate=config.rate,
            achieved_rate=round(recorder.count / elapsed_s, 1),
            duration_s=config.duration_s,
            connections=config.connections,
            max_in_flight=config.max_in_flight,
            count=recorder.count,
            ok=recorder.ok,
            not_found=recorder.not_found,
            errors=dict(recorder.errors),
            dropped=recorder.dropped,
            latency_ms=recorder.total.summary(),
            per_kind={kind: lat.summary() for kind, lat in recorder.by_kind.items()},
            kind_counts={kind: lat.count for kind, lat in recorder.by_kind.items()},
            send_lag_ms=send_lag if config.open_loop else {},
            cpu_percent=cpu_percent,
            bottleneck=verdict(
                cpu_percent=cpu_percent,
                send_lag_p99_ms=send_lag["p99"] if config.open_loop else None,
                dropped=recorder.dropped,
                max_in_flight=config.max_in_flight,
            ),
            timeline=recorder.timeline(),
        )


def _reason(body: bytes) -> str:
    """The ``detail`` (or ``title``) of a problem+json body; "" for any other body."""
    try:
        problem = json.loads(body)
    except ValueError:  # not JSON (UnicodeDecodeError is a ValueError too)
        return ""
    if not isinstance(problem, dict):
        return ""
    return str(problem.get("detail") or problem.get("title") or "")


def _session(config: LoadConfig) -> aiohttp.ClientSession:
    # Without a cap, enough connections for every request that may be in flight, so the pool
    # never queues silently; keep-alive reuses them between requests.
    limit = config.connections or config.max_in_flight
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=config.request_timeout_s),
        cookie_jar=aiohttp.DummyCookieJar(),  # the API sets no cookies: skip the jar's work
        headers=config.headers,
    )


async def run_load(config: LoadConfig, watch: Watch | None = None) -> LoadResult:
    """Run ``config`` against its service and return what was measured.

    Requests due during the warm-up are sent but not recorded. A request that gets no answer
    within ``request_timeout_s`` counts as a ``TimeoutError``; the run returns once every
    request sent has ended. ``watch``, if given, gets a snapshot twice a second and a last one
    (``final``) when the run has ended.
    """
    async with _session(config) as session:
        return await _Run(config, session).execute(watch)


def run(config: LoadConfig, watch: Watch | None = None) -> LoadResult:
    """``run_load`` on a fresh event loop: uvloop's when it is installed (less CPU per request)."""
    try:
        import uvloop  # optional: not built for every platform
    except ImportError:
        return asyncio.run(run_load(config, watch))
    return uvloop.run(run_load(config, watch))
