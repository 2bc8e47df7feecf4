"""Live pages per API process: K live streams (``GET /api/boards/global/stream``) on one
``ranker serve`` (API and worker in one process, as deployed) while ``python -m loadgen``
submits at ``RATE`` a second from another process, for growing K.

For each K the streams are opened over raw connections (each must answer 200 and send its first
event), then for the measured seconds a marker player scores every ``MARK_EVERY_S``, each time
taking the top with a total of its own. Delivery delay: from sending a marker's submission to a
stream receiving a page that shows that total or a later one (a stream that lags skips pages).
Also per K: the API process's CPU (cores) and memory, the feeds' reads, events per stream, this
process's CPU (the streams' client), and streams refused, dropped or missing a marker. The figure
is the largest K with a delay p99 of at most ``DELAY_BOUND_S`` and none refused, dropped or
missing. ``python -m loadgen.bench.stream`` runs it alone on a fresh stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from loadgen.bench.stack import Service, Stack, local_stack, ranker_command

RATE = 500
STEPS = (100, 500, 1000, 2000, 4000, 6000, 8000)
MARK_EVERY_S = 0.5
DELAY_BOUND_S = 1.0
#: The marker player, and its score per session: the largest a session may have, so that each
#: of its totals is the board's best and its own.
MARKER = 999_999_999_999
MARK_SCORE = 1_000_000_000
#: Streams opened at once while a step ramps up.
OPEN_AT_ONCE = 200
#: What a stream must have shown by the end: the markers sent up to this long before it.
SETTLE_S = 2.0
PATH = "/api/boards/global/stream?limit=10"
_PATTERN = b'"user_id":%d,"score":' % MARKER


class Watcher:
    """One stream read over a raw connection: when each total of the marker first arrived."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self.events = 0
        self.dropped = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._first = asyncio.Event()

    async def open(self, host: str, port: int, timeout_s: float = 30) -> None:
        """Connect and wait for the first event; raises when refused or too slow."""
        reader, self._writer = await asyncio.open_connection(host, port)
        self._writer.write(f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise ConnectionError(f"answered {status.decode()}")
        self._task = asyncio.create_task(self._read(reader))
        await asyncio.wait_for(self._first.wait(), timeout_s)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        tail = b""
        while chunk := await reader.read(65_536):
            now = time.monotonic()
            self.events += chunk.count(b"event: top")
            text = tail + chunk
            start = 0
            while (at := text.find(_PATTERN, start)) >= 0:
                start = at + len(_PATTERN)
                end = text.find(b",", start)
                if end < 0:
                    break  # the total is cut: the next read has it whole (the tail)
                self.seen.setdefault(int(text[start:end]), now)
            tail = text[-(len(_PATTERN) + 24) :]
            if self.events:
                self._first.set()
        self.dropped = not self._closing

    def arrival(self, total: int) -> float | None:
        """When a page showing ``total`` or more first arrived."""
        times = [at for shown, at in self.seen.items() if shown >= total]
        return min(times) if times else None

    async def close(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._task


async def _metric(url: str, name: str) -> float:
    """A sample of the service's /metrics, read off the event loop (which times the streams)."""

    def read() -> float:
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(f"{name} "):
                    return float(line.split()[1])
        return 0.0

    return await asyncio.to_thread(read)


def _rss_mb(service: Service) -> float:
    root = psutil.Process(service.process.pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / 2**20


async def _mark(url: str, key: str, count: int) -> list[tuple[int, float]]:
    """``count`` marker submissions, one every ``MARK_EVERY_S``: (its total, when it was sent)."""
    marks: list[tuple[int, float]] = []
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(url, headers=headers) as http:
        for n in range(count):
            sent = time.monotonic()
            body = {"user_id": MARKER, "score": MARK_SCORE, "session_id": f"mark-{sent}-{n}"}
            try:
                async with http.post("/api/leaderboard/submit", json=body) as response:
                    answer = await response.json()
                marks.append((int(answer["total_score"]), sent))
            except (aiohttp.ClientError, KeyError, ValueError) as exc:
                print(f"a marker's submission failed: {exc!r}", file=sys.stderr)
            await asyncio.sleep(max(0.0, sent + MARK_EVERY_S - time.monotonic()))
    return marks


def _submissions(
    service: Service, players: int, seconds: float, out: Path
) -> subprocess.Popen[bytes]:
    """``python -m loadgen`` submitting at ``RATE`` for ``seconds``, its result into ``out``."""
    argv = [sys.executable, "-m", "loadgen", "--url", service.url, "--workload", "submit"]
    argv += ["--rate", str(RATE), "--duration", str(seconds), "--warmup", "0"]
    argv += ["--players", str(players), "--json", str(out)]
    env = {**os.environ, "RANKER_API_KEY": service.api_key or ""}
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _open(watchers: list[Watcher], host: str, port: int) -> int:
    """Open every stream, ``OPEN_AT_ONCE`` at a time; the number refused."""
    refused = 0
    for start in range(0, len(watchers), OPEN_AT_ONCE):
        batch = watchers[start : start + OPEN_AT_ONCE]
        done = await asyncio.gather(*(w.open(host, port) for w in batch), return_exceptions=True)
        refused += sum(1 for outcome in done if isinstance(outcome, BaseException))
    return refused


async def step(service: Service, streams: int, seconds: float, players: int) -> dict[str, Any]:
    """One K: the streams opened, then ``seconds`` of submissions and markers, measured."""
    watchers = [Watcher() for _ in range(streams)]
    refused = await _open(watchers, "127.0.0.1", service.port)
    try:
        figures, marks = await _measure(service, seconds, players)
    finally:
        await asyncio.gather(*(w.close() for w in watchers))
    open_ = [w for w in watchers if w.events]
    delays = [w.arrival(total) for w in open_ for total, _ in marks]
    sent = [at for _ in open_ for _, at in marks]
    late = sorted(a - at for a, at in zip(delays, sent, strict=True) if a is not None)
    events = [w.events / figures["elapsed_s"] for w in open_]
    return {
        "streams": streams,
        "refused": refused,
        "dropped": sum(1 for w in open_ if w.dropped),
        "missing": sum(1 for arrived in delays if arrived is None),
        "marks": len(marks),
        "delay_ms": _percentiles(late),
        "events_per_stream_s": statistics.mean(events) if events else 0.0,
        **figures,
    }


async def _measure(
    service: Service, seconds: float, players: int
) -> tuple[dict[str, Any], list[tuple[int, float]]]:
    """The markers and the figures of the window: submissions flow meanwhile."""
    me = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "submit.json"
        flow = _submissions(service, players, seconds + SETTLE_S, out)
        reads = await _metric(service.url, "ranker_stream_reads_total")
        api_cpu, mine, started = service.cpu_s(), sum(me.cpu_times()[:2]), time.monotonic()
        marks = await _mark(service.url, service.api_key or "", int(seconds / MARK_EVERY_S))
        rss = _rss_mb(service)
        await asyncio.sleep(SETTLE_S)  # the last markers reach every stream
        elapsed = time.monotonic() - started
        figures = {
            "elapsed_s": elapsed,
            "api_cpu_cores": (service.cpu_s() - api_cpu) / elapsed,
            "api_rss_mb": rss,
            "client_cpu_cores": (sum(me.cpu_times()[:2]) - mine) / elapsed,
            "feed_reads_per_s": (await _metric(service.url, "ranker_stream_reads_total") - reads)
            / elapsed,
        }
        await asyncio.to_thread(flow.wait, 60)
        submitted = json.loads(out.read_text()) if out.exists() else {}
    figures["submit_rate"] = submitted.get("achieved_rate", 0.0)
    figures["submit_errors"] = sum(submitted.get("errors", {}).values())
    return figures, marks


def _percentiles(sorted_s: list[float]) -> dict[str, float]:
    if not sorted_s:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}

    def at(q: float) -> float:
        return sorted_s[min(len(sorted_s) - 1, int(q * len(sorted_s)))] * 1000

    return {"p50": at(0.5), "p99": at(0.99), "max": sorted_s[-1] * 1000}


def held(figures: dict[str, Any]) -> bool:
    """Whether a step met the bound: p99 delay, and every stream open and up to date."""
    whole = not (figures["refused"] or figures["dropped"] or figures["missing"])
    return whole and figures["delay_ms"]["p99"] <= DELAY_BOUND_S * 1000


def stream_phase(
    stack: Stack,
    phase: Callable[[str], None],
    steps: Sequence[int] = STEPS,
    seconds: float = 10.0,
    players: int = 10_000,
) -> dict[str, Any]:
    """Every step on one ``ranker serve``; stops after the first step that misses the bound."""
    _raise_open_files()
    service = Service.ranker(stack, RANKER_STREAM_MAX_CLIENTS="1000000", RANKER_STREAM_MAX_S="3600")
    figures: list[dict[str, Any]] = []
    try:
        for streams in steps:
            phase(f"live streams: {streams:,} streams of one board, submit at {RATE}/s")
            figures.append(asyncio.run(step(service, streams, seconds, players)))
            if not held(figures[-1]):
                break
    finally:
        service.stop()
    most = max((f["streams"] for f in figures if held(f)), default=0)
    return {"rate": RATE, "seconds": seconds, "steps": figures, "most_streams": most}


def _raise_open_files() -> None:
    """This process opens one connection per stream: its soft limit goes up to the hard one."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def section(results: dict[str, Any], command: str = "make bench") -> list[str]:
    """The section "Live pages per API process" of BENCHMARKS.md."""
    s = results.get("stream")
    if not s:
        return []
    lines = [
        "",
        "## Live pages per API process",
        "",
        f"`{command}`: K live streams of the global board (top 10) on one `ranker serve` (API "
        f"and worker in one process) while `python -m loadgen` submits at {s['rate']}/s; a "
        f"marker player takes the top every {MARK_EVERY_S} s for {s['seconds']:g} s per step "
        "(`loadgen/bench/stream.py`). Delay: from sending the marker's submission to a stream "
        "receiving a page that shows it. The streams' client, the load generator, Redis and "
        "PostgreSQL share the machine's cores with the API.",
        "",
        f"**Most streams held with a delay p99 <= {DELAY_BOUND_S:g} s and none refused, dropped "
        f"or behind: {s['most_streams']:,}.**",
        "",
        "| streams | delay p50 ms | p99 ms | max ms | events/stream/s | feed reads/s | API CPU "
        "cores | API RSS MB | client CPU cores | submit/s | refused | dropped | behind |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
    ]
    for f in s["steps"]:
        d = f["delay_ms"]
        lines.append(
            f"| {f['streams']:,} | {d['p50']:.0f} | {d['p99']:.0f} | {d['max']:.0f} | "
            f"{f['events_per_stream_s']:.2f} | {f['feed_reads_per_s']:.2f} | "
            f"{f['api_cpu_cores']:.2f} | {f['api_rss_mb']:.0f} | {f['client_cpu_cores']:.2f} | "
            f"{f['submit_rate']:.0f} | {f['refused']} | {f['dropped']} | {f['missing']} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the phase alone on a fresh stack; print its section and write its figures."""
    parser = argparse.ArgumentParser(prog="python -m loadgen.bench.stream", description=__doc__)
    parser.add_argument("--steps", default=",".join(map(str, STEPS)), help="streams per step")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per step")
    parser.add_argument("--players", type=int, default=10_000, help="players seeded")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/stream.json"))
    args = parser.parse_args(argv)
    steps = [int(n) for n in args.steps.split(",")]

    def phase(name: str) -> None:
        print(f"== {name}", file=sys.stderr, flush=True)

    with local_stack() as stack:
        ranker_command(stack, "migrate")
        phase(f"seed {args.players:,} players")
        seed = ["--players", str(args.players), "--sessions", str(args.players * 5)]
        ranker_command(stack, "seed", *seed, "--json")
        results = {"stream": stream_phase(stack, phase, steps, args.seconds, args.players)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    command = f"python -m loadgen.bench.stream {' '.join(argv or sys.argv[1:])}".strip()
    print("\n".join(section(results, command)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
