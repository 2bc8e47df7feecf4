"""The routes of ranker/api/routes.py where no server is needed: what the metrics count, what a
503 tells a client, and requests refused before any handler runs."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette

from ranker.api.app import create_app
from ranker.settings import Settings

WRITE_KEY = "w" * 24
AUTH = {"Authorization": f"Bearer {WRITE_KEY}"}


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def submissions(outcome: str) -> float:
    return sample("ranker_submissions_total", outcome=outcome)


@pytest.fixture
async def app() -> AsyncIterator[Starlette]:
    """The app, running, on a Redis that is not there (nothing here reaches it, or it fails).
    The default write budget is on: submit.lua charges it, so no Redis call of its own fails
    before the submission's."""
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",
        api_keys=(WRITE_KEY,),
        redis_timeout_s=0.5,
    )
    assert settings.write_rate_limit
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ranker") as http:
        yield http


async def test_a_submission_refused_because_redis_is_away_counts_as_unavailable(
    client: httpx.AsyncClient,
) -> None:
    before = {name: submissions(name) for name in ("unavailable", "backlog_full", "error")}

    answer = await client.post(
        "/api/leaderboard/submit", json={"user_id": 1, "score": 5}, headers=AUTH
    )

    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert submissions("unavailable") == before["unavailable"] + 1
    assert submissions("backlog_full") == before["backlog_full"]  # a full backlog is another 503
    assert submissions("error") == before["error"]


async def test_a_503_names_the_cause_but_never_the_internal_address(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    port = app.state.ranker.settings.redis_url.rsplit(":", 1)[1].split("/")[0]

    submitted = await client.post(
        "/api/leaderboard/submit", json={"user_id": 1, "score": 5}, headers=AUTH
    )
    ready = await client.get("/readyz")

    assert submitted.status_code == ready.status_code == 503
    assert submitted.json()["detail"] == "Redis is unreachable"
    for answer in (submitted, ready):
        assert port not in answer.text and "127.0.0.1" not in answer.text


@pytest.mark.parametrize("second", [f"Bearer {WRITE_KEY}", "Bearer not-a-key-of-ours-at-all"])
async def test_several_authorization_headers_are_a_400_naming_it(
    client: httpx.AsyncClient, second: str
) -> None:
    headers = [("authorization", f"Bearer {WRITE_KEY}"), ("authorization", second)]

    answer = await client.post(
        "/api/leaderboard/submit", json={"user_id": 1, "score": 5}, headers=headers
    )

    assert answer.status_code == 400
    assert [e["field"] for e in answer.json()["errors"]] == ["authorization"]


async def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(
    app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    messages = [
        {"type": "http.request", "body": b'{"user_id": 1, ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/leaderboard/submit",
        "raw_path": b"/api/leaderboard/submit",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"ranker"),
            (b"content-type", b"application/json"),
            (b"content-length", b"40"),
            (b"authorization", f"Bearer {WRITE_KEY}".encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    histogram = "ranker_http_request_duration_seconds_count"
    before = {
        status: sample(histogram, route="submit", method="POST", status=status)
        for status in ("499", "500")
    }
    closed = submissions("client_closed")

    with caplog.at_level(logging.INFO):
        await app(scope, receive, send)

    assert sent[0]["status"] == 499
    assert sample(histogram, route="submit", method="POST", status="499") == before["499"] + 1
    assert sample(histogram, route="submit", method="POST", status="500") == before["500"]
    assert submissions("client_closed") == closed + 1
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
