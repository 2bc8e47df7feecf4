"""Hostile clients against a real ``ranker serve`` over real sockets: whatever one client does,
the API process's memory and descriptors stay bounded and a normal client is still answered.

Each attack runs ``RANKER_HOSTILE_SECONDS`` (2 s here; ``make hostile`` runs them longer and
writes the table of RELIABILITY.md, "Hostile clients").
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from ranker.settings import Settings
from tests.fixtures.hostile import (
    MB,
    SECONDS,
    Report,
    host_port,
    read_all,
    refusals,
    report,
    rss_bytes,
    watching,
)
from tests.fixtures.ranker import Processes, auth_headers, wait_for

__all__ = ["report"]  # the module-scoped fixture that prints the table

BOUND_MB = 50
PIPELINED = b"GET /healthz HTTP/1.1\r\nhost: ranker\r\n\r\n" * 5_000


@pytest.fixture(autouse=True)
def enough_files_for_the_attacker() -> None:
    """The attacking side (this process) opens more sockets than the server may."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8_192), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 2_048, "the test needs 2,048 fds"


async def metrics(url: str) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{url}/metrics")).text


async def settle(pid: int, baseline: int) -> float:
    """Once the attack is over, memory comes back within the bound: returns the growth left."""

    async def back() -> bool:
        return rss_bytes(pid) - baseline < BOUND_MB * MB

    await wait_for(back, 15, f"memory back within {BOUND_MB} MB of where it started")
    return (rss_bytes(pid) - baseline) / MB


async def flood(url: str, blob: bytes, deadline: float) -> int:
    """Write ``blob`` again and again without reading an answer, reconnecting whenever the
    server closes; returns how many connections the server closed."""
    host, port = host_port(url)
    closed = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(deadline):
            while True:
                _, writer = await asyncio.open_connection(host, port)
                try:
                    while True:
                        writer.write(blob)
                        await writer.drain()
                except ConnectionError:
                    closed += 1
                finally:
                    writer.transport.abort()
    return closed


async def test_pipelined_requests_never_read_hold_no_memory(
    processes: Processes, report: Report
) -> None:
    url, server = await processes.serve()
    async with watching(server.pid, url) as watch:
        deadline = asyncio.get_running_loop().time() + SECONDS
        closed = await asyncio.gather(*(flood(url, PIPELINED, deadline) for _ in range(10)))
    after = await settle(server.pid, watch.baseline_rss)
    report.add(
        "10 sockets pipelining `GET /healthz`, never reading",
        "`RANKER_MAX_PIPELINED=16`",
        watch,
        after,
    )

    assert watch.growth_mb < BOUND_MB
    assert sum(closed) >= 10, "the server closed the pipelining connections"
    assert refusals(await metrics(url), "pipelined") >= 10
    assert watch.statuses and set(watch.statuses) == {200}, watch.statuses


async def head_flood(url: str, size: int, deadline: float, chunk: int = 65_536) -> list[bool]:
    """Until ``deadline``, connect and send an unterminated header block of ``size`` bytes;
    one entry per connection: True when the server closed it before it was all sent."""
    host, port = host_port(url)
    filler = b"a" * chunk
    cut: list[bool] = []
    while asyncio.get_running_loop().time() < deadline or not cut:
        _, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: ranker\r\nx-flood: ")
        try:
            for _ in range(size // chunk):
                writer.write(filler)
                await writer.drain()
            cut.append(False)
        except ConnectionError:
            cut.append(True)
        finally:
            writer.transport.abort()
    return cut


async def test_header_floods_are_cut_off_while_they_arrive(
    processes: Processes, report: Report
) -> None:
    url, server = await processes.serve()
    async with watching(server.pid, url) as watch:
        deadline = asyncio.get_running_loop().time() + SECONDS
        floods = await asyncio.gather(
            *(head_flood(url, 10 * MB, deadline) for _ in range(20)),
            head_flood(url, 100 * MB, deadline),
        )
    after = await settle(server.pid, watch.baseline_rss)
    setting = "head bound 14 KB (`RANKER_MAX_URL_BYTES` + `RANKER_MAX_HEADER_BYTES` + 4 KB)"
    report.add("20 sockets sending 10 MB headers, 1 sending 100 MB", setting, watch, after)

    connections = [was_cut for flood in floods for was_cut in flood]
    assert all(connections), "every oversized header block was cut off before it was all sent"
    assert watch.growth_mb < BOUND_MB
    assert refusals(await metrics(url), "head_too_large") >= len(connections)
    assert watch.statuses and set(watch.statuses) == {200}, watch.statuses


async def exchange(url: str, request: bytes, timeout_s: float = 5) -> bytes:
    """Send ``request`` whole, then read until the server closes."""
    host, port = host_port(url)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    try:
        return await read_all(reader, timeout_s)
    finally:
        writer.transport.abort()


def problem_of(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head, answer[:500]
    return int(head.split(b" ", 2)[1]), orjson.loads(body)


@pytest.mark.parametrize("upgrade", [False, True], ids=["plain", "websocket"])
@pytest.mark.parametrize("size", [9_000, 20_000], ids=["over-the-setting", "over-the-bound"])
async def test_an_oversized_head_is_answered_431_and_closed(
    processes: Processes, upgrade: bool, size: int
) -> None:
    """Over ``RANKER_MAX_HEADER_BYTES`` the app answers; over the protocol's bound the edge
    does, before the app sees anything. A WebSocket handshake gets the same answer (it used to
    get none, its socket left open)."""
    url, _ = await processes.serve()
    handshake = b"connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n"
    request = b"GET / HTTP/1.1\r\nhost: ranker\r\n"
    request += handshake if upgrade else b"connection: close\r\n"
    request += b"x-big: " + b"a" * size + b"\r\n\r\n"
    status, body = problem_of(await exchange(url, request))  # read_all returned: closed
    assert status == 431
    assert body["errors"][0]["field"] == "headers"  # type: ignore[index]


async def test_slow_and_idle_connections_are_closed_at_the_header_timeout(
    processes: Processes, make_settings: Callable[..., Settings], report: Report
) -> None:
    timeout_s = 1.0
    url, server = await processes.serve(settings=make_settings(header_timeout_s=timeout_s))
    sockets = int(50 * SECONDS)
    host, port = host_port(url)

    async def slow(dribble: bool) -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection(host, port)
        started = time.monotonic()
        if dribble:
            writer.write(b"GET /healthz HTTP/1.1\r\nhost: ranker\r\nx-slow: ")

            async def drip() -> None:  # one byte every 200 ms, forever: never a whole head
                with contextlib.suppress(ConnectionError):
                    while True:
                        writer.write(b"a")
                        await writer.drain()
                        await asyncio.sleep(0.2)

            dripping = asyncio.create_task(drip())
        answer = await read_all(reader, timeout_s + 5)
        closed_after = time.monotonic() - started
        if dribble:
            dripping.cancel()
        writer.transport.abort()
        return answer, closed_after

    async with watching(server.pid, url) as watch:
        results = await asyncio.gather(*(slow(dribble=n % 2 == 0) for n in range(sockets)))
    report.add(
        f"{sockets} sockets: half dribbling a header, half idle",
        f"`RANKER_HEADER_TIMEOUT_S={timeout_s:g}`",
        watch,
        await settle(server.pid, watch.baseline_rss),
    )

    for n, (answer, closed_after) in enumerate(results):
        assert closed_after < timeout_s + 5, "closed (read_all would have timed out)"
        if n % 2 == 0:
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        else:
            assert answer == b"", "an idle connection is closed without an answer"
    assert watch.statuses and set(watch.statuses) == {200}, watch.statuses


async def test_with_1024_files_and_1100_slow_sockets_a_normal_client_is_answered_at_once(
    processes: Processes, report: Report
) -> None:
    """``ulimit -n 1024``: the connection cap (1,024 - 256) keeps descriptors for Redis and
    PostgreSQL, and a newcomer closes the connection that has waited longest for a request."""
    url, server = await processes.serve(nofile=1_024)
    host, port = host_port(url)
    writers = []
    async with watching(server.pid, url) as watch:
        try:
            for _ in range(1_100):
                _, writer = await asyncio.open_connection(host, port)
                writer.write(b"GET /healthz HTTP/1.1\r\nhost: ranker\r\nx-slow: ")
                writers.append(writer)
            await asyncio.sleep(SECONDS)  # the attack's duration: the probe runs meanwhile
        finally:
            for writer in writers:
                writer.transport.abort()
    report.add(
        "1,100 partial-header sockets, `ulimit -n 1024`",
        "connection cap 768, evict longest idle",
        watch,
        await settle(server.pid, watch.baseline_rss),
    )

    assert watch.statuses and set(watch.statuses) == {200}, watch.statuses
    assert watch.peak_fds < 1_024
    assert refusals(await metrics(url), "evicted") >= 1_100 - 768


async def test_unfinished_bodies_are_dropped_at_their_timeout_and_a_full_edge_answers_503(
    processes: Processes, make_settings: Callable[..., Settings], report: Report
) -> None:
    timeout_s = 1.5
    settings = make_settings(body_timeout_s=timeout_s, max_connections=16)
    url, server = await processes.serve(settings=settings)
    host, port = host_port(url)
    head = (
        b"POST /api/leaderboard/submit HTTP/1.1\r\nhost: ranker\r\ncontent-type: "
        b"application/json\r\ncontent-length: 100\r\nauthorization: "
        + auth_headers()["Authorization"].encode()
        + b"\r\n\r\n"
    )
    opened = []
    for _ in range(16):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(head + b'{"user_id"')  # 10 of the 100 bytes promised
        opened.append((reader, writer))
    started = time.monotonic()

    async def full() -> bool:
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{url}/api/leaderboard/top")
        return answer.status_code == 503 and "connection" in answer.text

    await wait_for(full, timeout_s, "a 503 while every connection has a request in flight")
    async with watching(server.pid, url) as watch:
        answers = await asyncio.gather(*(read_all(r, timeout_s + 5) for r, _ in opened))
    dropped_after = time.monotonic() - started
    setting = f"`RANKER_BODY_TIMEOUT_S={timeout_s:g}`, `RANKER_MAX_CONNECTIONS=16`"
    after = await settle(server.pid, watch.baseline_rss)
    report.add(
        "16 submissions sending 10 of 100 body bytes (503 while full)", setting, watch, after
    )
    for _, writer in opened:
        writer.transport.abort()

    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers), answers[0][:200]
    assert dropped_after < timeout_s + 5
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/api/leaderboard/top")).status_code == 200
        assert (await http.get(f"{url}/api/leaderboard/rank/1")).status_code == 404


#: The abuse limits as deployed (the tests' settings turn them off: they read in bursts).
DEPLOYED_LIMITS = {
    name: Settings.model_fields[name].default
    for name in ("auth_failure_limit", "address_read_limit", "total_read_limit")
}


async def hammer(
    url: str, deadline: float, request: Callable[[httpx.AsyncClient], Any]
) -> Counter[int]:
    """Send ``request`` back to back until ``deadline``; the count of each status."""
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        while asyncio.get_running_loop().time() < deadline:
            statuses[(await request(http)).status_code] += 1
    return statuses


async def test_a_wrong_key_flood_is_limited_and_logged_once(
    processes: Processes, make_settings: Callable[..., Settings], report: Report
) -> None:
    url, server = await processes.serve(settings=make_settings(**DEPLOYED_LIMITS))
    wrong = {"Authorization": "Bearer guess"}

    async def guess(http: httpx.AsyncClient) -> httpx.Response:
        body = {"user_id": 1, "score": 1, "session_id": "guess"}
        return await http.post("/api/leaderboard/submit", json=body, headers=wrong)

    async with watching(server.pid, url, auth_headers()) as watch:
        deadline = asyncio.get_running_loop().time() + SECONDS
        counts = sum(
            await asyncio.gather(*(hammer(url, deadline, guess) for _ in range(4))), Counter()
        )
    after = await settle(server.pid, watch.baseline_rss)
    logged = processes.log_files[server.pid].read_text().count("refused POST")
    report.add(
        f"4 clients sending wrong keys ({sum(counts.values()):,} requests, {logged} log lines)",
        "`RANKER_AUTH_FAILURE_LIMIT=10/minute`, one log line per address a minute",
        watch,
        after,
    )

    assert counts[401] == 10 and counts[429] == sum(counts.values()) - 10, counts
    assert logged == 1
    assert watch.statuses and set(watch.statuses) == {200}, watch.statuses  # the game server


async def test_a_read_flood_from_one_address_is_limited_and_submissions_keep_flowing(
    processes: Processes, make_settings: Callable[..., Settings], report: Report
) -> None:
    url, server = await processes.serve(settings=make_settings(**DEPLOYED_LIMITS))

    async def read(http: httpx.AsyncClient) -> httpx.Response:
        return await http.get("/api/leaderboard/top?limit=100")

    async with watching(server.pid, url, auth_headers()) as watch:
        started = asyncio.get_running_loop().time()
        deadline = started + SECONDS
        counts = sum(
            await asyncio.gather(*(hammer(url, deadline, read) for _ in range(8))), Counter()
        )
        elapsed = asyncio.get_running_loop().time() - started
    after = await settle(server.pid, watch.baseline_rss)
    report.add(
        f"8 connections reading `top?limit=100` back to back ({counts[200]:,} answered, "
        f"{counts[429]:,} refused); the normal client submits",
        "`RANKER_ADDRESS_READ_LIMIT=200/second`",
        watch,
        after,
    )

    assert set(counts) <= {200, 429} and counts[429] > 0, counts
    assert counts[200] <= 200 * (elapsed + 2)  # fixed one-second windows: one more at each edge
    assert watch.statuses and set(watch.statuses) == {200}, watch.statuses
