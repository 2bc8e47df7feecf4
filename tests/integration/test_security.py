"""Nobody in where they don't belong: API keys on writes (and on reads when configured),
per-caller rate limits, keys never shown, and no service started without a key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.worker import Worker
from ranker.api.app import create_app
from ranker.settings import Settings
from tests.fixtures.ranker import (
    READ_KEY,
    WRITE_KEY,
    Processes,
    auth_headers,
    snapshot,
    wait_for,
)

SUBMIT = "/api/leaderboard/submit"
OTHER_WRITE_KEY = "another-write-key-for-tests"


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no credentials of its own on an app run in process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ranker") as http:
            yield http


def body(n: int) -> dict[str, object]:
    return {"user_id": 1 + n % 3, "score": 10, "session_id": f"sec-{n}"}


def assert_problem(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in response.json()["errors"]]


async def test_a_submission_without_a_key_is_refused_and_changes_nothing(
    settings: Settings, redis: Redis, pool: AsyncConnectionPool, loaded: None, worker: Worker
) -> None:
    async with app_client(settings) as http:
        assert (await http.post(SUBMIT, json=body(0), headers=auth_headers())).status_code == 200
        await worker.drain()
        before = await snapshot(redis, pool, settings)

        refused = await http.post(SUBMIT, json=body(1))
        await worker.drain()

        assert_problem(refused, 401, "authorization")
        assert refused.headers["www-authenticate"] == 'Bearer realm="ranker"'
        assert await snapshot(redis, pool, settings) == before


async def test_reads_are_public_by_default_and_need_a_key_when_configured(
    make_settings: Callable[..., Settings], redis: Redis, loaded: None
) -> None:
    async with app_client(make_settings()) as http:
        assert (await http.get("/api/leaderboard/top")).status_code == 200
    async with app_client(make_settings(public_reads=False)) as http:
        for path in (
            "/api/leaderboard/top",
            "/api/leaderboard/rank/1",
            "/api/leaderboard/around/1",
        ):
            assert_problem(await http.get(path), 401, "authorization")
            wrong = await http.get(path, headers=auth_headers("not-a-key-of-this-service"))
            assert_problem(wrong, 401, "authorization")
        for key in (READ_KEY, WRITE_KEY):
            assert (await http.get("/api/leaderboard/top", headers=auth_headers(key))).is_success
        # Health, readiness and metrics stay open to probes and scrapers.
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await http.get(path)).status_code == 200, path


async def test_each_key_has_its_own_write_budget_and_a_429_says_when_to_retry(
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
    loaded: None,
    worker: Worker,
) -> None:
    settings = make_settings(write_rate_limit="5/minute", api_keys=(WRITE_KEY, OTHER_WRITE_KEY))
    async with app_client(settings) as http:
        first = [await http.post(SUBMIT, json=body(n), headers=auth_headers()) for n in range(5)]
        assert [r.status_code for r in first] == [200] * 5
        await worker.drain()
        before = await snapshot(redis, pool, settings)

        over = await http.post(SUBMIT, json=body(5), headers=auth_headers())
        await worker.drain()

        assert_problem(over, 429, "authorization")
        assert 1 <= int(over.headers["retry-after"]) <= 60
        assert over.headers["ratelimit-limit"] == "5"
        assert over.headers["ratelimit-remaining"] == "0"
        boards = {
            k: v for k, v in (await snapshot(redis, pool, settings)).items() if "limits" not in k
        }
        assert boards == {k: v for k, v in before.items() if "limits" not in k}
        other = await http.post(SUBMIT, json=body(6), headers=auth_headers(OTHER_WRITE_KEY))
        assert other.status_code == 200, other.text


async def test_the_shared_read_limit_is_off_by_default_and_counts_per_address_when_set(
    make_settings: Callable[..., Settings], redis: Redis, loaded: None
) -> None:
    async with app_client(make_settings(write_rate_limit="1/minute")) as http:
        statuses = {(await http.get("/api/leaderboard/top")).status_code for _ in range(30)}
        assert statuses == {200}
    async with app_client(make_settings(read_rate_limit="3/minute")) as http:
        allowed = [(await http.get("/api/leaderboard/top")).status_code for _ in range(3)]
        assert allowed == [200] * 3
        over = await http.get("/api/leaderboard/top")
        assert_problem(over, 429, "client")
        assert int(over.headers["retry-after"]) >= 1


def test_the_service_does_not_start_without_a_key(
    make_settings: Callable[..., Settings], processes: Processes
) -> None:
    keyless = make_settings(api_keys=(), read_api_keys=(), admin_api_keys=())
    with pytest.raises(ValueError, match="no API key is configured"):
        create_app(keyless)
    only_readers = make_settings(api_keys=(), admin_api_keys=())
    assert create_app(only_readers) is not None  # a read-only deployment is a choice
    result = processes.run("serve", "--port", "1", settings=keyless, timeout_s=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1  # one line, no traceback
    assert result.stderr.startswith("ranker serve: no API key is configured")


async def test_keys_never_reach_the_logs(
    settings: Settings, processes: Processes, loaded: None
) -> None:
    url, process = await processes.serve(
        settings=settings.model_copy(update={"log_level": "debug"})
    )
    wrong = "wrong-key-that-must-not-be-logged"
    json_with_key = {"content-type": "application/json", **auth_headers()}
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.post(SUBMIT, json=body(0), headers=auth_headers())).status_code == 200
        refused = await http.post(SUBMIT, json=body(1), headers=auth_headers(wrong))
        assert refused.status_code == 401
        assert (await http.post(SUBMIT, content=b"{", headers=json_with_key)).status_code == 400
    log = processes.log_files[process.pid].read_text()
    assert "refused POST /api/leaderboard/submit from 127.0.0.1: the API key is not valid" in log
    assert WRITE_KEY not in log and wrong not in log


async def test_answers_do_not_name_the_server_stack(processes: Processes, loaded: None) -> None:
    url, _ = await processes.serve("--no-worker")
    async with httpx.AsyncClient(base_url=url) as http:
        answers = [await http.get("/healthz"), await http.get("/api/leaderboard/top")]
        answers.append(await http.get("/no-such-path"))

    for answer in answers:
        assert "server" not in answer.headers, answer.headers


async def forwarded_statuses(url: str, forwarded: list[str]) -> list[int]:
    """The status of one read per X-Forwarded-For value, each on a connection from 127.0.0.1."""
    async with httpx.AsyncClient(base_url=url) as http:
        return [
            (await http.get("/api/leaderboard/top", headers={"X-Forwarded-For": value})).status_code
            for value in forwarded
        ]


async def test_forwarded_addresses_are_ignored_unless_the_proxy_is_trusted(
    make_settings: Callable[..., Settings], processes: Processes, loaded: None
) -> None:
    rotating = [f"203.0.113.{n}" for n in range(1, 5)]
    limited = make_settings(read_rate_limit="3/minute")
    url, _ = await processes.serve("--no-worker", settings=limited)
    # Not trusted: every request is 127.0.0.1's, however it names itself.
    assert await forwarded_statuses(url, rotating) == [200, 200, 200, 429]

    trusting = make_settings(read_rate_limit="3/minute", trusted_proxies=("127.0.0.0/8",))
    url, _ = await processes.serve("--no-worker", settings=trusting)
    assert await forwarded_statuses(url, rotating) == [200] * 4  # four clients, one budget each
    assert await forwarded_statuses(url, ["198.51.100.7"] * 4) == [200, 200, 200, 429]
    async with httpx.AsyncClient(base_url=url) as http:
        forged = await http.get(
            "/api/leaderboard/top", headers={"X-Forwarded-For": "not-an-ip; rm -rf"}
        )
    assert_problem(forged, 400, "x-forwarded-for")


async def test_a_refusal_log_line_escapes_control_characters(
    make_settings: Callable[..., Settings], processes: Processes, loaded: None
) -> None:
    private = make_settings(public_reads=False)
    url, process = await processes.serve("--no-worker", settings=private)
    async with httpx.AsyncClient(base_url=url) as http:
        refused = await http.get("/api/leaderboard/rank/%1B%5B2J%07")

    async def logged() -> bool:
        return "refused GET" in processes.log_of(process)

    await wait_for(logged, 10, "the refusal to be logged")
    log = processes.log_of(process)
    assert refused.status_code == 401
    assert "\x1b" not in log and "\x07" not in log
    assert "/api/leaderboard/rank/\\x1b[2J\\x07 from" in log
